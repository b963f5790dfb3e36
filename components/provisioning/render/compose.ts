/**
 * Renders the stack's `compose.yaml` (pure; deterministic key order).
 *
 * Network design (H8, H13): every network but `edge` and `egress` is `internal: true` (no route out).
 * Each internal network's bridge is named `obi-<hash of project and network>` (INTERNAL_BRIDGE_PREFIX):
 * Docker's internal flag stops forwarding only, not packets to the host's own addresses, so the
 * bootstrap's firewall drops every new connection from an `obi-` bridge to the host (sshd, or any
 * host service the firewall admits from a range that covers Docker's subnets).
 * - `database`: PostgreSQL and the services with `database: true`, nothing else.
 * - `redis`: Redis and the services with `redis: true`.
 * - `internal`: every app service, so they can call each other (never the database or Redis).
 * - `web`: the proxy and the routed services: the proxy reaches nothing else.
 * - `edge`: the proxy alone; it publishes 80/443 and reaches ACME (ports of a container only on
 *   internal networks are not published).
 * - `egress`: services with `egress: true` (the default), for outbound mail, APIs, S3. An ordinary
 *   bridge: its members share `internal` anyway, and with traffic between containers off on it
 *   (`enable_icc: false`) Docker's DNS may answer a peer's name with its `egress` address, which
 *   then cannot be reached (the resolver picks one shared network's answer), so app services
 *   could not call each other.
 * - `proxy` (traefik-external only): the existing Traefik's external network, joined by routed services.
 * - `db-published` (only with `database.allowedCidrs`): Docker does not publish ports of a
 *   container attached only to internal networks, so PostgreSQL joins this plain bridge to
 *   publish `database.publicPort`; the host firewall limits it to the listed CIDRs.
 * Only the proxy publishes ports (80/443), except that one opt-in database port.
 *
 * Every service has a restart policy and, where configured, a health check (H9); app
 * services run as `user`, with `no-new-privileges` and all capabilities dropped but the
 * ones a service lists in `capAdd` (from the schema's allow-list).
 *
 * Containers (H12): every one has a read-only root filesystem (app services unless
 * `readOnly: false`), with `/tmp` and each image's other writable paths as tmpfs and its
 * data on bind-mounted volumes, memory, CPU and pids limits; the proxy runs as a non-root
 * user whose only capability is NET_BIND_SERVICE.
 *
 * Secrets (H11): an app service gets each of its secrets as a file under /run/secrets,
 * named by `<NAME>_FILE`; only the names in `secretsAsEnv` reach its environment.
 */
import { createHash } from "node:crypto";
import { stringify } from "yaml";
import { databaseEnvOf, type DatabaseEnv, type ProvisioningConfig, type ServiceConfig } from "../../config/schema";
import { shellJoin } from "../shell";
import { planOf } from "../../config/plan";
import { maxConnectionsOf, postgresSettingArgs } from "../../config/postgres-settings";
import { POOLER_SERVICE } from "../../config/pooler-schema";
import { CONTAINER_POOLER_INI, POOLER_PORT, POOLER_USER, poolerConfigHash, poolerContainerName, renderPgbouncerIni } from "./pgbouncer";
import {
    CONFIG_DIR_VARIABLE,
    CONTAINER_CADDY_DIR,
    CONTAINER_CADDY_LOG_DIR,
    CONTAINER_CERTS_DIR,
    CONTAINER_DB_PASSWORD_FILE,
    CONTAINER_POSTGRES_PASSWORD_FILE,
    CONTAINER_SECRETS_DIR,
    containerSecretFile,
    POSTGRES_HBA_FILE_NAME,
    POSTGRES_TLS_CERT_FILE_NAME,
    POSTGRES_TLS_KEY_FILE_NAME,
    CONTAINER_STATUS_DIR,
    type AppPaths,
    walSpoolDir,
    CONTAINER_WAL_SPOOL_DIR,
    postgresSocketDir,
} from "../paths";
import { serviceMounts } from "../volumes";

/** The socket directory of PostgreSQL in its image. */
export const POSTGRES_SOCKET_DIR = "/var/run/postgresql";

/** Daemon-wide defaults are set by the bootstrap too (H7); repeated here so a host without them still rotates. */
export const CONTAINER_LOGGING = { driver: "json-file", options: { "max-size": "10m", "max-file": "3" } } as const;

/** Built-in service names (also reserved in the config schema). */
export const PROXY_SERVICE = "proxy";
export const POSTGRES_SERVICE = "postgres";
export const REDIS_SERVICE = "redis";
/** Serves /healthz/backup behind an external Traefik (there is no proxy of ours to do it). */
export const STATUS_SERVICE = "backup-status";

