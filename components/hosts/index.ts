/**
 * Host components and the one function `index.ts` calls to get a host: the
 * implementation is picked by `host.provider`, and the rest of the program
 * only sees the {@link Host} interface.
 */
import type * as pulumi from "@pulumi/pulumi";
import type { HostConfig, StackConfig } from "../config/schema";
import { DIGITALOCEAN_KIND } from "./digitalocean-host";
import { EXISTING_KIND } from "./existing-host";
import type { CreateHostExtras, HostKind, HostResource } from "./host";
import { LIGHTSAIL_KIND } from "./lightsail-host";

export * from "./host";
export * from "./ssh-identity";
export * from "./first-boot";
export * from "./firewall-rules";
export * from "./digitalocean-host";
export * from "./lightsail-host";
export * from "./existing-host";

/** Every kind of host by provider (the compiler checks that each provider of the schema has one). */
export const HOST_KINDS: { [P in HostConfig["provider"]]: HostKind<Extract<HostConfig, { provider: P }>> } = {
    digitalocean: DIGITALOCEAN_KIND,
    lightsail: LIGHTSAIL_KIND,
    existing: EXISTING_KIND,
};

/** The kind of host `config.host` describes. */
export function hostKindOf<H extends HostConfig>(host: H): HostKind<H> {
    return HOST_KINDS[host.provider] as unknown as HostKind<H>;
}

/** Creates the host described by `config.host`. */
export function createHost(name: string, config: StackConfig, opts?: pulumi.ComponentResourceOptions, extra: CreateHostExtras = {}): HostResource {
    return hostKindOf(config.host).create(name, config, opts, extra);
}
