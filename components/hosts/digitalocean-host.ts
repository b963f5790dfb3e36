/**
 * A DigitalOcean droplet ready for provisioning: deploy SSH key (K1), droplet
 * with first-boot user data, reserved IP (K2), protected data volume (S5),
 * cloud firewall (F1, F2) and optional project grouping.
 *
 * The droplet ignores changes to `userData`, `image` and `sshKeys` (K2): each
 * forces a replacement on DigitalOcean, and a changed first-boot script or a
 * newer image must never silently destroy a production server. To rebuild the
 * server on purpose, replace it by URN (`pulumi stack --show-urns` lists it):
 *
 *     pulumi up --replace 'urn:pulumi:<stack>::onebox::onebox:hosts:DigitalOceanHost$digitalocean:index/droplet:Droplet::<name>-server'
 *
 * The reserved IP, the data volume (protected, retained on delete) and the
 * pinned host key survive a replacement; the new droplet boots with the same
 * host key, so connections keep pinning the same key.
 */
import * as pulumi from "@pulumi/pulumi";
import * as digitalocean from "@pulumi/digitalocean";
import type { z } from "zod";
import { digitalOceanHostSchema, type HostConfig, type OperatingSystem, type StackConfig } from "../config/schema";
import { validateArgs } from "../config/load";
import { planOf } from "../config/plan";
import { renderFirstBoot } from "./first-boot";
import { digitalOceanInboundRules, digitalOceanOutboundRules, inboundRulesOutput, outboundRules } from "./firewall-rules";
import { DATA_MOUNT_PATH, DEPLOY_USER, NO_DATABASE_PUBLICATION, type DatabasePublication, type Host, type HostKind, type HostSettings, type SshConnection } from "./host";
import { SshIdentity } from "./ssh-identity";

/** Pulumi type token of {@link DigitalOceanHost}. */
export const DIGITALOCEAN_HOST_TYPE = "onebox:hosts:DigitalOceanHost";

/** DigitalOcean host settings (the `host` config when `provider` is "digitalocean"). */
export type DigitalOceanHostConfig = Extract<HostConfig, { provider: "digitalocean" }>;

/** Droplet image slug per supported operating system. */
export const DIGITALOCEAN_IMAGES: Record<OperatingSystem, string> = {
    "ubuntu-22.04": "ubuntu-22-04-x64",
    "ubuntu-24.04": "ubuntu-24-04-x64",
    "debian-12": "debian-12-x64",
    "debian-13": "debian-13-x64",
};

/**
 * Droplet properties whose change would replace the server; ignored (K2).
 * `sshKeys` too: keys only matter at creation, and a rotated deploy key is
 * installed over SSH, not by rebuilding the server.
 */
export const DROPLET_IGNORE_CHANGES = ["userData", "image", "sshKeys"];

/** Options of the data volume (S5): `pulumi destroy` refuses, removal from the program keeps it. */
export const DATA_VOLUME_OPTIONS = { protect: true, retainOnDelete: true } as const;

/** Filesystem DigitalOcean formats the volume with, so it can be mounted without mkfs. */
export const DATA_VOLUME_FILESYSTEM = "ext4";

/** Arguments of {@link DigitalOceanHost}. */
export interface DigitalOceanHostArgs {
    /** Application name and environment; they name and tag resources. */
    readonly app: StackConfig["app"];
    /**
     * The droplet: `region` and `sshAllowedCidrs` (F1) are required; `size`
     * @default "s-1vcpu-1gb", `os` @default "ubuntu-24.04", `ipv6` @default true,
     * `dataVolumeSizeGb` @default 10, `swapMb` @default 1024, `dropletBackups`
     * @default false, `tags` @default [], `project`, `sshPublicKeys` @default [],
     * `originLockdown` @default false. See {@link HostSettings}.
     */
    readonly host: HostSettings<z.input<typeof digitalOceanHostSchema>>;
    /** PostgreSQL's published port for the cloud firewall. @default not published */
    readonly database?: DatabasePublication;
    /**
     * Open 80/443 in the cloud firewall: something on the server serves the web. False for a
     * stack with no routes (a database-only server). @default true
     */
    readonly web?: boolean;
}

/** {@link DigitalOceanHostArgs} validated, defaults applied. */
interface ResolvedArgs {
    readonly app: StackConfig["app"];
    readonly host: DigitalOceanHostConfig;
    readonly database: DatabasePublication;
    readonly web: boolean;
}