/** Resources of the built-in services, sized for a 1 GB host next to two app services. */
const PROXY_MEMORY_MB = 128;
const PROXY_CPUS = 0.5;
const STATUS_MEMORY_MB = 48;
const POSTGRES_CPUS = 1;
const REDIS_CPUS = 0.5;
/** Most processes of the built-in containers (H12); PostgreSQL forks one per connection (see postgresPids). */
const PROXY_PIDS = 256;
const STATUS_PIDS = 64;
const POSTGRES_PIDS = 256;
const REDIS_PIDS = 64;
/** PgBouncer is one event-driven process. */
const POOLER_CPUS = 0.5;
const POOLER_PIDS = 32;
/**
 * The proxy's user (H12): not root. Docker gives a non-root process no effective
 * capabilities and no-new-privileges ignores file capabilities, so binding 80/443 comes
 * from the container's own network namespace (`net.ipv4.ip_unprivileged_port_start`);
 * NET_BIND_SERVICE is the only capability left in its bounding set. Its data, config and
 * log directories on the host are owned by this uid.
 */
export const PROXY_USER = "10080:10080";
/** Port the status server listens on inside its container (traefik-external mode). */
export const STATUS_PORT = 8080;

export interface ComposeContext {
    /** Compose project name, `<app>-<environment>`. */
    project: string;
    /** The stack's paths; its data is under `paths.dataDir`. */
    paths: AppPaths;
}

/** The compose project name of a stack. */
export function projectName(config: ProvisioningConfig): string {
    return `${config.app.name}-${config.app.environment}`;
}

/** Container name of PostgreSQL: unique on the host, so it is also the DNS name apps use (see `databaseHost`). */
export function postgresContainerName(project: string): string {
    return `${project}-postgres`;
}

export function redisContainerName(project: string): string {
    return `${project}-redis`;
}

/** PostgreSQL image: `database.image`, else the official image of `database.version`. */
export function postgresImage(config: ProvisioningConfig): string {
    return config.database.image ?? `postgres:${config.database.version}`;
}

/**
 * uid:gid of the postgres user inside the image, which must be able to read the
 * password file: 999 in the official Debian-based images, 70 in the Alpine ones.
 */
export function postgresUid(image: string): string {
    return /alpine/.test(image.split("/").pop() ?? "") ? "70:70" : "999:999";
}

/** The official image moved PGDATA under /var/lib/postgresql/<major>/ in 18 and expects the parent mounted. */
export function postgresDataTarget(version: number): string {
    return version >= 18 ? "/var/lib/postgresql" : "/var/lib/postgresql/data";
}

/** Compose interpolates `$` in every string value; `$$` is a literal dollar. */
export function composeEscape(value: string): string {
    return value.replace(/\$/g, () => "$$");
}

/** `${ONEBOX_CONFIG_DIR:-/etc/onebox/<project>}`: the real path on the host, relocatable for offline validation. */
export function configDirRef(paths: AppPaths): string {
    return `\${${CONFIG_DIR_VARIABLE}:-${paths.configDir}}`;
}

const seconds = (n: number) => `${n}s`;

/**
 * Health check that probes an HTTP path from inside the container. Images differ
 * in which HTTP client they ship, so the probe uses the first of curl, wget,
 * python3 and node that exists. Limits: it needs /bin/sh in the image
 * (distroless images have none: set `health.command` instead), and the app must
 * listen on 127.0.0.1 as well (e.g. Next.js standalone needs HOSTNAME=0.0.0.0).
 * Any status below 400 counts as healthy (curl -f, wget and urllib fail on >= 400).
 */
export function httpProbe(port: number, path: string): string[] {
    const url = `http://127.0.0.1:${port}${path}`;
    const clients: [string, string[]][] = [
        ["curl", ["curl", "-fsS", "-o", "/dev/null", "--max-time", "5", url]],
        ["wget", ["wget", "-q", "-O", "/dev/null", "-T", "5", url]],
        ["python3", ["python3", "-c", `import urllib.request; urllib.request.urlopen("${url}", timeout=5)`]],
        ["node", ["node", "-e", `require("http").get("${url}",(r)=>process.exit(r.statusCode<400?0:1)).on("error",()=>process.exit(1))`]],
    ];
    const branches = clients.map(([bin, argv], i) => `${i === 0 ? "if" : "elif"} command -v ${bin} >/dev/null 2>&1; then exec ${shellJoin(argv)}`);
    return ["CMD-SHELL", `${branches.join("; ")}; else echo 'no curl, wget, python3 or node in the image; set health.command' >&2; exit 1; fi`];
}

/** Health check of a Caddy container: its admin API answers once the config is loaded. */
const CADDY_HEALTH = {
    test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://localhost:2019/config/"],
    interval: "10s",
    timeout: "5s",
    retries: 3,
    start_period: "10s",
};

