/**
 * Cloudflare DNS for the routed hostnames: one A record per hostname (and AAAA
 * when the host has IPv6), optionally the zone's SSL mode set to Full (strict),
 * and optionally a Cloudflare Origin CA certificate for exactly those
 * hostnames, whose private key is generated here and stays a secret (R6).
 */
import * as pulumi from "@pulumi/pulumi";
import * as cloudflare from "@pulumi/cloudflare";
import * as tls from "@pulumi/tls";
import { isInZone } from "../config/validators";

export const CLOUDFLARE_DNS_TYPE = "onebox:dns:CloudflareDns";

/** Validity periods the Cloudflare Origin CA accepts, in days. */
export const ORIGIN_CA_VALIDITY_DAYS = [7, 30, 90, 365, 730, 1095, 5475] as const;
export type OriginCaValidityDays = (typeof ORIGIN_CA_VALIDITY_DAYS)[number];

/** Cloudflare's "automatic" TTL; the only TTL a proxied record can have. */
export const AUTOMATIC_TTL = 1;

/** TTL for records that are not proxied, when none is given. */
export const DEFAULT_UNPROXIED_TTL = 300;

export interface CloudflareDnsArgs {
    /**
     * The zone name. Used to look the zone up when `zoneId` is absent and to
     * refuse hostnames outside the zone.
     * @example "example.com"
     */
    readonly zone: string;
    /**
     * The zone id (32 hex characters). When absent, the zone is looked up by
     * name with the provider's `getZone` data source.
     * @default looked up by `zone`
     */
    readonly zoneId?: pulumi.Input<string>;
    /**
     * Hostnames that get records, e.g. every route's host plus
     * `dns.extraHostnames`. Duplicates are ignored (several routes share a host).
     * @example ["app.example.com", "api.example.com"]
     */
    readonly hostnames: readonly string[];
    /** The server's public IPv4 address (the reserved/static IP). */
    readonly ipv4: pulumi.Input<string>;
    /**
     * The server's public IPv6 address. AAAA records are created only when this
     * is given, so pass it only for hosts that have IPv6: an address that
     * resolves to nothing fails the deployment with a clear error rather than
     * publishing an empty record.
     * @default undefined (no AAAA records)
     */
    readonly ipv6?: pulumi.Input<string | undefined>;
    /**
     * Proxy the records through Cloudflare (orange cloud). Required for origin
     * certificates, which only Cloudflare's edge trusts.
     * @default true
     */
    readonly proxied?: boolean;
    /**
     * TTL in seconds for records that are not proxied (60-86400). Proxied
     * records always use Cloudflare's automatic TTL.
     * @default 1 (automatic) when proxied, 300 otherwise
     */
    readonly ttl?: number;
    /**
     * Set the zone's SSL mode to Full (strict): Cloudflare then verifies the
     * origin certificate, which plain "Full" does not. Note this is a zone-wide
     * setting and affects every hostname of the zone.
     * @default false
     */
    readonly sslStrict?: boolean;
    /**
     * Create a Cloudflare Origin CA certificate for exactly `hostnames` (the
     * API token needs "SSL and Certificates: Edit"). Needs `proxied: true`.
     * @default false
     */
    readonly originCertificate?: boolean;
    /**
     * Validity of the origin certificate in days.
     * @default 5475 (15 years, Cloudflare's maximum; the origin CA is only trusted by Cloudflare's edge)
     */
    readonly originCertificateValidityDays?: OriginCaValidityDays;
}

/** One published DNS record. */
export interface DnsRecordInfo {
    hostname: string;
    type: "A" | "AAAA";
    content: string;
    proxied: boolean;
}

/** A record to create, before it is bound to a zone and an address. */
export interface PlannedRecord {
    /** Logical resource name suffix, stable per hostname and type. */
    role: string;
    hostname: string;
    type: "A" | "AAAA";
}

/** Hostnames in first-seen order, without duplicates. */
export function uniqueHostnames(hostnames: readonly string[]): string[] {
    return [...new Set(hostnames)];
}

