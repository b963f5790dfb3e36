/**
 * The one interface every host kind implements. Provisioning only ever sees
 * this: where to connect, as whom, which host key to pin, and where the data
 * volume is.
 */
import * as pulumi from "@pulumi/pulumi";
import type { HostConfig, StackConfig } from "../config/schema";

/** How the provisioning steps reach the server over SSH. */
export interface SshConnection {
    /** Address to connect to (the reserved/static IP for cloud hosts). */
    host: pulumi.Output<string>;
    port: number;
    /** Login user; steps use `sudo` when it is not root. */
    user: string;
    /** Private key of the deploy identity (secret). */
    privateKey: pulumi.Output<string>;
    /** Server host public key, "ssh-ed25519 AAAA..." (R1: pinned, never trusted on first use). */
    hostKey: pulumi.Output<string>;
}

/** What a host component exposes to the rest of the program. */
export interface Host {
    /** "digitalocean" | "lightsail" | "existing". */
    readonly provider: string;
    /** Public IPv4 address (stable: reserved/static IP for cloud hosts). */
    readonly ipv4Address: pulumi.Output<string>;
    /** Public IPv6 address, when the host has one. */
    readonly ipv6Address: pulumi.Output<string | undefined>;
    /** The IPv6 address is the server's own and stable: DNS may publish it (AAAA records). */
    readonly ipv6Stable: boolean;
    readonly connection: SshConnection;
    /**
     * The machine's own identity: changes when the server is replaced (a new droplet
     * or instance behind the same address and pinned host key), so every
     * provisioning step runs again on the new machine. An existing server: its host key.
     */
    readonly serverId: pulumi.Output<string>;
    /**
     * Block device holding database data and uploads, when the host has a
     * dedicated volume (mounted at `dataPath` by the bootstrap).
     */
    readonly dataDevice: pulumi.Output<string | undefined>;
    /** Mount point of the data volume on the server. */
    readonly dataPath: string;
    /** Resources that must exist before the first SSH connection (volume attachments, IP assignment, firewall). */
    readonly readyResources: pulumi.Resource[];
}

/**
 * A host component's settings as a program writes them: the same settings,
 * names and defaults as the stack configuration's `host` for that provider
 * (README, "Configuration"); `provider` may be left out, settings left out
 * take their defaults. The component validates them before creating
 * anything (F1 included) and throws an error naming each bad setting.
 */
export type HostSettings<T extends { provider: string }> = Omit<T, "provider"> & { provider?: T["provider"] };

/**
 * PostgreSQL's published port, opened in a cloud firewall to `allowedCidrs`
 * only when `enabled` and the list is not empty (the validated `database`
 * settings of a stack fit as they are).
 */
export interface DatabasePublication {
    readonly enabled: boolean;
    readonly allowedCidrs: readonly string[];
    readonly publicPort: number;
}

/** No database port in any firewall. */
export const NO_DATABASE_PUBLICATION: DatabasePublication = { enabled: false, allowedCidrs: [], publicPort: 5432 };

/** A host component: the {@link Host} interface on a ComponentResource. */
export type HostResource = Host & pulumi.ComponentResource;

/** Values that do not come from the validated config. */
export interface CreateHostExtras {
    /**
     * Private key for a server the program did not create (a provider whose
     * deploy key is "supplied"), read by the caller with
     * `config.requireSecret("sshPrivateKey")`. Unused for cloud hosts, which
     * generate their own deploy key.
     */
    readonly existingPrivateKey?: pulumi.Input<string>;
}

/**
 * One kind of host: how the program creates it from a stack configuration.
 * Each host component's module exports one; components/hosts/index.ts lists
 * them by provider (what the configuration knows of a provider is in
 * HOST_PROVIDER_FACTS, components/config/schema.ts).
 */
export interface HostKind<H extends HostConfig> {
    create(name: string, config: StackConfig & { host: H }, opts: pulumi.ComponentResourceOptions | undefined, extra: CreateHostExtras): HostResource;
}

/** Where the data volume is mounted on cloud hosts. */
export const DATA_MOUNT_PATH = "/mnt/data";

/** Login user created by first-boot user data on cloud hosts. */
export const DEPLOY_USER = "deploy";