/** The compose healthcheck of an app service, or undefined when none is configured. */
export function serviceHealthcheck(service: ServiceConfig): Record<string, unknown> | undefined {
    const h = service.health;
    if (!h) {
        return undefined;
    }
    let test: string[];
    if (h.command) {
        test = ["CMD", ...h.command.map(composeEscape)];
    } else if (h.path && service.port !== undefined) {
        test = httpProbe(service.port, h.path);
    } else {
        return undefined;
    }
    return { test, interval: seconds(h.intervalSeconds), timeout: "5s", retries: 3, start_period: seconds(h.startPeriodSeconds) };
}

interface Bind {
    type: "bind";
    source: string;
    target: string;
    read_only?: boolean;
    bind: { create_host_path: boolean };
}

/** A bind mount whose source must exist: a missing secret file fails loudly instead of becoming an empty directory. */
function bind(source: string, target: string, readOnly = false): Bind {
    return readOnly
        ? { type: "bind", source, target, read_only: true, bind: { create_host_path: false } }
        : { type: "bind", source, target, bind: { create_host_path: false } };
}

const HARDENING = { security_opt: ["no-new-privileges:true"], cap_drop: ["ALL"] } as const;

function limits(memoryMb: number, cpus: number, pids: number) {
    return { mem_limit: `${memoryMb}m`, cpus, pids_limit: pids };
}

/** A read-only root filesystem with these directories writable in memory (H12). */
function readOnlyRoot(tmpfs: string[]) {
    return { read_only: true, tmpfs: [...new Set(tmpfs)] };
}

/** Secrets of a service delivered as files (H11): all of its `secrets` but the ones opted into its environment. */
export function fileSecrets(service: ServiceConfig): string[] {
    return service.secrets.filter((n) => !service.secretsAsEnv.includes(n)).sort();
}

/** Whether a service gets the database password as a file (`databaseEnv.passwordFile`). */
export function hasDatabasePasswordFile(service: ServiceConfig): boolean {
    return service.database && databaseEnvOf(service).passwordFile !== null;
}

/** Whether a service gets a /run/secrets directory: it has file secrets or the database password file. */
export function hasSecretFiles(service: ServiceConfig): boolean {
    return hasDatabasePasswordFile(service) || fileSecrets(service).length > 0;
}

/**
 * The database URL in the service's scheme, without a password (H11) unless given
 * one: the password is the file its `databaseEnv.passwordFile` variable names.
 */
export function databaseUrl(config: ProvisioningConfig, project: string, password?: string, env: DatabaseEnv = databaseEnvOf({})): string {
    const db = config.database;
    // SQLAlchemy's asyncpg driver passes the query to asyncpg, which calls the TLS mode `ssl`.
    const tls = env.sslmode ? `?${env.scheme.endsWith("+asyncpg") ? "ssl" : "sslmode"}=${env.sslmode}` : "";
    const { host, port } = databaseEndpoint(config, project, env);
    return `${env.scheme}://${db.user}${password === undefined ? "" : `:${password}`}@${host}:${port}/${db.name}${tls}`;
}

/** Where a service connects: PgBouncer with `databaseEnv.pooler` (and the pooler on), else PostgreSQL. */
export function databaseEndpoint(config: ProvisioningConfig, project: string, env: DatabaseEnv): { host: string; port: number } {
    return env.pooler && config.database.pooler.enabled ? { host: poolerContainerName(project), port: POOLER_PORT } : { host: postgresContainerName(project), port: 5432 };
}

/** Routes of one service, in config order. */
function routesOf(config: ProvisioningConfig, service: string) {
    return config.routes.filter((r) => r.service === service);
}

/** Traefik rule for a route: the host, and the path prefix as Caddy matches it (`/api` and `/api/...`). */
export function traefikRule(host: string, path: string): string {
    const prefix = path.replace(/\/+$/, "");
    if (prefix === "") {
        return `Host(\`${host}\`)`;
    }
    return `Host(\`${host}\`) && (Path(\`${prefix}\`) || PathPrefix(\`${prefix}/\`))`;
}

/** Labels that publish one service through the external Traefik (keys sorted). */
export function traefikLabels(config: ProvisioningConfig, project: string, service: string): Record<string, string> {
    const svc = config.services[service];
    const routes = routesOf(config, service);
    if (routes.length === 0 || svc.port === undefined) {
        return {};
    }
    const labels: Record<string, string> = {
        "traefik.enable": "true",
        "traefik.docker.network": config.proxy.externalNetwork,
        [`traefik.http.services.${project}-${service}.loadbalancer.server.port`]: String(svc.port),
        ...traefikMiddlewares(config, project),
    };
    routes.forEach((r, i) => {
        const router = `traefik.http.routers.${project}-${service}-${i}`;
        labels[`${router}.rule`] = traefikRule(r.host, r.path);
        labels[`${router}.entrypoints`] = config.proxy.traefikEntrypoint;
        labels[`${router}.tls`] = "true";
        if (config.proxy.traefikCertResolver) {
            labels[`${router}.tls.certresolver`] = config.proxy.traefikCertResolver;
        }
        labels[`${router}.middlewares`] = `${project}-headers,${project}-compress`;
        labels[`${router}.service`] = `${project}-${service}`;
    });
    return sortKeys(labels);
}

