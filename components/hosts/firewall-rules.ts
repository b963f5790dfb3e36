/**
 * The cloud firewall of a server as data (F1, F2, F3): one provider-neutral
 * rule list computed from config, then translated for DigitalOcean Cloud
 * Firewalls and Lightsail instance public ports. Pure functions, so tests
 * assert on the lists directly.
 *
 * Inbound, nothing but:
 * - SSH (22/tcp) from `host.sshAllowedCidrs` (the schema refuses 0.0.0.0/0 and
 *   ::/0 there unless `host.allowSshFromAnywhere` is set);
 * - HTTP/HTTPS (80, 443/tcp) from anywhere over IPv4 and IPv6, or only from
 *   Cloudflare's published ranges when `host.originLockdown` is on; neither
 *   when nothing on the server serves the web (`web: false`, a stack with no
 *   routes: a database-only server);
 * - PostgreSQL's `database.publicPort` from `database.allowedCidrs`, only when
 *   that list is not empty (a database used by an app hosted elsewhere).
 *
 * No application port, Redis or PostgreSQL by default: the reverse proxy is the
 * only service publishing ports (H8), and the firewall agrees with it.
 */
import * as pulumi from "@pulumi/pulumi";
import * as cloudflare from "@pulumi/cloudflare";
import type * as aws from "@pulumi/aws";
import type * as digitalocean from "@pulumi/digitalocean";
import ipaddr from "ipaddr.js";
import type { StackConfig } from "../config/schema";
import { databasePublished } from "../config/plan";
import type { DatabasePublication } from "./host";

export type Protocol = "tcp" | "udp";

/** Source or destination networks of a rule, split by address family. */
export interface IpRanges {
    readonly ipv4: readonly string[];
    readonly ipv6: readonly string[];
}

/** One allowed flow: a port, a protocol and the networks on the other side. */
export interface FirewallRule {
    readonly protocol: Protocol;
    readonly port: number;
    /** Peers: sources for inbound rules, destinations for outbound rules. */
    readonly peers: IpRanges;
    /** What the rule is for (shown in tests and reviews). */
    readonly purpose: string;
}

/** The whole internet. */
export const ANYWHERE: IpRanges = { ipv4: ["0.0.0.0/0"], ipv6: ["::/0"] };

export const SSH_PORT = 22;
export const HTTP_PORT = 80;
export const HTTPS_PORT = 443;

/** Settings the rules depend on. */
export interface FirewallConfig {
    readonly host: Pick<StackConfig["host"], "sshAllowedCidrs" | "originLockdown">;
    readonly database: DatabasePublication;
    /**
     * Something on the server answers on 80/443 (the stack's proxy, or an existing
     * Traefik). False for a stack with no routes: no web port is opened. @default true
     */
    readonly web?: boolean;
}

/** Splits CIDRs by address family, keeping their order. */
export function splitCidrs(cidrs: readonly string[]): IpRanges {
    const ipv4: string[] = [];
    const ipv6: string[] = [];
    for (const c of cidrs) {
        const [address] = ipaddr.parseCIDR(c);
        (address.kind() === "ipv4" ? ipv4 : ipv6).push(c);
    }
    return { ipv4, ipv6 };
}

/**
 * Inbound rules (F1). `cloudflare` must be given when `host.originLockdown`
 * is on (see {@link cloudflareIpRanges}); it is ignored otherwise.
 */
export function inboundRules(config: FirewallConfig, cloudflare?: IpRanges): FirewallRule[] {
    const { host, database } = config;
    const rules: FirewallRule[] = [{ protocol: "tcp", port: SSH_PORT, peers: splitCidrs(host.sshAllowedCidrs), purpose: "SSH from admin networks" }];
    if (config.web !== false) {
        rules.push(...webRules(host.originLockdown, cloudflare));
    }
    if (databasePublished({ database })) {
        rules.push({ protocol: "tcp", port: database.publicPort, peers: splitCidrs(database.allowedCidrs), purpose: "PostgreSQL from listed networks" });
    }
    return rules;
}

/** HTTP and HTTPS from anywhere, or from Cloudflare only under origin lockdown. */
function webRules(originLockdown: boolean, cloudflare: IpRanges | undefined): FirewallRule[] {
    let web: IpRanges = ANYWHERE;
    if (originLockdown) {
        if (!cloudflare || (cloudflare.ipv4.length === 0 && cloudflare.ipv6.length === 0)) {
            throw new Error("host.originLockdown is on but Cloudflare's IP ranges are missing; refusing to open 80/443 to nobody or to everybody");
        }
        web = cloudflare;
    }
    return [
        { protocol: "tcp", port: HTTP_PORT, peers: web, purpose: originLockdown ? "HTTP from Cloudflare" : "HTTP" },
        { protocol: "tcp", port: HTTPS_PORT, peers: web, purpose: originLockdown ? "HTTPS from Cloudflare" : "HTTPS" },
    ];
}

