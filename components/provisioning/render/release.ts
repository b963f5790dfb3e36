/**
 * The release: compose.yaml, the proxy's Caddyfile and a manifest that tells
 * deploy.sh what to check. Its id is a short hash of exactly those files, so the
 * same configuration always produces the same release directory.
 */
import { createHash } from "node:crypto";
import type { ProvisioningConfig } from "../../config/schema";
import { BACKUP_LIB_DIR, envFilePath, type AppPaths } from "../paths";
import { planOf } from "../../config/plan";
import { appServiceNames, POSTGRES_SERVICE, PROXY_SERVICE, STATUS_SERVICE } from "./compose";
import { normalizePrefix } from "./caddyfile";
import { POOLER_SERVICE } from "../../config/pooler-schema";

export interface ReleaseFile {
    /** File name inside the release directory. */
    name: string;
    content: string;
}

export const RELEASE_ID_LENGTH = 12;

/** Short content hash over the release files (names and contents, in name order). */
export function releaseId(files: readonly ReleaseFile[]): string {
    const h = createHash("sha256");
    for (const f of [...files].sort((a, b) => (a.name < b.name ? -1 : 1))) {
        h.update(`${f.name}\0${Buffer.byteLength(f.content)}\0`);
        h.update(f.content);
    }
    return h.digest("hex").slice(0, RELEASE_ID_LENGTH);
}

/** One check deploy.sh makes through the proxy after the containers are healthy. */
export interface RouteCheck {
    host: string;
    path: string;
    /** "2xx": a health path that must succeed; "lt500": any answer but a proxy/server error. */
    expect: "2xx" | "lt500";
}

/**
 * Checks for every route: the target service's health path when this route is
 * the one that serves it on that host (longest prefix wins), else the route's
 * own path, where any answer below 500 proves the proxy reaches the service.
 */
export function routeChecks(config: ProvisioningConfig): RouteCheck[] {
    const checks: RouteCheck[] = [];
    const seen = new Set<string>();
    const matches = (prefix: string, p: string) => prefix === "" || p === prefix || p.startsWith(`${prefix}/`);
    for (const r of config.routes) {
        const prefix = normalizePrefix(r.path);
        const healthPath = config.services[r.service]?.health?.path;
        const sameHost = config.routes.filter((o) => o.host === r.host).map((o) => ({ prefix: normalizePrefix(o.path), service: o.service }));
        let check: RouteCheck = { host: r.host, path: prefix === "" ? "/" : prefix, expect: "lt500" };
        if (healthPath && matches(prefix, healthPath)) {
            const winner = sameHost.filter((o) => matches(o.prefix, healthPath)).sort((a, b) => b.prefix.length - a.prefix.length)[0];
            if (winner && winner.prefix === prefix) {
                check = { host: r.host, path: healthPath, expect: "2xx" };
            }
        }
        const key = `${check.host} ${check.path}`;
        if (!seen.has(key)) {
            seen.add(key);
            checks.push(check);
        }
    }
    return checks;
}

/** The host ports a stack publishes: the proxy's 80/443, and the database's port when it is published. */
export function publishedPorts(config: ProvisioningConfig): number[] {
    const plan = planOf(config);
    return [...(plan.proxyRuns ? [80, 443] : []), ...(plan.databasePublished ? [config.database.publicPort] : [])];
}

export interface ManifestContext {
    project: string;
    paths: AppPaths;
}