/**
 * The security-header and compression middlewares, declared identically on every
 * routed container so routers keep working while any one of them is restarting.
 */
function traefikMiddlewares(config: ProvisioningConfig, project: string): Record<string, string> {
    const m = `traefik.http.middlewares.${project}-headers.headers`;
    const p = config.proxy;
    const labels: Record<string, string> = {
        [`${m}.contentTypeNosniff`]: "true",
        [`${m}.referrerPolicy`]: p.referrerPolicy,
        [`${m}.contentSecurityPolicy`]: composeEscape(p.contentSecurityPolicy),
        // An empty custom header value makes Traefik remove the header.
        [`${m}.customResponseHeaders.Server`]: "",
        [`traefik.http.middlewares.${project}-compress.compress`]: "true",
    };
    if (p.frameOptions === "DENY") {
        labels[`${m}.frameDeny`] = "true";
    } else if (p.frameOptions === "SAMEORIGIN") {
        labels[`${m}.customFrameOptionsValue`] = "SAMEORIGIN";
    }
    if (p.hstsMaxAge > 0) {
        labels[`${m}.stsSeconds`] = String(p.hstsMaxAge);
        if (p.hstsIncludeSubdomains) labels[`${m}.stsIncludeSubdomains`] = "true";
        if (p.hstsPreload) labels[`${m}.stsPreload`] = "true";
    }
    return labels;
}

function sortKeys<T>(o: Record<string, T>): Record<string, T> {
    return Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}


/** App service names, sorted: reordering the config does not change the rendered files. */
export function appServiceNames(config: ProvisioningConfig): string[] {
    return Object.keys(config.services).sort();
}

/**
 * Environment of one app service (sorted keys): its `env`, DATABASE_* (DATABASE_URL without
 * the password unless it opted into it as a secret) and REDIS_URL when asked for, and
 * `<NAME>_FILE` for each secret it reads from a file. Never a secret value.
 */
export function serviceEnvironment(config: ProvisioningConfig, project: string, name: string): Record<string, string> {
    const svc = config.services[name];
    const env: Record<string, string> = {};
    if (svc.database) {
        const names = databaseEnvOf(svc);
        const set = (name: string | null, value: string) => {
            if (name !== null) env[name] = value;
        };
        const endpoint = databaseEndpoint(config, project, names);
        set(names.host, endpoint.host);
        set(names.port, String(endpoint.port));
        set(names.name, config.database.name);
        set(names.user, config.database.user);
        set(names.passwordFile, CONTAINER_DB_PASSWORD_FILE);
        // A URL with the password (secretsAsEnv) and the password itself live in the env file.
        if (names.url !== null && !svc.secretsAsEnv.includes(names.url) && !svc.secrets.includes(names.url) && !(names.url in svc.env)) {
            env[names.url] = databaseUrl(config, project, undefined, names);
        }
    }
    for (const secret of fileSecrets(svc)) {
        env[`${secret}_FILE`] = containerSecretFile(secret);
    }
    if (svc.redis) {
        env.REDIS_URL = `redis://${redisContainerName(project)}:6379/0`;
    }
    for (const [k, v] of Object.entries(svc.env)) {
        env[k] = composeEscape(v);
    }
    return sortKeys(env);
}

/**
 * Prefix of the bridge interface of every internal network: the host firewall (bootstrap's
 * after.rules block) drops new connections from these bridges to the host itself (H13).
 */
export const INTERNAL_BRIDGE_PREFIX = "obi-";

/**
 * The bridge interface name of an internal network: unique per project and network on one host,
 * within Linux's 15 characters.
 */
export function internalBridgeName(project: string, network: string): string {
    return INTERNAL_BRIDGE_PREFIX + createHash("sha256").update(`${project}\0${network}`).digest("hex").slice(0, 11);
}

/** Network names of the compose file (see the module comment). */
export const NETWORKS = { database: "database", redis: "redis", internal: "internal", web: "web", edge: "edge", egress: "egress" } as const;

