/**
 * Renders the Caddyfile of the stack's own proxy (pure).
 *
 * Per hostname one site block: security headers, compression, a rolling access
 * log, then the routes as mutually exclusive `handle` blocks, longest path
 * prefix first and `/` last. `reverse_proxy` keeps retrying a restarting
 * upstream (`lb_try_duration`) so a redeploy holds requests instead of failing
 * them. HTTP->HTTPS redirects are Caddy's automatic HTTPS: nothing here turns
 * them off (`auto_https` never appears in the site config).
 *
 * B3: `/healthz/backup` on one hostname serves the backup status written by
 * the backup scripts and answers 503 while the stale marker exists.
 */
import type { ProvisioningConfig } from "../../config/schema";
import { CONTAINER_CADDY_LOG_DIR, CONTAINER_CERTS_DIR, CONTAINER_STATUS_DIR } from "../paths";
import { planOf } from "../../config/plan";
import { STATUS_PORT } from "./compose";

/** How long the proxy retries an upstream that refuses connections (a container being replaced). */
export const LB_TRY_DURATION = "30s";
export const LB_TRY_INTERVAL = "250ms";
/** Access logs: roll at this size, keep this many files per hostname. */
export const ACCESS_LOG_ROLL_SIZE = "10MiB";
export const ACCESS_LOG_ROLL_KEEP = 10;

export const ORIGIN_CERT_FILE = `${CONTAINER_CERTS_DIR}/origin.pem`;
export const ORIGIN_KEY_FILE = `${CONTAINER_CERTS_DIR}/origin.key`;

/**
 * A double-quoted Caddyfile token. Caddy treats `{...}` in values as
 * placeholders and only `\"` as an escape, so values that need either are
 * refused rather than silently changed.
 */
