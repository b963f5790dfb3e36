/**
 * An Amazon Lightsail instance ready for provisioning: imported deploy key
 * pair (K1), instance with the first-boot launch script, static IP (K2),
 * protected data disk (S5) and the instance's public ports (F1, F3).
 *
 * The instance ignores changes to `userData`, `blueprintId` and `keyPairName`
 * (K2): each forces a replacement, and a changed launch script or a newer
 * blueprint must never silently destroy a production server. To rebuild it on
 * purpose, replace it by URN (`pulumi stack --show-urns` lists it):
 *
 *     pulumi up --replace 'urn:pulumi:<stack>::onebox::onebox:hosts:LightsailHost$aws:lightsail/instance:Instance::<name>-server'
 *
 * Changing `host.bundle` also replaces the instance (Lightsail cannot resize
 * in place); the static IP, the data disk and the pinned host key survive.
 */
import * as pulumi from "@pulumi/pulumi";
import * as aws from "@pulumi/aws";
import type { z } from "zod";
import { lightsailHostSchema, type HostConfig, type OperatingSystem, type StackConfig } from "../config/schema";
import { validateArgs } from "../config/load";
import { planOf } from "../config/plan";
import { renderLightsailLaunchScript } from "./first-boot";
import { inboundRulesOutput, lightsailPortInfos } from "./firewall-rules";
import { DATA_MOUNT_PATH, DEPLOY_USER, NO_DATABASE_PUBLICATION, type DatabasePublication, type Host, type HostKind, type HostSettings, type SshConnection } from "./host";
import { SshIdentity } from "./ssh-identity";

/** Pulumi type token of {@link LightsailHost}. */
export const LIGHTSAIL_HOST_TYPE = "onebox:hosts:LightsailHost";

/** Lightsail host settings (the `host` config when `provider` is "lightsail"). */
export type LightsailHostConfig = Extract<HostConfig, { provider: "lightsail" }>;

/** Blueprint id per supported operating system. */
export const LIGHTSAIL_BLUEPRINTS: Record<OperatingSystem, string> = {
    "ubuntu-22.04": "ubuntu_22_04",
    "ubuntu-24.04": "ubuntu_24_04",
    "debian-12": "debian_12",
    "debian-13": "debian_13",
};

/**
 * Instance properties whose change would replace the server; ignored (K2).
 * `keyPairName` too: the key pair only matters at creation.
 */
export const INSTANCE_IGNORE_CHANGES = ["userData", "blueprintId", "keyPairName"];

/** Options of the data disk (S5): `pulumi destroy` refuses, removal from the program keeps it. */
export const DATA_DISK_OPTIONS = { protect: true, retainOnDelete: true } as const;

/**
 * Device path the data disk is attached as. On Xen bundles it appears under
 * this name; on Nitro bundles (the current generation) every disk is an NVMe
 * device (/dev/nvme1n1, ...) and /dev/xvdf does not exist. The bootstrap must
 * therefore use this path when it exists and otherwise take the one disk that
 * has no partitions, no filesystem and no mount (never the root disk); it
 * formats the disk only when it carries no filesystem.
 */
export const LIGHTSAIL_DATA_DISK_PATH = "/dev/xvdf";

/** Arguments of {@link LightsailHost}. */
export interface LightsailHostArgs {
    /** Application name and environment; they tag resources. */
    readonly app: StackConfig["app"];
    /**
     * The instance: `region` and `sshAllowedCidrs` (F1) are required; `zone`
     * @default "a", `bundle` @default "micro_3_0", `os` @default "ubuntu-24.04",
     * `dataVolumeSizeGb` @default 10, `swapMb` @default 1024, `sshPublicKeys`
     * @default [], `originLockdown` @default false. See {@link HostSettings}.
     */
    readonly host: HostSettings<z.input<typeof lightsailHostSchema>>;
    /** PostgreSQL's published port for the instance's firewall. @default not published */
    readonly database?: DatabasePublication;
    /**
     * Open 80/443 in the instance's firewall: something on the server serves the web. False for a
     * stack with no routes (a database-only server). @default true
     */
    readonly web?: boolean;
}

/** {@link LightsailHostArgs} validated, defaults applied. */
interface ResolvedArgs {
    readonly app: StackConfig["app"];
    readonly host: LightsailHostConfig;
    readonly database: DatabasePublication;
    readonly web: boolean;
}

/** Lightsail tags: `onebox`, `app`, `env`. */
export function lightsailTags(app: StackConfig["app"]): Record<string, string> {
    return { onebox: "true", app: app.name, env: app.environment };
}

/**
 * Refuses IPv6-only bundles: they cannot hold a static IPv4 address (K2) and
 * the program connects over IPv4. Returns the problem, or undefined.
 */
export function lightsailBundleProblem(bundle: string): string | undefined {
    return /ipv6/.test(bundle)
        ? `host.bundle: ${bundle} is an IPv6-only bundle, which cannot hold a static IPv4 address; use a dual-stack bundle such as micro_3_0`
        : undefined;
}

/** How the program creates a Lightsail host from a stack configuration. */
export const LIGHTSAIL_KIND: HostKind<LightsailHostConfig> = {
    create: (name, config, opts) => new LightsailHost(name, { app: config.app, host: config.host, database: config.database, web: planOf(config).webPortsOpen }, opts),
};