/** The networks of one app service, sorted: what it uses, and nothing else (H13). */
export function appNetworks(config: ProvisioningConfig, name: string): string[] {
    const svc = config.services[name];
    const routed = routesOf(config, name).length > 0;
    const nets: string[] = [NETWORKS.internal];
    if (svc.database) nets.push(NETWORKS.database);
    if (svc.redis) nets.push(NETWORKS.redis);
    if (svc.egress) nets.push(NETWORKS.egress);
    if (routed) nets.push(config.proxy.kind === "traefik-external" ? config.proxy.externalNetwork : NETWORKS.web);
    return nets.sort();
}

function appService(config: ProvisioningConfig, ctx: ComposeContext, name: string, upload: boolean): Record<string, unknown> {
    const svc = config.services[name];
    const traefik = config.proxy.kind === "traefik-external";
    const routed = routesOf(config, name).length > 0;
    const out: Record<string, unknown> = { image: svc.image };
    if (upload) {
        out.pull_policy = "never";
    }
    if (svc.command) {
        out.command = svc.command.map(composeEscape);
    }
    if (svc.user !== null) {
        out.user = svc.user;
    }
    if (svc.readOnly) {
        Object.assign(out, readOnlyRoot(["/tmp", ...svc.tmpfs]));
    }
    // Short syntax: the file is required (compose refuses to start without it) on every compose v2.
    out.env_file = [`${configDirRef(ctx.paths)}/env/${name}.env`];
    const environment = serviceEnvironment(config, ctx.project, name);
    if (Object.keys(environment).length > 0) {
        out.environment = environment;
    }
    const volumes: Bind[] = serviceMounts(config, ctx.paths.dataDir, name).map((m) => bind(m.hostPath, m.mountPath, m.readOnly));
    if (hasSecretFiles(svc)) {
        volumes.push(bind(`${configDirRef(ctx.paths)}/secrets/${name}`, CONTAINER_SECRETS_DIR, true));
    }
    if (volumes.length > 0) {
        out.volumes = volumes;
    }
    out.networks = appNetworks(config, name);
    if (traefik && routed) {
        out.labels = traefikLabels(config, ctx.project, name);
    }
    const dependsOn: Record<string, { condition: string }> = {};
    if (svc.database) {
        dependsOn[POSTGRES_SERVICE] = { condition: "service_healthy" };
        if (databaseEndpoint(config, ctx.project, databaseEnvOf(svc)).port === POOLER_PORT) {
            dependsOn[POOLER_SERVICE] = { condition: "service_healthy" };
        }
    }
    if (svc.redis) {
        dependsOn[REDIS_SERVICE] = { condition: "service_healthy" };
    }
    if (Object.keys(dependsOn).length > 0) {
        out.depends_on = dependsOn;
    }
    const health = serviceHealthcheck(svc);
    if (health) {
        out.healthcheck = health;
    }
    return {
        ...out,
        restart: "unless-stopped",
        stop_grace_period: "30s",
        ...HARDENING,
        // Only what the service listed, from the schema's allow-list; everything else stays dropped.
        ...(svc.capAdd.length > 0 ? { cap_add: [...svc.capAdd].sort() } : {}),
        ...limits(svc.memoryMb, svc.cpus, svc.pidsLimit),
        logging: CONTAINER_LOGGING,
    };
}

function proxyService(config: ProvisioningConfig, ctx: ComposeContext, upload: boolean): Record<string, unknown> {
    const volumes: Bind[] = [
        bind(ctx.paths.proxyDir, CONTAINER_CADDY_DIR, true),
        bind(ctx.paths.caddyDataDir, "/data"),
        bind(ctx.paths.caddyConfigDir, "/config"),
        bind(ctx.paths.logDir, CONTAINER_CADDY_LOG_DIR),
    ];
    if (config.tls.mode === "cloudflare-origin") {
        volumes.push(bind(`${configDirRef(ctx.paths)}/certs`, CONTAINER_CERTS_DIR, true));
    }
    if (planOf(config).backupsEnabled) {
        volumes.push(bind(ctx.paths.statusDir, CONTAINER_STATUS_DIR, true));
    }
    return {
        image: config.proxy.image,
        ...(upload ? { pull_policy: "never" } : {}),
        user: PROXY_USER,
        ports: [
            { target: 80, published: "80", protocol: "tcp" },
            { target: 443, published: "443", protocol: "tcp" },
        ],
        volumes,
        networks: [NETWORKS.edge, NETWORKS.web],
        // Ports 80 and up are ordinary ports in the proxy's own network namespace (not the host's): see PROXY_USER.
        sysctls: { "net.ipv4.ip_unprivileged_port_start": 80 },
        healthcheck: CADDY_HEALTH,
        restart: "unless-stopped",
        ...readOnlyRoot(["/tmp"]),
        ...HARDENING,
        cap_add: ["NET_BIND_SERVICE"],
        ...limits(PROXY_MEMORY_MB, PROXY_CPUS, PROXY_PIDS),
        logging: CONTAINER_LOGGING,
    };
}