/**
 * Outbound rules (F2; DigitalOcean, whose firewall denies every flow not
 * listed once a firewall is attached). What a server needs: DNS, HTTP/HTTPS
 * (apt, image pulls, ACME, backups to S3, provider agents), NTP, and SMTP
 * submission (587 STARTTLS, 465 TLS) for apps that send e-mail through a
 * relay. Port 25 stays closed: providers block it anyway and apps should
 * submit to a relay. Replies to inbound connections need no rule (the
 * firewall is stateful).
 */
export function outboundRules(): FirewallRule[] {
    return [
        { protocol: "udp", port: 53, peers: ANYWHERE, purpose: "DNS" },
        { protocol: "tcp", port: 53, peers: ANYWHERE, purpose: "DNS (large answers)" },
        { protocol: "tcp", port: 80, peers: ANYWHERE, purpose: "HTTP (apt mirrors)" },
        { protocol: "tcp", port: 443, peers: ANYWHERE, purpose: "HTTPS (registries, APIs, S3)" },
        { protocol: "udp", port: 123, peers: ANYWHERE, purpose: "NTP" },
        { protocol: "tcp", port: 587, peers: ANYWHERE, purpose: "SMTP submission (STARTTLS)" },
        { protocol: "tcp", port: 465, peers: ANYWHERE, purpose: "SMTP submission (TLS)" },
    ];
}

/** All CIDRs of a range set, IPv4 first. */
function allCidrs(peers: IpRanges): string[] {
    return [...peers.ipv4, ...peers.ipv6];
}

/** DigitalOcean inbound rules: one rule per port, sources of both families together. */
export function digitalOceanInboundRules(rules: readonly FirewallRule[]): digitalocean.types.input.FirewallInboundRule[] {
    return rules.map((r) => ({ protocol: r.protocol, portRange: String(r.port), sourceAddresses: allCidrs(r.peers) }));
}

/** DigitalOcean outbound rules. */
export function digitalOceanOutboundRules(rules: readonly FirewallRule[]): digitalocean.types.input.FirewallOutboundRule[] {
    return rules.map((r) => ({ protocol: r.protocol, portRange: String(r.port), destinationAddresses: allCidrs(r.peers) }));
}

/**
 * Stand-ins for "no address of this family" on Lightsail. Lightsail (and the
 * provider, which drops empty lists) treats a missing `cidrs` as 0.0.0.0/0
 * and a missing `ipv6Cidrs` as ::/0, so a port open to IPv4 admins only must
 * still name an IPv6 network: loopback, which can never arrive from outside.
 */
export const LIGHTSAIL_NOBODY: IpRanges = { ipv4: ["127.0.0.1/32"], ipv6: ["::1/128"] };

/**
 * Lightsail port infos (F3): every port carries explicit `cidrs` and
 * `ipv6Cidrs`. All of them go into ONE InstancePublicPorts resource, because
 * Lightsail closes every port not listed in it.
 */
export function lightsailPortInfos(rules: readonly FirewallRule[]): aws.types.input.lightsail.InstancePublicPortsPortInfo[] {
    return rules.map((r) => ({
        protocol: r.protocol,
        fromPort: r.port,
        toPort: r.port,
        cidrs: r.peers.ipv4.length > 0 ? [...r.peers.ipv4] : [...LIGHTSAIL_NOBODY.ipv4],
        ipv6Cidrs: r.peers.ipv6.length > 0 ? [...r.peers.ipv6] : [...LIGHTSAIL_NOBODY.ipv6],
    }));
}

/**
 * Cloudflare's published ranges, looked up through the Cloudflare provider
 * only when `needed` (origin lockdown, or a proxy that trusts Cloudflare to
 * name the client); no provider call otherwise.
 */
export function cloudflareIpRanges(needed: boolean, opts?: pulumi.InvokeOutputOptions): pulumi.Output<IpRanges | undefined> {
    if (!needed) {
        return pulumi.output<IpRanges | undefined>(undefined);
    }
    return cloudflare.getIpRangesOutput({}, opts).apply((r) => ({ ipv4: [...r.ipv4Cidrs], ipv6: [...r.ipv6Cidrs] }));
}

/** Inbound rules as an Output, resolving Cloudflare's ranges when origin lockdown needs them. */
export function inboundRulesOutput(config: FirewallConfig, opts?: pulumi.InvokeOutputOptions): pulumi.Output<FirewallRule[]> {
    return cloudflareIpRanges(config.host.originLockdown && config.web !== false, opts).apply((cf) => inboundRules(config, cf));
}