/**
 * Problems with the arguments, each naming the argument and the fix. Checked
 * before any resource is registered, so nothing half-exists.
 */
export function cloudflareDnsArgsProblems(args: CloudflareDnsArgs): string[] {
    const problems: string[] = [];
    const proxied = args.proxied ?? true;
    const hostnames = uniqueHostnames(args.hostnames);
    if (hostnames.length === 0) {
        problems.push("hostnames: list at least one hostname (the routes' hosts)");
    }
    for (const h of hostnames) {
        if (!isInZone(h, args.zone)) {
            problems.push(`hostnames: "${h}" is outside the zone ${args.zone}; use a name ending in .${args.zone}`);
        }
    }
    if (args.ttl !== undefined) {
        if (proxied && args.ttl !== AUTOMATIC_TTL) {
            problems.push(`ttl: proxied records always use Cloudflare's automatic TTL; omit ttl or set proxied: false`);
        } else if (!proxied && args.ttl !== AUTOMATIC_TTL && (!Number.isInteger(args.ttl) || args.ttl < 60 || args.ttl > 86400)) {
            problems.push(`ttl: ${args.ttl} is out of range; use 1 (automatic) or 60-86400 seconds`);
        }
    }
    if (args.originCertificate && !proxied) {
        problems.push("originCertificate: origin certificates are only trusted through Cloudflare's proxy; set proxied: true");
    }
    const validity = args.originCertificateValidityDays;
    if (validity !== undefined && !(ORIGIN_CA_VALIDITY_DAYS as readonly number[]).includes(validity)) {
        problems.push(`originCertificateValidityDays: use one of ${ORIGIN_CA_VALIDITY_DAYS.join(", ")}`);
    }
    return problems;
}

/** The records to create: A per hostname, plus AAAA per hostname when the host has IPv6. */
export function plannedRecords(hostnames: readonly string[], withIpv6: boolean): PlannedRecord[] {
    const records: PlannedRecord[] = [];
    for (const hostname of uniqueHostnames(hostnames)) {
        // Names are keyed by hostname, not index, so adding a hostname never
        // replaces the records of the others.
        records.push({ role: `a-${hostname}`, hostname, type: "A" });
        if (withIpv6) {
            records.push({ role: `aaaa-${hostname}`, hostname, type: "AAAA" });
        }
    }
    return records;
}

/** The TTL a record gets. */
export function recordTtl(proxied: boolean, ttl?: number): number {
    return proxied ? AUTOMATIC_TTL : (ttl ?? DEFAULT_UNPROXIED_TTL);
}

/**
 * The zone id from a `getZone` lookup. With a `filter`, provider 5.x/6.x
 * fills `zoneId` but may leave `id` empty
 * (cloudflare/terraform-provider-cloudflare#6111), so both are read.
 */
export function zoneIdFromLookup(zone: string, result: { id?: string; zoneId?: string }): string {
    const id = result.zoneId || result.id;
    if (!id) {
        throw new Error(`Cloudflare zone "${zone}" was not found; check dns.zone or set dns.zoneId`);
    }
    return id;
}

export class CloudflareDns extends pulumi.ComponentResource {
    /** The zone id the records live in. */
    public readonly zoneId: pulumi.Output<string>;
    /** Every record created. */
    public readonly records: pulumi.Output<DnsRecordInfo[]>;
    /** The origin certificate (PEM, public), when `originCertificate` is set. */
    public readonly certificatePem?: pulumi.Output<string>;
    /** The origin certificate's private key (PEM, secret), when `originCertificate` is set. */
    public readonly privateKeyPem?: pulumi.Output<string>;