/** traefik-external only: a tiny Caddy that serves /healthz/backup behind Traefik (B3). */
function statusService(config: ProvisioningConfig, ctx: ComposeContext, upload: boolean): Record<string, unknown> {
    const host = planOf(config).backupStatusHost;
    const router = `traefik.http.routers.${ctx.project}-${STATUS_SERVICE}`;
    const labels: Record<string, string> = {
        "traefik.enable": "true",
        "traefik.docker.network": config.proxy.externalNetwork,
        [`traefik.http.services.${ctx.project}-${STATUS_SERVICE}.loadbalancer.server.port`]: String(STATUS_PORT),
    };
    if (host) {
        labels[`${router}.rule`] = `Host(\`${host}\`) && Path(\`/healthz/backup\`)`;
        // Above any app route on the same host, whatever its length.
        labels[`${router}.priority`] = "10000";
        labels[`${router}.entrypoints`] = config.proxy.traefikEntrypoint;
        labels[`${router}.tls`] = "true";
        if (config.proxy.traefikCertResolver) {
            labels[`${router}.tls.certresolver`] = config.proxy.traefikCertResolver;
        }
        labels[`${router}.middlewares`] = `${ctx.project}-headers`;
        labels[`${router}.service`] = `${ctx.project}-${STATUS_SERVICE}`;
    }
    return {
        image: config.proxy.image,
        ...(upload ? { pull_policy: "never" } : {}),
        user: PROXY_USER,
        volumes: [bind(ctx.paths.proxyDir, CONTAINER_CADDY_DIR, true), bind(ctx.paths.statusDir, CONTAINER_STATUS_DIR, true)],
        networks: [config.proxy.externalNetwork],
        labels: sortKeys(labels),
        healthcheck: CADDY_HEALTH,
        restart: "unless-stopped",
        // It serves one static file over HTTP: no storage beyond the image's volumes.
        ...readOnlyRoot(["/tmp"]),
        ...HARDENING,
        ...limits(STATUS_MEMORY_MB, 0.25, STATUS_PIDS),
        logging: CONTAINER_LOGGING,
    };
}

/** pgBackRest's stanza (its name for the one cluster of a stack). */
export const PITR_STANZA = "onebox";

/** `archive_timeout`: a WAL segment is closed and archived at least this often (the data at risk). */
export const ARCHIVE_TIMEOUT_SECONDS = 60;

/**
 * archive_command of point-in-time recovery: copy the segment into the spool (write to a
 * temporary name, flush it, then rename, so the pusher never sees half a file) and report
 * success; the host's pusher uploads it with pgBackRest. PostgreSQL keeps a segment whose
 * copy failed and retries it, so nothing is lost while the disk is full.
 */
export function pitrArchiveCommand(): string {
    const dest = `${CONTAINER_WAL_SPOOL_DIR}/%f`;
    const tmp = `${CONTAINER_WAL_SPOOL_DIR}/.%f.part`;
    return `cp %p ${tmp} && sync ${tmp} && mv -f ${tmp} ${dest}`;
}

/** The PostgreSQL settings point-in-time recovery implies (also listed in the README). */
export function pitrPostgresSettings(): string[] {
    return ["wal_level=replica", "archive_mode=on", `archive_timeout=${ARCHIVE_TIMEOUT_SECONDS}`, `archive_command=${pitrArchiveCommand()}`];
}

/** PostgreSQL's pids limit: one process per connection plus its own workers, at least POSTGRES_PIDS. */
export function postgresPids(maxConnections: number): number {
    return Math.max(POSTGRES_PIDS, maxConnections + 100);
}