export function caddyQuote(value: string, setting: string): string {
    if (/["\\{}\r\n]/.test(value)) {
        throw new Error(`${setting}: the Caddyfile cannot carry double quotes, backslashes, braces or line breaks in this value; remove them`);
    }
    return `"${value}"`;
}

/** A path prefix as configured ("/api/" and "/api" are the same prefix; "/" is the catch-all ""). */
export function normalizePrefix(path: string): string {
    return path.replace(/\/+$/, "");
}

interface SiteRoute {
    prefix: string;
    service: string;
    port: number;
}

/** Routes of each hostname, hosts sorted, paths longest first with the catch-all last. */
export function routesByHost(config: ProvisioningConfig): Map<string, SiteRoute[]> {
    const byHost = new Map<string, SiteRoute[]>();
    for (const r of config.routes) {
        const port = config.services[r.service]?.port;
        if (port === undefined) {
            throw new Error(`routes: service "${r.service}" has no port to route to`);
        }
        const list = byHost.get(r.host) ?? [];
        list.push({ prefix: normalizePrefix(r.path), service: r.service, port });
        byHost.set(r.host, list);
    }
    const sorted = new Map<string, SiteRoute[]>();
    for (const host of [...byHost.keys()].sort()) {
        const list = byHost.get(host) ?? [];
        list.sort((a, b) => b.prefix.length - a.prefix.length || (a.prefix < b.prefix ? -1 : a.prefix > b.prefix ? 1 : 0));
        sorted.set(host, list);
    }
    return sorted;
}

function indent(lines: string[], depth: number): string[] {
    return lines.map((l) => (l === "" ? l : "\t".repeat(depth) + l));
}

function reverseProxy(route: SiteRoute): string[] {
    return [
        `reverse_proxy ${route.service}:${route.port} {`,
        `\tlb_try_duration ${LB_TRY_DURATION}`,
        `\tlb_try_interval ${LB_TRY_INTERVAL}`,
        "}",
    ];
}

function tlsLine(config: ProvisioningConfig): string[] {
    switch (config.tls.mode) {
        case "cloudflare-origin":
            return [`tls ${ORIGIN_CERT_FILE} ${ORIGIN_KEY_FILE}`];
        case "internal":
            return ["tls internal"];
        default:
            // acme: automatic HTTPS with the global email.
            return [];
    }
}

/** The shared security headers snippet. */
export function securityHeaders(config: ProvisioningConfig): string[] {
    const lines: string[] = [];
    if (config.proxy.hstsMaxAge > 0) {
        lines.push(`Strict-Transport-Security "max-age=${config.proxy.hstsMaxAge}"`);
    }
    lines.push(
        `Content-Security-Policy ${caddyQuote(config.proxy.contentSecurityPolicy, "proxy.contentSecurityPolicy")}`,
        `X-Frame-Options "DENY"`,
        `X-Content-Type-Options "nosniff"`,
        `Referrer-Policy "strict-origin-when-cross-origin"`,
        "-Server",
    );
    return ["(security_headers) {", "\theader {", ...indent(lines, 2), "\t}", "}"];
}

/**
 * The backup status handler: the status JSON with 200, or with 503 while the
 * stale marker exists; 503 as well before the first status file is written.
 */
export function backupStatusSnippet(): string[] {
    return [
        "(backup_status) {",
        `\troot * ${CONTAINER_STATUS_DIR}`,
        `\theader Cache-Control "no-store"`,
        "\t@missing not file /backup.json",
        `\trespond @missing "backup status unknown: no backup has reported yet" 503`,
        "\t@stale file /backup.stale",
        "\trewrite * /backup.json",
        "\tfile_server @stale {",
        "\t\tstatus 503",
        "\t}",
        "\tfile_server",
        "}",
    ];
}

function siteBlock(config: ProvisioningConfig, host: string, routes: SiteRoute[], withStatus: boolean): string[] {
    const body: string[] = [
        ...tlsLine(config),
        "import security_headers",
        "encode zstd gzip",
        "log {",
        `\toutput file ${CONTAINER_CADDY_LOG_DIR}/${host}.log {`,
        `\t\troll_size ${ACCESS_LOG_ROLL_SIZE}`,
        `\t\troll_keep ${ACCESS_LOG_ROLL_KEEP}`,
        "\t}",
        "}",
        "",
    ];
    if (withStatus) {
        body.push("handle /healthz/backup {", "\timport backup_status", "}");
    }
    let n = 0;
    let catchAll = false;
    for (const route of routes) {
        if (route.prefix === "") {
            catchAll = true;
            body.push("handle {", ...indent(reverseProxy(route), 1), "}");
        } else {
            n += 1;
            body.push(`@route${n} path ${route.prefix} ${route.prefix}/*`, `handle @route${n} {`, ...indent(reverseProxy(route), 1), "}");
        }
    }
    if (!catchAll) {
        // Without this, Caddy answers unmatched paths with an empty 200.
        body.push("handle {", "\trespond 404", "}");
    }
    return [`${host} {`, ...indent(body, 1), "}"];
}

function globalOptions(config: ProvisioningConfig): string[] {
    const lines: string[] = [];
    if (config.tls.mode === "acme" && config.tls.acmeEmail) {
        lines.push(`email ${config.tls.acmeEmail}`);
    }
    lines.push(
        // Reachable only inside the container: deploy.sh reloads and the health check probes through it.
        "admin localhost:2019",
        // The proxy runs as a non-root user on a read-only root (H12): it cannot, and need not,
        // add its internal CA to the container's own trust store.
        "skip_install_trust",
        "servers {",
        // HTTP/3 would need 443/udp published and allowed by every firewall; TCP only keeps them in step.
        "\tprotocols h1 h2",
        "}",
    );
    return ["{", ...indent(lines, 1), "}"];
}

/** Renders the proxy's Caddyfile. */
export function renderCaddyfile(config: ProvisioningConfig, project: string): string {
    const status = planOf(config).backupsEnabled ? planOf(config).backupStatusHost : undefined;
    const out: string[] = [
        `# Caddyfile of ${project}, rendered by onebox; do not edit on the host.`,
        "# deploy.sh installs it as the live config and reloads the proxy gracefully.",
        ...globalOptions(config),
        "",
        ...securityHeaders(config),
        "",
    ];
    if (status) {
        out.push(...backupStatusSnippet(), "");
    }
    const sites = [...routesByHost(config)];
    sites.forEach(([host, routes], i) => {
        out.push(...siteBlock(config, host, routes, host === status));
        if (i < sites.length - 1) {
            out.push("");
        }
    });
    return `${out.join("\n")}\n`;
}

/** traefik-external mode: the Caddyfile of the status server behind Traefik (plain HTTP inside the network). */
export function renderStatusCaddyfile(project: string): string {
    return [
        `# Backup status server of ${project}, rendered by onebox; Traefik routes /healthz/backup here.`,
        "{",
        "\tadmin localhost:2019",
        "}",
        "",
        ...backupStatusSnippet(),
        "",
        `:${STATUS_PORT} {`,
        "\thandle /healthz/backup {",
        "\t\timport backup_status",
        "\t}",
        "\thandle {",
        "\t\trespond 404",
        "\t}",
        "}",
        "",
    ].join("\n");
}
