/**
 * A server that already exists (FingerFlow, or any VPS the program did not
 * create). Nothing is created in any cloud: the address, SSH port, user, the
 * pinned host key (R1) and the data location come from config, the private key
 * from the caller (`index.ts` reads it with `requireSecret("sshPrivateKey")`).
 *
 * The server's own firewall is the bootstrap's business (ufw, H4), driven by
 * the same `host.sshAllowedCidrs`.
 */
import * as pulumi from "@pulumi/pulumi";
import ipaddr from "ipaddr.js";
import type { z } from "zod";
import { existingHostSchema, type HostConfig } from "../config/schema";
import { validateArgs } from "../config/load";
import type { Host, HostKind, HostSettings, SshConnection } from "./host";
import { openSshKeyFields } from "./ssh-identity";

/** Pulumi type token of {@link ExistingHost}. */
export const EXISTING_HOST_TYPE = "onebox:hosts:ExistingHost";

/** Existing host settings (the `host` config when `provider` is "existing"). */
export type ExistingHostConfig = Extract<HostConfig, { provider: "existing" }>;

/** Arguments of {@link ExistingHost}. */
export interface ExistingHostArgs {
    /**
     * The server: `address` and `hostKey` (pinned, R1) are required; `port`
     * @default 22, `user` @default "root", `dataPath` @default "/mnt/data",
     * `dataDevice` (formatted if empty and mounted at dataPath), and the
     * hardening settings the provisioner reads (`sshAllowedCidrs`, ...).
     * See {@link HostSettings}.
     */
    readonly host: HostSettings<z.input<typeof existingHostSchema>>;
    /**
     * Private key of an SSH identity the server accepts for `host.user`
     * (OpenSSH format). Kept secret whatever the caller passes (R6).
     */
    readonly privateKey: pulumi.Input<string>;
}

/** The configured address split into the Host interface's IPv4/IPv6 fields. */
export function existingHostAddresses(address: string): { ipv4: string; ipv6: string | undefined } {
    // A DNS name or an IPv4 address is used as is; an IPv6 literal is also the
    // connection address, so it fills both fields rather than leaving IPv4 empty.
    const isIpv6 = ipaddr.isValid(address) && ipaddr.parse(address).kind() === "ipv6";
    return { ipv4: address, ipv6: isIpv6 ? address : undefined };
}

/** How the program uses an existing server from a stack configuration. */
export const EXISTING_KIND: HostKind<ExistingHostConfig> = {
    create: (name, config, opts, extra) => {
        if (extra.existingPrivateKey === undefined) {
            throw new Error(
                "host.provider existing needs the SSH private key the server accepts: `pulumi config set --secret sshPrivateKey < ~/.ssh/id_ed25519`",
            );
        }
        return new ExistingHost(name, { host: config.host, privateKey: extra.existingPrivateKey }, opts);
    },
};

/** An existing server, described entirely by config. */
export class ExistingHost extends pulumi.ComponentResource implements Host {
    readonly provider = "existing";
    /** The configured address (an IPv4 address, or whatever `host.address` holds: a DNS name or IPv6 literal). */
    readonly ipv4Address: pulumi.Output<string>;
    readonly ipv6Address: pulumi.Output<string | undefined>;
    /** An existing server's addresses are its owner's business: DNS publishes the configured address only. */
    readonly ipv6Stable = false;
    readonly connection: SshConnection;
    readonly serverId: pulumi.Output<string>;
    readonly dataDevice: pulumi.Output<string | undefined>;
    readonly dataPath: string;
    readonly readyResources: pulumi.Resource[] = [];

    constructor(name: string, args: ExistingHostArgs, opts?: pulumi.ComponentResourceOptions) {
        const host = validateArgs(existingHostSchema, { ...args.host, provider: "existing" }, `ExistingHost "${name}"`, "host");
        super(EXISTING_HOST_TYPE, name, {}, opts);
        const addresses = existingHostAddresses(host.address);

        this.ipv4Address = pulumi.output(addresses.ipv4);
        this.ipv6Address = pulumi.output<string | undefined>(addresses.ipv6);
        this.dataDevice = pulumi.output<string | undefined>(host.dataDevice);
        this.dataPath = host.dataPath;
        this.connection = {
            host: pulumi.output(host.address),
            port: host.port,
            user: host.user,
            privateKey: pulumi.secret(args.privateKey),
            hostKey: pulumi.output(openSshKeyFields(host.hostKey)),
        };
        // A rebuilt machine answers with a new host key, which the stack must pin anew.
        this.serverId = this.connection.hostKey;

        this.registerOutputs({
            ipv4Address: this.ipv4Address,
            ipv6Address: this.ipv6Address,
            dataDevice: this.dataDevice,
            hostKey: this.connection.hostKey,
        });
    }
}