function postgresService(config: ProvisioningConfig, ctx: ComposeContext, upload: boolean): Record<string, unknown> {
    const db = config.database;
    const published = planOf(config).databasePublished;
    const pitr = config.backups?.enabled === true && config.backups.pointInTime;
    return {
        image: postgresImage(config),
        ...(upload ? { pull_policy: "never" } : {}),
        container_name: postgresContainerName(ctx.project),
        // Small-host tuning by default (a quarter of the memory limit for shared buffers, 50
        // connections), then database.settings; a changed setting recreates the container.
        // Published: TLS with the program's certificate and its pg_hba.conf (unencrypted
        // connections from the listed networks are refused). The schema refuses settings
        // that would override these or the archiving of point-in-time recovery.
        command: [
            "postgres",
            ...postgresSettingArgs(db).flatMap((setting) => ["-c", setting]),
            ...(published
                ? [
                      "-c",
                      "ssl=on",
                      "-c",
                      `ssl_cert_file=${CONTAINER_SECRETS_DIR}/${POSTGRES_TLS_CERT_FILE_NAME}`,
                      "-c",
                      `ssl_key_file=${CONTAINER_SECRETS_DIR}/${POSTGRES_TLS_KEY_FILE_NAME}`,
                      "-c",
                      `hba_file=${CONTAINER_SECRETS_DIR}/${POSTGRES_HBA_FILE_NAME}`,
                      "-c",
                      "ssl_min_protocol_version=TLSv1.2",
                  ]
                : []),
            ...(pitr ? pitrPostgresSettings().flatMap((setting) => ["-c", setting]) : []),
        ],
        environment: {
            POSTGRES_DB: db.name,
            POSTGRES_PASSWORD_FILE: CONTAINER_POSTGRES_PASSWORD_FILE,
            POSTGRES_USER: db.user,
        },
        volumes: [
            bind(ctx.paths.postgresDataDir, postgresDataTarget(db.version)),
            bind(`${configDirRef(ctx.paths)}/secrets/${POSTGRES_SERVICE}`, CONTAINER_SECRETS_DIR, true),
            // Point-in-time recovery: the WAL spool, and the socket pgBackRest connects through.
            ...(pitr ? [bind(walSpoolDir(ctx.paths.dataDir), CONTAINER_WAL_SPOOL_DIR), bind(postgresSocketDir(ctx.paths.dataDir), POSTGRES_SOCKET_DIR)] : []),
        ],
        ...(published ? { ports: [{ target: 5432, published: String(db.publicPort), protocol: "tcp" }] } : {}),
        networks: published ? [NETWORKS.database, "db-published"] : [NETWORKS.database],
        healthcheck: {
            // Over TCP: the entrypoint's initialisation server listens on the socket only, so this
            // turns healthy only once the real server accepts network connections.
            test: ["CMD", "pg_isready", "-q", "-h", "127.0.0.1", "-U", db.user, "-d", db.name],
            interval: "5s",
            timeout: "5s",
            retries: 6,
            start_period: "60s",
        },
        restart: "unless-stopped",
        stop_grace_period: "60s",
        // Writable: PGDATA (the volume), the socket directory and /tmp (memory).
        ...readOnlyRoot(pitr ? ["/tmp"] : ["/tmp", POSTGRES_SOCKET_DIR]),
        ...HARDENING,
        // The entrypoint starts as root, fixes ownership of PGDATA and drops to the postgres user.
        cap_add: ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"],
        ...limits(db.memoryMb, POSTGRES_CPUS, postgresPids(maxConnectionsOf(db))),
        logging: CONTAINER_LOGGING,
    };
}

/**
 * PgBouncer (`database.pooler`): on the database network only (H8, H13), as its own non-root
 * user with nothing but its ini and auth file (the role's SCRAM verifier, R3) mounted
 * read-only. The label carries the ini's hash, so a changed ini recreates it at deploy.
 */
function poolerService(config: ProvisioningConfig, ctx: ComposeContext, upload: boolean): Record<string, unknown> {
    const p = config.database.pooler;
    const db = config.database;
    const ini = renderPgbouncerIni(config, postgresContainerName(ctx.project), ctx.project);
    // pg_isready where the image has it (a login request counts as ready), else a TCP probe.
    const probe = [
        `if command -v pg_isready >/dev/null 2>&1; then exec pg_isready -q -h 127.0.0.1 -p ${POOLER_PORT} -U ${db.user} -d ${db.name}`,
        `elif command -v nc >/dev/null 2>&1; then exec nc -z 127.0.0.1 ${POOLER_PORT}`,
        "else echo 'no pg_isready or nc in the pooler image' >&2; exit 1; fi",
    ].join("; ");
    return {
        image: p.image,
        ...(upload ? { pull_policy: "never" } : {}),
        container_name: poolerContainerName(ctx.project),
        user: POOLER_USER,
        entrypoint: ["pgbouncer"],
        command: [CONTAINER_POOLER_INI],
        labels: { "onebox.pooler-config": poolerConfigHash(ini) },
        volumes: [bind(`${configDirRef(ctx.paths)}/secrets/${POOLER_SERVICE}`, CONTAINER_SECRETS_DIR, true)],
        networks: [NETWORKS.database],
        depends_on: { [POSTGRES_SERVICE]: { condition: "service_healthy" } },
        healthcheck: { test: ["CMD-SHELL", probe], interval: "10s", timeout: "5s", retries: 6, start_period: "10s" },
        restart: "unless-stopped",
        ...readOnlyRoot(["/tmp"]),
        ...HARDENING,
        ...limits(p.memoryMb, POOLER_CPUS, POOLER_PIDS),
        logging: CONTAINER_LOGGING,
    };
}

