/**
 * The outputs contract: what a onebox stack publishes for other teams' programs
 * and scripts, as one versioned object under the stack output `onebox`.
 *
 * Compatibility: within one `schemaVersion`, fields are only ever added, so
 * consumers must ignore fields they do not know. Removing, renaming or changing
 * the meaning of a field bumps `schemaVersion`. The JSON Schema in
 * `outputs.schema.json` is generated from this file (`npm run schema:outputs`).
 *
 * Nothing secret belongs here: no passwords, keys or tokens. Secrets are read
 * from the stack directly by whoever is entitled to them.
 */
import * as pulumi from "@pulumi/pulumi";
import { z } from "zod";
import type { StackConfig } from "../config/schema";
import { BACKUP_STATUS_PATH, planOf } from "../config/plan";
import { backupStatusFile } from "../provisioning/paths";
import { version as PROGRAM_VERSION } from "../../package.json";

/** Major version of the contract. */
export const OUTPUTS_SCHEMA_VERSION = 1;

/** The single stack output key holding the contract (`export const onebox = buildOutputs(...)`). */
export const ONEBOX_OUTPUT_KEY = "onebox";

/** Same rules as the config's hostnames: lower-case labels, at least two, the last not all digits. */
const hostname = z
    .string()
    .regex(/^(?=.{1,253}$)(?!.*\.[0-9]+$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/, "not a DNS hostname");
const httpsUrl = z.url({ protocol: /^https$/, message: "must be an https:// URL" });

const environmentSchema = z.object({
    app: z.string().describe("Application name from onebox:app.name."),
    environment: z.string().describe("Environment from onebox:app.environment, e.g. prod."),
});

const hostSchema = z.object({
    // Listed here, not imported from the schema: the contract stays free of the cloud SDKs its
    // consumers need not load, and a new provider is a deliberate change of the contract.
    provider: z.enum(["digitalocean", "lightsail", "existing"]).describe("Where the server runs."),
    ipv4: z.ipv4().describe("Public IPv4 address (static/reserved for cloud hosts)."),
    ipv6: z.ipv6().nullable().describe("Public IPv6 address, or null."),
    sshUser: z.string().describe("Login user of the deploy identity."),
    sshPort: z.number().int().min(1).max(65535),
    sshHostKey: z.string().describe("The server's PUBLIC SSH host key (\"ssh-ed25519 AAAA...\"), for pinning."),
});

const routeSchema = z.object({
    path: z.string().describe("Path prefix routed by the proxy, e.g. / or /api."),
    service: z.string().describe("Service that receives the path."),
});

const urlSchema = z.object({
    hostname,
    url: httpsUrl.describe("Base URL of the hostname."),
    routes: z.array(routeSchema).describe("Path prefixes routed on this hostname, longest first."),
});

const dnsRecordSchema = z.object({
    hostname,
    type: z.enum(["A", "AAAA"]),
    proxied: z.boolean().describe("Whether Cloudflare proxies the record."),
});

const backupsSchema = z.object({
    bucket: z.string(),
    region: z.string(),
    prefix: z.string().describe("Key prefix; dumps are under <prefix>/daily/ and <prefix>/weekly/, file archives under <prefix>/files/."),
    endpoint: httpsUrl.nullable().describe("S3-compatible endpoint, or null for AWS S3."),
    schedule: z.string().describe("Five-field cron schedule, UTC."),
    retentionDays: z.number().int().positive(),
    weeklyRetentionWeeks: z.number().int().min(0),
    statusUrl: httpsUrl.nullable().describe("Where backup status is served (fails when the last success is too old), or null without routes."),
    heartbeat: z
        .boolean()
        .optional()
        .describe(
            "Whether each successful backup pings backups.heartbeatUrl (a dead-man's switch: its service alerts when the pings stop). A stack without routes (statusUrl null) always has one. Absent from stacks deployed before it was added.",
        ),
    statusFile: z
        .string()
        .optional()
        .describe("Path on the server of the status JSON that statusUrl serves (read it over SSH where statusUrl is null). Absent from stacks deployed before it was added."),
});

const databaseSchema = z
    .object({
        host: z.string().describe("Address to connect to: the server's IPv4 address, which the server certificate names."),
        port: z.number().int().min(1).max(65535),
        name: z.string().describe("Database name."),
        user: z.string().describe("Owner role; its password is the secret stack output `databasePassword`."),
        sslmode: z.literal("verify-full").describe("The only mode the server is meant for: unencrypted connections from the listed networks are refused."),
        caCertificate: z.string().describe("PEM of the CA that signed the server certificate; clients pass it as sslrootcert."),
        allowedCidrs: z.array(z.string()).describe("Networks the firewall admits to the port."),
    })
    .describe("PostgreSQL published to listed networks over TLS (database.allowedCidrs).");

const versionsSchema = z.object({
    program: z.string().describe("Version of the onebox program that deployed the stack."),
    postgres: z.number().int().nullable().describe("PostgreSQL major version, or null when the stack runs no database."),
    images: z.record(z.string(), z.string()).describe("Container image of each application service."),
});

/** The contract, as a zod schema. */
export const stackOutputsSchema = z
    .object({
        schemaVersion: z.literal(OUTPUTS_SCHEMA_VERSION),
        environment: environmentSchema,
        host: hostSchema,
        urls: z.array(urlSchema),
        dns: z.array(dnsRecordSchema).describe("DNS records the stack manages (empty when DNS is managed elsewhere)."),
        backups: backupsSchema.nullable().describe("Backup location and policy, or null when backups are off."),
        database: databaseSchema
            .nullable()
            .optional()
            .describe("Direct database access, or null when PostgreSQL is reachable only inside the stack (absent from stacks deployed before it was added)."),
        versions: versionsSchema,
    })
    .meta({
        title: "onebox stack outputs",
        description:
            "The `onebox` output of a onebox stack. Within one schemaVersion fields are only added: ignore unknown fields. No secrets are included.",
    });

export type StackOutputs = z.output<typeof stackOutputsSchema>;

/** The JSON Schema document written to outputs.schema.json (consumer view: unknown fields allowed). */
export function outputsJsonSchema(): string {
    const schema = z.toJSONSchema(stackOutputsSchema, { io: "input" });
    return `${JSON.stringify(schema, null, 2)}\n`;
}

/** What the contract needs from a host (a `Host` fits; its private key is never read). */
export interface OutputsHost {
    readonly provider: string;
    readonly ipv4Address: pulumi.Input<string>;
    readonly ipv6Address: pulumi.Input<string | undefined>;
    readonly connection: {
        readonly user: string;
        readonly port: number;
        readonly hostKey: pulumi.Input<string>;
    };
}

export interface BuildOutputsArgs {
    /** The validated stack configuration. */
    readonly config: StackConfig;
    readonly host: OutputsHost;
    /** Records from the DNS component (`CloudflareDns.records`); empty when DNS is managed elsewhere. @default [] */
    readonly dnsRecords?: pulumi.Input<{ hostname: string; type: "A" | "AAAA"; proxied: boolean }[]>;
    /** CA certificate of the published database's TLS (`DatabaseTls.caCertPem`); required when the database is published. */
    readonly databaseCaCertPem?: pulumi.Input<string>;
}

/** Routes grouped by hostname, in the order hosts first appear; paths longest first (the proxy's match order). */
export function routedUrls(config: Pick<StackConfig, "routes">): StackOutputs["urls"] {
    const byHost = new Map<string, { path: string; service: string }[]>();
    for (const r of config.routes) {
        const list = byHost.get(r.host) ?? [];
        list.push({ path: r.path, service: r.service });
        byHost.set(r.host, list);
    }
    return [...byHost].map(([host, routes]) => ({
        hostname: host,
        url: `https://${host}`,
        routes: routes.sort((a, b) => b.path.length - a.path.length || a.path.localeCompare(b.path)),
    }));
}

export { backupStatusHost, BACKUP_STATUS_PATH } from "../config/plan";

/** The backups part of the contract, or null when backups are off. */
export function backupsOutputs(config: StackConfig): StackOutputs["backups"] {
    const b = config.backups;
    if (!b || !b.enabled) {
        return null;
    }
    const statusHost = planOf(config).backupStatusHost;
    return {
        bucket: b.bucket,
        region: b.region,
        prefix: planOf(config).backupPrefix,
        endpoint: b.endpoint ?? null,
        schedule: b.schedule,
        retentionDays: b.retentionDays,
        weeklyRetentionWeeks: b.weeklyRetentionWeeks,
        statusUrl: statusHost ? `https://${statusHost}${BACKUP_STATUS_PATH}` : null,
        heartbeat: b.heartbeatUrl !== undefined,
        statusFile: backupStatusFile(`${config.app.name}-${config.app.environment}`),
    };
}

/** The database part of the contract: null unless PostgreSQL is published to listed networks. */
export function databaseOutputs(config: StackConfig, address: string, caCertificate: string | undefined): StackOutputs["database"] {
    const db = config.database;
    if (!planOf(config).databasePublished) {
        return null;
    }
    if (!caCertificate) {
        throw new Error("onebox outputs: the database is published but its CA certificate is missing (pass databaseCaCertPem)");
    }
    return { host: address, port: db.publicPort, name: db.name, user: db.user, sslmode: "verify-full", caCertificate: caCertificate.trim(), allowedCidrs: [...db.allowedCidrs] };
}

/** The versions part of the contract. */
export function versionsOutputs(config: StackConfig): StackOutputs["versions"] {
    return {
        program: PROGRAM_VERSION,
        postgres: config.database.enabled ? config.database.version : null,
        images: Object.fromEntries(Object.entries(config.services).map(([n, s]) => [n, s.image])),
    };
}

const SECRET_KEY = /password|passwd|secret|private|token|credential|api[-_]?key|access[-_]?key/i;
/** Private keys in any PEM or age form; certificates are public and allowed. */
const SECRET_VALUE = /PRIVATE KEY|AGE-SECRET-KEY-/;

/** Paths in a value whose key or content looks secret; empty when clean. */
export function secretLeaks(value: unknown, path = ""): string[] {
    if (typeof value === "string") {
        return SECRET_VALUE.test(value) ? [path || "(root)"] : [];
    }
    if (Array.isArray(value)) {
        return value.flatMap((v, i) => secretLeaks(v, `${path}[${i}]`));
    }
    if (value !== null && typeof value === "object") {
        return Object.entries(value).flatMap(([k, v]) => {
            const p = path ? `${path}.${k}` : k;
            return SECRET_KEY.test(k) ? [p] : secretLeaks(v, p);
        });
    }
    return [];
}

/**
 * Validates a contract value before it is published: it must match the schema
 * and contain nothing secret-looking. Throws naming every bad path.
 */
export function checkOutputs(value: StackOutputs): StackOutputs {
    const parsed = stackOutputsSchema.safeParse(value);
    if (!parsed.success) {
        throw new Error(`onebox outputs do not match schema v${OUTPUTS_SCHEMA_VERSION}:\n${z.prettifyError(parsed.error)}`);
    }
    const leaks = secretLeaks(value);
    if (leaks.length > 0) {
        throw new Error(`onebox outputs must not contain secrets; remove: ${leaks.join(", ")}`);
    }
    return parsed.data;
}

/** Builds the `onebox` stack output from the config and the components' outputs. */
export function buildOutputs(args: BuildOutputsArgs): pulumi.Output<StackOutputs> {
    const { config, host } = args;
    return pulumi
        .all([host.ipv4Address, host.ipv6Address, host.connection.hostKey, args.dnsRecords ?? [], args.databaseCaCertPem])
        .apply(([ipv4, ipv6, hostKey, records, caCert]) =>
            checkOutputs({
                schemaVersion: OUTPUTS_SCHEMA_VERSION,
                environment: { app: config.app.name, environment: config.app.environment },
                host: {
                    provider: host.provider as StackOutputs["host"]["provider"],
                    ipv4,
                    ipv6: ipv6 ?? null,
                    sshUser: host.connection.user,
                    sshPort: host.connection.port,
                    sshHostKey: hostKey.trim(),
                },
                urls: routedUrls(config),
                dns: records.map((r) => ({ hostname: r.hostname, type: r.type, proxied: r.proxied })),
                backups: backupsOutputs(config),
                database: databaseOutputs(config, ipv4, caCert),
                versions: versionsOutputs(config),
            }),
        );
}
