/**
 * The resolved plan: every fact derived from the validated configuration,
 * computed in this one module. The schema, the renderers, the components and
 * the outputs contract read these facts here instead of re-deriving them.
 *
 * {@link planOf} computes a configuration's plan once and returns the same
 * object to every later caller (the configuration is immutable once
 * validated).
 */
import type { ProvisioningConfig, StackConfig } from "./schema";

/** What a plan is resolved from: a whole stack configuration, or the provisioning part of one. */
export type PlanSource = StackConfig | ProvisioningConfig;

/**
 * Secret names the program fills itself, referenced by the host steps as
 * `{{secret:NAME}}`. Every other name is an app secret (`generatedSecrets` or
 * `secrets`).
 */
export const RESERVED_SECRETS = {
    /** Password of the database owner (generated). */
    postgresPassword: "POSTGRES_PASSWORD",
    /** Certificate and key PostgreSQL serves to published networks (private CA). */
    postgresTlsCert: "POSTGRES_TLS_CERT",
    postgresTlsKey: "POSTGRES_TLS_KEY",
    /** Backup bucket credentials: the created IAM user's key, or user-supplied when `backups.create` is false. */
    backupAccessKeyId: "BACKUP_S3_ACCESS_KEY_ID",
    backupSecretAccessKey: "BACKUP_S3_SECRET_ACCESS_KEY",
    /** Cloudflare origin certificate and key (`tls.mode: cloudflare-origin`). */
    tlsOriginCert: "TLS_ORIGIN_CERT",
    tlsOriginKey: "TLS_ORIGIN_KEY",
} as const;

export type ReservedSecret = (typeof RESERVED_SECRETS)[keyof typeof RESERVED_SECRETS];

/** Reserved names a user may supply (the credentials of a bucket the program does not create). */
export const USER_SUPPLIABLE_SECRETS: readonly ReservedSecret[] = [RESERVED_SECRETS.backupAccessKeyId, RESERVED_SECRETS.backupSecretAccessKey];

/** Reserved names only the program ever fills. */
export const PROGRAM_ONLY_SECRETS: readonly ReservedSecret[] = Object.values(RESERVED_SECRETS).filter((n) => !USER_SUPPLIABLE_SECRETS.includes(n));

/** Path on {@link Plan.backupStatusHost} where the proxy serves backup status. */
export const BACKUP_STATUS_PATH = "/healthz/backup";

/** What the rest of the program needs to know beyond the settings themselves. */
export interface Plan {
    /** PostgreSQL runs. */
    readonly databaseEnabled: boolean;
    /** PostgreSQL is published to `database.allowedCidrs` (and so served over TLS, opened in the firewalls). */
    readonly databasePublished: boolean;
    /** Backups run (and so the backup status endpoint exists). */
    readonly backupsEnabled: boolean;
    /**
     * Hostname that serves {@link BACKUP_STATUS_PATH}: the first routed host
     * of a service that uses the database, else the first route's host.
     */
    readonly backupStatusHost: string | undefined;
    /** Key prefix of the stack's backups in the bucket: `backups.prefix` or "<app>/<environment>". */
    readonly backupPrefix: string;
    /**
     * Requests reach our own proxy through Cloudflare's proxy (Cloudflare DNS with
     * `dns.proxied`, or `host.behindCloudflare` for the provisioning part alone), so
     * the proxy must know Cloudflare's ranges to tell the real client apart.
     */
    readonly behindCloudflare: boolean;
    /** Every routed hostname plus `dns.extraHostnames`, each once, in first-seen order. */
    readonly dnsHostnames: readonly string[];
    /**
     * The stack's own Caddy runs: `proxy.kind` caddy with at least one route. A stack
     * without routes (a database-only server) runs no proxy container.
     */
    readonly proxyRuns: boolean;
    /**
     * 80/443 are open in the cloud firewall and ufw: the stack's own Caddy runs, or an
     * existing Traefik on the host serves the web (`proxy.kind` traefik-external).
     */
    readonly webPortsOpen: boolean;
    /**
     * `proxy.kind` traefik-external: a small Caddy serves {@link BACKUP_STATUS_PATH}
     * behind Traefik (backups on, and a route's host to serve it on).
     */
    readonly statusServerRuns: boolean;
}

const plans = new WeakMap<object, Plan>();

/** The plan of a validated configuration, computed on first use. */
export function planOf(config: PlanSource): Plan {
    let plan = plans.get(config);
    if (!plan) {
        plan = resolvePlan(config);
        plans.set(config, plan);
    }
    return plan;
}

/** Whether requests arrive through Cloudflare's proxy: from the stack's DNS, or as the provisioning part says. */
function edgeIsCloudflare(config: PlanSource): boolean {
    if ("provider" in config.host) {
        const dns = "dns" in config ? config.dns : undefined;
        return dns?.provider === "cloudflare" && dns.proxied;
    }
    return config.host.behindCloudflare === true;
}

function resolvePlan(config: PlanSource): Plan {
    return {
        databaseEnabled: config.database.enabled,
        databasePublished: databasePublished(config),
        backupsEnabled: Boolean(config.backups?.enabled),
        behindCloudflare: config.proxy.kind === "caddy" && edgeIsCloudflare(config),
        backupStatusHost: backupStatusHost(config),
        backupPrefix: backupPrefix(config),
        dnsHostnames: dnsHostnames("dns" in config ? config : { routes: config.routes }),
        proxyRuns: proxyRuns(config),
        webPortsOpen: webPortsOpen(config),
        statusServerRuns: config.proxy.kind === "traefik-external" && Boolean(config.backups?.enabled) && backupStatusHost(config) !== undefined,
    };
}

/*
 * The derivations, each usable on the part of a configuration it reads (the
 * components and the outputs contract hold only parts).
 */

/** Whether PostgreSQL is published to listed networks. */
export function databasePublished(config: { database: { enabled: boolean; allowedCidrs: readonly string[] } }): boolean {
    return config.database.enabled && config.database.allowedCidrs.length > 0;
}

/** See {@link Plan.proxyRuns}. */
export function proxyRuns(config: Pick<StackConfig, "proxy" | "routes">): boolean {
    return config.proxy.kind === "caddy" && config.routes.length > 0;
}

/** See {@link Plan.webPortsOpen}. */
export function webPortsOpen(config: Pick<StackConfig, "proxy" | "routes">): boolean {
    return config.proxy.kind === "traefik-external" || config.routes.length > 0;
}

/** See {@link Plan.backupStatusHost}. */
export function backupStatusHost(config: Pick<StackConfig, "routes" | "services">): string | undefined {
    const withDatabase = config.routes.find((r) => config.services[r.service]?.database);
    return (withDatabase ?? config.routes[0])?.host;
}

/** See {@link Plan.backupPrefix}. */
export function backupPrefix(config: Pick<StackConfig, "app" | "backups">): string {
    return config.backups?.prefix ?? `${config.app.name}/${config.app.environment}`;
}

/** See {@link Plan.dnsHostnames}. */
export function dnsHostnames(config: Pick<StackConfig, "routes"> & { dns?: StackConfig["dns"] }): string[] {
    return [...new Set([...config.routes.map((r) => r.host), ...(config.dns?.extraHostnames ?? [])])];
}
