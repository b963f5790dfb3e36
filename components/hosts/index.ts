/**
 * Host components and the one function `index.ts` calls to get a host: the
 * implementation is picked by `host.provider`, and the rest of the program
 * only sees the {@link Host} interface.
 */
import * as pulumi from "@pulumi/pulumi";
import type { StackConfig } from "../config/schema";
import { DigitalOceanHost } from "./digitalocean-host";
import { ExistingHost } from "./existing-host";
import type { Host } from "./host";
import { LightsailHost } from "./lightsail-host";

export * from "./host";
export * from "./ssh-identity";
export * from "./first-boot";
export * from "./firewall-rules";
export * from "./digitalocean-host";
export * from "./lightsail-host";
export * from "./existing-host";

/** Values that do not come from the validated config. */
export interface CreateHostExtras {
    /**
     * Private key for an existing server (`provider: existing`), read by the
     * caller with `config.requireSecret("sshPrivateKey")`. Unused for cloud
     * hosts, which generate their own deploy key.
     */
    readonly existingPrivateKey?: pulumi.Input<string>;
}

/** A host component: the {@link Host} interface on a ComponentResource. */
export type HostResource = Host & pulumi.ComponentResource;

/** Creates the host described by `config.host`. */
export function createHost(name: string, config: StackConfig, opts?: pulumi.ComponentResourceOptions, extra: CreateHostExtras = {}): HostResource {
    const host = config.host;
    switch (host.provider) {
        case "digitalocean":
            return new DigitalOceanHost(name, { app: config.app, host, database: config.database }, opts);
        case "lightsail":
            return new LightsailHost(name, { app: config.app, host, database: config.database }, opts);
        case "existing":
            if (extra.existingPrivateKey === undefined) {
                throw new Error(
                    "host.provider existing needs the SSH private key the server accepts: `pulumi config set --secret sshPrivateKey < ~/.ssh/id_ed25519`",
                );
            }
            return new ExistingHost(name, { host, privateKey: extra.existingPrivateKey }, opts);
        default: {
            const unknown: never = host;
            throw new Error(`unknown host.provider ${JSON.stringify((unknown as { provider: string }).provider)}`);
        }
    }
}