/**
 * A name of at most `max` characters from `parts` joined by "-", usable as a
 * hostname label and a DigitalOcean volume name (lower-case letters, digits,
 * hyphens; starts with a letter because the app slug does).
 */
export function resourceLabel(parts: readonly string[], max = 63): string {
    const joined = parts.join("-").toLowerCase().replace(/[^a-z0-9-]/g, "-");
    return joined.slice(0, max).replace(/-+$/, "");
}

/** Name of the data volume: "<app>-<env>-data", at most 64 characters. */
export function dataVolumeName(app: StackConfig["app"]): string {
    return `${resourceLabel([app.name, app.environment], 64 - "-data".length)}-data`;
}

/** The stable device path of an attached DigitalOcean volume. */
export function digitalOceanVolumeDevice(volumeName: string): string {
    return `/dev/disk/by-id/scsi-0DO_Volume_${volumeName}`;
}

/** Droplet tags: `onebox`, `app:<name>`, `env:<environment>`, then the configured ones. */
export function dropletTags(app: StackConfig["app"], extra: readonly string[]): string[] {
    return [...new Set(["onebox", `app:${app.name}`, `env:${app.environment}`, ...extra])];
}

/** How the program creates a DigitalOcean host from a stack configuration. */
export const DIGITALOCEAN_KIND: HostKind<DigitalOceanHostConfig> = {
    create: (name, config, opts) => new DigitalOceanHost(name, { app: config.app, host: config.host, database: config.database, web: planOf(config).webPortsOpen }, opts),
};

/** A droplet with everything the provisioning steps need before the first SSH connection. */
export class DigitalOceanHost extends pulumi.ComponentResource implements Host {
    readonly provider = "digitalocean";
    readonly ipv4Address: pulumi.Output<string>;
    readonly ipv6Address: pulumi.Output<string | undefined>;
    /** The droplet's own address (`host.ipv6`); kept while the droplet lives. */
    readonly ipv6Stable: boolean;
    readonly connection: SshConnection;
    readonly serverId: pulumi.Output<string>;
    readonly dataDevice: pulumi.Output<string | undefined>;
    readonly dataPath = DATA_MOUNT_PATH;
    readonly readyResources: pulumi.Resource[];
    /** The droplet (for DNS, monitoring or a deliberate `--replace`). */
    readonly droplet: digitalocean.Droplet;

    constructor(name: string, input: DigitalOceanHostArgs, opts?: pulumi.ComponentResourceOptions) {
        const args: ResolvedArgs = {
            app: input.app,
            host: validateArgs(digitalOceanHostSchema, { ...input.host, provider: "digitalocean" }, `DigitalOceanHost "${name}"`, "host"),
            database: input.database ?? NO_DATABASE_PUBLICATION,
            web: input.web ?? true,
        };
        super(DIGITALOCEAN_HOST_TYPE, name, {}, opts);
        const { app, host } = args;
        const label = resourceLabel([app.name, app.environment]);
        const tags = dropletTags(app, host.tags);

        const identity = new SshIdentity(`${name}-ssh`, {}, { parent: this });
        const deployKey = this.createDeployKey(name, label, identity);
        const volume = this.createDataVolume(name, args, tags);
        const dataDevice = volume.name.apply(digitalOceanVolumeDevice);
        const droplet = this.createDroplet(name, args, { label, tags, identity, deployKey, dataDevice });
        const dropletId = droplet.id.apply(Number);
        const reservedIp = new digitalocean.ReservedIp(`${name}-ip`, { region: host.region }, { parent: this });
        // deleteBeforeReplace: when the droplet is replaced, the address and the
        // volume are taken off the old droplet before they go to the new one
        // (a volume attaches to one droplet at a time).
        const ipAssignment = new digitalocean.ReservedIpAssignment(
            `${name}-ip-assignment`,
            { ipAddress: reservedIp.ipAddress, dropletId },
            { parent: this, deleteBeforeReplace: true },
        );
        const volumeAttachment = new digitalocean.VolumeAttachment(
            `${name}-data-attachment`,
            { dropletId, volumeId: volume.id },
            { parent: this, deleteBeforeReplace: true },
        );
        const firewall = this.createFirewall(name, label, args, dropletId);
        if (host.project) {
            new digitalocean.Project(
                `${name}-project`,
                {
                    name: host.project,
                    description: `onebox: ${app.name} (${app.environment})`,
                    resources: [droplet.dropletUrn, volume.volumeUrn, reservedIp.reservedIpUrn],
                },
                { parent: this },
            );
        }

        this.droplet = droplet;
        this.serverId = droplet.id;
        this.ipv4Address = reservedIp.ipAddress;
        this.ipv6Address = host.ipv6 ? droplet.ipv6Address : pulumi.output<string | undefined>(undefined);
        this.ipv6Stable = host.ipv6;
        this.dataDevice = dataDevice;
        this.connection = {
            host: reservedIp.ipAddress,
            port: 22,
            user: DEPLOY_USER,
            privateKey: identity.deployPrivateKey,
            hostKey: identity.hostPublicKey,
        };
        this.readyResources = [ipAssignment, volumeAttachment, firewall];

        this.registerOutputs({
            ipv4Address: this.ipv4Address,
            ipv6Address: this.ipv6Address,
            dataDevice: this.dataDevice,
            hostKey: this.connection.hostKey,
        });
    }