/** The manifest deploy.sh reads (KEY=value lines, never sourced). */
export function renderManifest(config: ProvisioningConfig, ctx: ManifestContext): string {
    const plan = planOf(config);
    const caddy = plan.proxyRuns;
    const traefik = config.proxy.kind === "traefik-external" && config.routes.length > 0;
    const proxyService = caddy ? PROXY_SERVICE : plan.statusServerRuns ? STATUS_SERVICE : "";
    const lines = [
        `# Release manifest of ${ctx.project}, rendered by onebox; read (never sourced) by deploy.sh.`,
        `PROJECT=${ctx.project}`,
        `PROXY=${config.proxy.kind}`,
        `PROXY_SERVICE=${proxyService}`,
        `PROXY_DIR=${ctx.paths.proxyDir}`,
        // The host ports the release publishes: deploy.sh refuses to start it while a container
        // of another stack on the server holds one of them (several stacks per server).
        `PUBLISHES=${publishedPorts(config).join(" ")}`,
        `TLS_MODE=${config.tls.mode}`,
        `IMAGE_SOURCE=${config.deploy.imageSource}`,
        `HEALTH_TIMEOUT=${config.deploy.healthTimeoutSeconds}`,
        `KEEP_RELEASES=${config.deploy.keepReleases}`,
        `DATABASE_SERVICE=${config.database.enabled ? POSTGRES_SERVICE : ""}`,
        `DATABASE_USER=${config.database.enabled ? config.database.user : ""}`,
        // deploy.sh compares this with the data directory's PG_VERSION: a major upgrade is a dump and restore.
        `DATABASE_MAJOR=${config.database.enabled ? config.database.version : ""}`,
        `DATABASE_DATA_DIR=${config.database.enabled ? ctx.paths.postgresDataDir : ""}`,
        // Only with the pooler (manifests of stacks without it stay as they were): deploy.sh makes
        // it re-read its auth file once PostgreSQL has the role's current password.
        ...(config.database.enabled && config.database.pooler.enabled ? [`POOLER_SERVICE=${POOLER_SERVICE}`] : []),
        // The stack's own DOCKER_CONFIG with its registry logins (written by the secrets step).
        `REGISTRY_CONFIG=${config.deploy.registries.length > 0 ? ctx.paths.registryDir : ""}`,
        ...appServiceNames(config).map((s) => `ENV_FILE=${envFilePath(ctx.paths, s)}`),
        // traefik-external: deploy.sh finds the existing Traefik on this network and checks the routes through it.
        ...(traefik ? [`PROXY_NETWORK=${config.proxy.externalNetwork}`] : []),
        ...(caddy || traefik ? routeChecks(config).map((c) => `CHECK=${c.host} ${c.path} ${c.expect}`) : []),
        ...releaseHookLines(config, ctx),
    ];
    return `${lines.join("\n")}\n`;
}

/** The backup library whose dump check (pg_restore --list, B1) the dump before a release reuses. */
export const DUMP_VERIFY_LIB = `${BACKUP_LIB_DIR}/lib.sh`;

/**
 * The release hooks' manifest lines (README "Release hooks"); none when no hook is set, so a
 * stack without hooks keeps its release ids. One value per line, never sourced: the command is
 * a JSON array (deploy.sh reads it with jq), a smoke pattern is the rest of its line.
 */
export function releaseHookLines(config: ProvisioningConfig, ctx: ManifestContext): string[] {
    const d = config.deploy;
    const lines: string[] = [];
    for (const [service, keys] of Object.entries(d.preflight?.requiredEnv ?? {}).sort(([a], [b]) => (a < b ? -1 : 1))) {
        lines.push(...keys.map((k) => `PREFLIGHT=${service} ${k}`));
    }
    if (lines.length > 0) {
        lines.push(`SECRETS_DIR=${ctx.paths.secretsDir}`);
    }
    if (d.release) {
        lines.push(`RELEASE_SERVICE=${d.release.service}`, `RELEASE_COMMAND=${JSON.stringify(d.release.command)}`, `RELEASE_TIMEOUT=${d.release.timeoutSeconds}`);
    }
    if (d.backupBeforeRelease && config.database.enabled) {
        lines.push(`DATABASE_NAME=${config.database.name}`, `DUMP_VERIFY_LIB=${DUMP_VERIFY_LIB}`);
    }
    for (const s of d.smoke) {
        const body = s.bodyContains !== undefined ? `contains ${s.bodyContains}` : s.bodyMatches !== undefined ? `matches ${s.bodyMatches}` : "any";
        lines.push(`SMOKE=${s.host} ${s.path} ${s.status} ${s.attempts} ${body}`);
    }
    return lines;
}