function redisService(config: ProvisioningConfig, ctx: ComposeContext, upload: boolean): Record<string, unknown> {
    const r = config.redis;
    return {
        image: r.image,
        ...(upload ? { pull_policy: "never" } : {}),
        container_name: redisContainerName(ctx.project),
        // Persistent (AOF) and never evicting: a queue or rate-limit counter silently dropped is
        // worse than a write error. maxmemory leaves a quarter of the limit for overhead.
        command: ["redis-server", "--appendonly", "yes", "--maxmemory", `${Math.floor((r.memoryMb * 3) / 4)}mb`, "--maxmemory-policy", "noeviction"],
        volumes: [bind(ctx.paths.redisDataDir, "/data")],
        networks: [NETWORKS.redis],
        healthcheck: { test: ["CMD", "redis-cli", "ping"], interval: "5s", timeout: "5s", retries: 6, start_period: "10s" },
        restart: "unless-stopped",
        ...readOnlyRoot(["/tmp"]),
        ...HARDENING,
        // The entrypoint chowns /data and drops to the redis user.
        cap_add: ["CHOWN", "SETGID", "SETUID"],
        ...limits(r.memoryMb, REDIS_CPUS, REDIS_PIDS),
        logging: CONTAINER_LOGGING,
    };
}

/** Images of every service in the compose file, in service order (for uploads). */
export function composeImages(config: ProvisioningConfig): string[] {
    const images: string[] = [];
    if (planOf(config).proxyRuns || planOf(config).statusServerRuns) {
        images.push(config.proxy.image);
    }
    if (config.database.enabled) {
        images.push(postgresImage(config));
        if (config.database.pooler.enabled) images.push(config.database.pooler.image);
    }
    if (config.redis.enabled) {
        images.push(config.redis.image);
    }
    for (const name of appServiceNames(config)) {
        images.push(config.services[name].image);
    }
    return [...new Set(images)];
}

/** The compose model as a plain object (tests assert on it; `renderCompose` serialises it). */
export function composeModel(config: ProvisioningConfig, ctx: ComposeContext): Record<string, unknown> {
    const upload = config.deploy.imageSource === "upload";
    const services: Record<string, unknown> = {};
    // No route, no proxy: a database-only server runs PostgreSQL (and its backups) alone.
    if (planOf(config).proxyRuns) {
        services[PROXY_SERVICE] = proxyService(config, ctx, upload);
    } else if (planOf(config).statusServerRuns) {
        services[STATUS_SERVICE] = statusService(config, ctx, upload);
    }
    if (config.database.enabled) {
        services[POSTGRES_SERVICE] = postgresService(config, ctx, upload);
        if (config.database.pooler.enabled) services[POOLER_SERVICE] = poolerService(config, ctx, upload);
    }
    if (config.redis.enabled) {
        services[REDIS_SERVICE] = redisService(config, ctx, upload);
    }
    for (const name of appServiceNames(config)) {
        if (name in services) {
            throw new Error(`services.${name}: "${name}" is the name of a built-in service; rename it`);
        }
        services[name] = appService(config, ctx, name, upload);
    }
    const internal = (name: string) => ({ internal: true, driver_opts: { "com.docker.network.bridge.name": internalBridgeName(ctx.project, name) } });
    const networks: Record<string, unknown> = { [NETWORKS.internal]: internal(NETWORKS.internal) };
    if (config.database.enabled) networks[NETWORKS.database] = internal(NETWORKS.database);
    if (config.redis.enabled) networks[NETWORKS.redis] = internal(NETWORKS.redis);
    if (planOf(config).proxyRuns) {
        networks[NETWORKS.edge] = {};
        networks[NETWORKS.web] = internal(NETWORKS.web);
    }
    if (Object.values(config.services).some((s) => s.egress)) {
        networks[NETWORKS.egress] = {};
    }
    if (planOf(config).databasePublished) {
        networks["db-published"] = {};
    }
    if (config.proxy.kind === "traefik-external") {
        networks[config.proxy.externalNetwork] = { external: true, name: config.proxy.externalNetwork };
    }
    return { name: ctx.project, services, networks };
}

/** Header comment of the rendered compose file. */
function header(ctx: ComposeContext): string {
    return [
        `# compose.yaml of ${ctx.project}, rendered by onebox; do not edit on the host.`,
        `# Deployed by /usr/local/lib/onebox/deploy.sh as project ${ctx.project}.`,
        `# ${CONFIG_DIR_VARIABLE} is never set on the host (the default is the real path); it only`,
        `# relocates env and secret files when the rendered output is validated offline.`,
        "",
    ].join("\n");
}

/** Renders compose.yaml. */
export function renderCompose(config: ProvisioningConfig, ctx: ComposeContext): string {
    return header(ctx) + stringify(composeModel(config, ctx), { lineWidth: 0, version: "1.1", aliasDuplicateObjects: false });
}