/** A Lightsail instance with everything the provisioning steps need before the first SSH connection. */
export class LightsailHost extends pulumi.ComponentResource implements Host {
    readonly provider = "lightsail";
    readonly ipv4Address: pulumi.Output<string>;
    readonly ipv6Address: pulumi.Output<string | undefined>;
    /** Lightsail's IPv6 address follows the instance, not the static IP: never published in DNS. */
    readonly ipv6Stable = false;
    readonly connection: SshConnection;
    readonly serverId: pulumi.Output<string>;
    /**
     * {@link LIGHTSAIL_DATA_DISK_PATH}: the name the disk is attached as, which
     * Nitro bundles expose as an NVMe device instead (see there).
     */
    readonly dataDevice: pulumi.Output<string | undefined>;
    readonly dataPath = DATA_MOUNT_PATH;
    readonly readyResources: pulumi.Resource[];
    /** The instance (for DNS, monitoring or a deliberate `--replace`). */
    readonly instance: aws.lightsail.Instance;

    constructor(name: string, input: LightsailHostArgs, opts?: pulumi.ComponentResourceOptions) {
        const args: ResolvedArgs = {
            app: input.app,
            host: validateArgs(lightsailHostSchema, { ...input.host, provider: "lightsail" }, `LightsailHost "${name}"`, "host"),
            database: input.database ?? NO_DATABASE_PUBLICATION,
            web: input.web ?? true,
        };
        super(LIGHTSAIL_HOST_TYPE, name, {}, opts);
        const problem = lightsailBundleProblem(args.host.bundle);
        if (problem) {
            throw new Error(problem);
        }
        const { app, host } = args;
        const region = host.region;
        const availabilityZone = `${host.region}${host.zone}`;
        const tags = lightsailTags(app);

        const identity = new SshIdentity(`${name}-ssh`, {}, { parent: this });
        // K1: the instance is created with the deploy key (installed for the
        // image's default user by Lightsail); no password is ever involved.
        const keyPair = new aws.lightsail.KeyPair(`${name}-deploy-key`, { publicKey: identity.deployPublicKey, region, tags }, { parent: this });
        const disk = new aws.lightsail.Disk(`${name}-data`, { availabilityZone, sizeInGb: host.dataVolumeSizeGb, region, tags }, { parent: this, ...DATA_DISK_OPTIONS });
        const instance = this.createInstance(name, args, { availabilityZone, tags, identity, keyPair });
        const staticIp = new aws.lightsail.StaticIp(`${name}-ip`, { region }, { parent: this });
        // deleteBeforeReplace: on a replacement the address and the disk leave
        // the old instance before they go to the new one.
        const ipAttachment = new aws.lightsail.StaticIpAttachment(
            `${name}-ip-attachment`,
            { staticIpName: staticIp.name, instanceName: instance.name, region },
            { parent: this, deleteBeforeReplace: true },
        );
        const diskAttachment = new aws.lightsail.Disk_attachment(
            `${name}-data-attachment`,
            { diskName: disk.name, instanceName: instance.name, diskPath: LIGHTSAIL_DATA_DISK_PATH, region },
            { parent: this, deleteBeforeReplace: true },
        );
        // F3: Lightsail closes every port not listed here, so every open port is
        // declared in this one resource, each with explicit IPv4 and IPv6 CIDRs.
        // Until it is applied the instance has Lightsail's default ports (22 and
        // 80 from anywhere); provisioning waits for it (readyResources).
        const ports = new aws.lightsail.InstancePublicPorts(
            `${name}-ports`,
            {
                instanceName: instance.name,
                portInfos: inboundRulesOutput({ host, database: args.database, web: args.web }, { parent: this }).apply(lightsailPortInfos),
                region,
            },
            { parent: this },
        );

        this.instance = instance;
        // The name stays when the instance is replaced; the ARN's id does not.
        this.serverId = instance.arn;
        this.ipv4Address = staticIp.ipAddress;
        // Not static: a replaced instance gets a new IPv6 address (Lightsail static IPs are IPv4 only).
        this.ipv6Address = instance.ipv6Addresses.apply((a) => (a ?? [])[0]);
        this.dataDevice = pulumi.output<string | undefined>(LIGHTSAIL_DATA_DISK_PATH);
        this.connection = {
            host: staticIp.ipAddress,
            port: 22,
            user: DEPLOY_USER,
            privateKey: identity.deployPrivateKey,
            hostKey: identity.hostPublicKey,
        };
        this.readyResources = [ipAttachment, diskAttachment, ports];

        this.registerOutputs({
            ipv4Address: this.ipv4Address,
            ipv6Address: this.ipv6Address,
            dataDevice: this.dataDevice,
            hostKey: this.connection.hostKey,
        });
    }

    private createInstance(
        name: string,
        args: ResolvedArgs,
        parts: { availabilityZone: string; tags: Record<string, string>; identity: SshIdentity; keyPair: aws.lightsail.KeyPair },
    ): aws.lightsail.Instance {
        const { host } = args;
        const { identity } = parts;
        // Secret: the script carries the host private key (R6).
        const userData = pulumi.secret(
            pulumi.all([identity.hostPrivateKey, identity.hostPublicKey, identity.deployPublicKey]).apply(([hostPrivateKey, hostPublicKey, deployPublicKey]) =>
                renderLightsailLaunchScript({
                    hostPrivateKey,
                    hostPublicKey,
                    deployUser: DEPLOY_USER,
                    authorizedKeys: [deployPublicKey, ...host.sshPublicKeys],
                    dataVolume: { device: LIGHTSAIL_DATA_DISK_PATH, path: DATA_MOUNT_PATH },
                }),
            ),
        );
        return new aws.lightsail.Instance(
            `${name}-server`,
            {
                availabilityZone: parts.availabilityZone,
                blueprintId: LIGHTSAIL_BLUEPRINTS[host.os],
                bundleId: host.bundle,
                keyPairName: parts.keyPair.name,
                ipAddressType: "dualstack",
                userData,
                region: host.region,
                tags: parts.tags,
            },
            { parent: this, ignoreChanges: INSTANCE_IGNORE_CHANGES },
        );
    }
}