    /**
     * The deploy key, uploaded so the droplet is created with it (K1, root
     * login for DigitalOcean's own tooling) and no root password is mailed.
     * Administrators' keys are not uploaded: DigitalOcean refuses a public key
     * already in the account (422 "SSH Key is already in use"), which is the
     * usual case for a person's key; they reach the deploy user through
     * first-boot authorized_keys instead.
     */
    private createDeployKey(name: string, label: string, identity: SshIdentity): digitalocean.SshKey {
        return new digitalocean.SshKey(`${name}-deploy-key`, { name: `${label}-deploy`, publicKey: identity.deployPublicKey }, { parent: this });
    }

    /** The data volume (S5), formatted by DigitalOcean so the bootstrap only mounts it. */
    private createDataVolume(name: string, args: ResolvedArgs, tags: string[]): digitalocean.Volume {
        return new digitalocean.Volume(
            `${name}-data`,
            {
                name: dataVolumeName(args.app),
                region: args.host.region,
                size: args.host.dataVolumeSizeGb,
                initialFilesystemType: DATA_VOLUME_FILESYSTEM,
                description: `onebox data (database, uploads) for ${args.app.name} ${args.app.environment}`,
                tags,
            },
            { parent: this, ...DATA_VOLUME_OPTIONS },
        );
    }

    private createDroplet(
        name: string,
        args: ResolvedArgs,
        parts: { label: string; tags: string[]; identity: SshIdentity; deployKey: digitalocean.SshKey; dataDevice: pulumi.Output<string> },
    ): digitalocean.Droplet {
        const { host } = args;
        const { identity } = parts;
        // Secret: the script carries the host private key (R6).
        const userData = pulumi.secret(
            pulumi.all([identity.hostPrivateKey, identity.hostPublicKey, identity.deployPublicKey, parts.dataDevice]).apply(
                ([hostPrivateKey, hostPublicKey, deployPublicKey, device]) =>
                    renderFirstBoot({
                        hostPrivateKey,
                        hostPublicKey,
                        deployUser: DEPLOY_USER,
                        authorizedKeys: [deployPublicKey, ...host.sshPublicKeys],
                        dataVolume: { device, path: DATA_MOUNT_PATH },
                    }),
            ),
        );
        return new digitalocean.Droplet(
            `${name}-server`,
            {
                name: parts.label,
                image: DIGITALOCEAN_IMAGES[host.os],
                size: host.size,
                region: host.region,
                ipv6: host.ipv6,
                monitoring: true,
                backups: host.dropletBackups,
                sshKeys: [parts.deployKey.id],
                userData,
                tags: parts.tags,
            },
            { parent: this, ignoreChanges: DROPLET_IGNORE_CHANGES },
        );
    }

    /** The cloud firewall (F1 inbound, F2 outbound), attached to the droplet. */
    private createFirewall(name: string, label: string, args: ResolvedArgs, dropletId: pulumi.Output<number>): digitalocean.Firewall {
        const inbound = inboundRulesOutput({ host: args.host, database: args.database, web: args.web }, { parent: this });
        return new digitalocean.Firewall(
            `${name}-firewall`,
            {
                name: label,
                dropletIds: [dropletId],
                inboundRules: inbound.apply(digitalOceanInboundRules),
                outboundRules: digitalOceanOutboundRules(outboundRules()),
            },
            { parent: this },
        );
    }
}