    constructor(name: string, args: CloudflareDnsArgs, opts?: pulumi.ComponentResourceOptions) {
        // Checked before super(): bad arguments register nothing, not even the component.
        const problems = cloudflareDnsArgsProblems(args);
        if (problems.length > 0) {
            throw new Error(`${name}: invalid DNS settings:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
        }
        super(CLOUDFLARE_DNS_TYPE, name, {}, opts);
        const proxied = args.proxied ?? true;
        const hostnames = uniqueHostnames(args.hostnames);

        this.zoneId = this.resolveZoneId(args);
        this.records = this.createRecords(name, args, hostnames, proxied);
        if (args.sslStrict) {
            this.createSslStrict(name);
        }
        if (args.originCertificate) {
            const cert = this.createOriginCertificate(name, hostnames, args.originCertificateValidityDays ?? 5475);
            this.certificatePem = cert.certificatePem;
            this.privateKeyPem = cert.privateKeyPem;
        }

        this.registerOutputs({
            zoneId: this.zoneId,
            records: this.records,
            certificatePem: this.certificatePem,
            privateKeyPem: this.privateKeyPem,
        });
    }

    private resolveZoneId(args: CloudflareDnsArgs): pulumi.Output<string> {
        if (args.zoneId !== undefined) {
            return pulumi.output(args.zoneId);
        }
        const found = cloudflare.getZoneOutput({ filter: { name: args.zone } }, { parent: this });
        return found.apply((z) => zoneIdFromLookup(args.zone, z));
    }

    private createRecords(name: string, args: CloudflareDnsArgs, hostnames: string[], proxied: boolean): pulumi.Output<DnsRecordInfo[]> {
        const ttl = recordTtl(proxied, args.ttl);
        const ipv6 =
            args.ipv6 === undefined
                ? undefined
                : pulumi.output(args.ipv6).apply((v) => {
                      if (!v) {
                          throw new Error(`${name}: ipv6 was given but the host has no IPv6 address; pass ipv6 only for hosts with IPv6`);
                      }
                      return v;
                  });
        const infos = plannedRecords(hostnames, ipv6 !== undefined).map((p) => {
            const content = p.type === "A" ? pulumi.output(args.ipv4) : (ipv6 as pulumi.Output<string>);
            const record = new cloudflare.DnsRecord(
                `${name}-${p.role}`,
                { zoneId: this.zoneId, name: p.hostname, type: p.type, content, proxied, ttl, comment: "managed by onebox" },
                { parent: this },
            );
            return pulumi.all([record.content, record.proxied]).apply(
                ([c, px]): DnsRecordInfo => ({ hostname: p.hostname, type: p.type, content: c, proxied: px }),
            );
        });
        return pulumi.all(infos);
    }

    private createSslStrict(name: string): cloudflare.ZoneSetting {
        return new cloudflare.ZoneSetting(`${name}-ssl`, { zoneId: this.zoneId, settingId: "ssl", value: "strict" }, { parent: this });
    }

    private createOriginCertificate(
        name: string,
        hostnames: string[],
        validityDays: OriginCaValidityDays,
    ): { certificatePem: pulumi.Output<string>; privateKeyPem: pulumi.Output<string> } {
        // ECDSA P-256 ("origin-ecc"): accepted by the Origin CA, smaller and
        // faster than RSA. The provider already marks the key outputs secret;
        // listing them here keeps R6 true even if that default changes.
        const key = new tls.PrivateKey(
            `${name}-origin-key`,
            { algorithm: "ECDSA", ecdsaCurve: "P256" },
            { parent: this, additionalSecretOutputs: ["privateKeyPem", "privateKeyOpenssh", "privateKeyPemPkcs8"] },
        );
        const csr = new tls.CertRequest(
            `${name}-origin-csr`,
            {
                privateKeyPem: key.privateKeyPem,
                dnsNames: hostnames,
                // X.509 limits the common name to 64 characters; the SANs carry the names anyway.
                subject: { commonName: hostnames[0].length <= 64 ? hostnames[0] : undefined },
            },
            { parent: this },
        );
        const cert = new cloudflare.OriginCaCertificate(
            `${name}-origin-cert`,
            { csr: csr.certRequestPem, hostnames, requestType: "origin-ecc", requestedValidity: validityDays },
            { parent: this },
        );
        return { certificatePem: cert.certificate, privateKeyPem: pulumi.secret(key.privateKeyPem) };
    }
}
