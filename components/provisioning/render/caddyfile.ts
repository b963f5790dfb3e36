/**
 * Renders the Caddyfile of the stack's own proxy (pure).
 *
 * Per hostname one site block: compression, a rolling access log, then the
 * routes as mutually exclusive `handle` blocks, longest path prefix first and
 * `/` last, each importing its security headers (the stack's `proxy` settings,
 * or a route's own `headers` over them). The proxy adds a security header only
 * where the app sent none, unless `overrideAppHeaders` says to replace it. `reverse_proxy` keeps retrying a restarting
 * upstream (`lb_try_duration`) so a redeploy holds requests instead of failing
 * them. HTTP->HTTPS redirects are Caddy's automatic HTTPS: nothing here turns
 * them off (`auto_https` never appears in the site config).
 *
 * B3: `/healthz/backup` on one hostname serves the backup status written by
 * the backup scripts and answers 503 while the stale marker exists.
 *
 * Client addresses: behind Cloudflare's proxy (`dns.proxied`) every request
 * arrives from a Cloudflare address, so the proxy trusts exactly Cloudflare's
 * published ranges (the list origin lockdown uses) and takes the client from
 * `CF-Connecting-IP`; otherwise it trusts nobody and the client is the peer.
 * Either way the app receives that one address as `X-Forwarded-For` and
 * `X-Real-IP`, and the headers a client could use to claim another address
 * around the proxy (`CF-Connecting-IP`, `True-Client-IP`, `Forwarded`) never
 * reach it.
 *
 * Rate limits and allow-lists (`routes[].rateLimits`, `allowFrom`) are the
 * `onebox_rate_limit` handler of the stack's own Caddy build (proxy/caddy),
 * keyed on that same client address: inside each route's block, before the
 * upstream, each limit on the route or on a path prefix within it. A refused
 * request gets 429 with Retry-After (or 403 outside `allowFrom`) and never
 * reaches the app.
 */
import type { RouteConfig, ProvisioningConfig } from "../../config/schema";
import type { IpRanges } from "../../hosts/firewall-rules";
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

/** The header Cloudflare's proxy puts the visitor's address in. */
export const CLIENT_IP_HEADER = "CF-Connecting-IP";

/**
 * Headers removed from every proxied request: an app (or a library in it) that
 * reads one of them would otherwise trust whatever the client wrote there.
 */
export const STRIPPED_CLIENT_HEADERS = [CLIENT_IP_HEADER, "True-Client-IP", "Forwarded"] as const;

/**
 * Whether requests reach our proxy through Cloudflare's proxy: DNS managed by
 * Cloudflare with `dns.proxied` on, and our own Caddy in front of the app.
 * Then the proxy must know Cloudflare's ranges to tell the real client apart.
 */
export function behindCloudflare(config: ProvisioningConfig): boolean {
    return planOf(config).behindCloudflare;
}

/** What the Caddyfile needs besides the stack configuration. */
export interface CaddyfileOptions {
    /**
     * Peers whose `CF-Connecting-IP` names the client: Cloudflare's published
     * ranges when {@link behindCloudflare} (required then). Empty or absent:
     * no peer is trusted and the client is the connection's own address.
     */
    readonly trustedProxies?: IpRanges;
}

/** The trusted peers as one list, or undefined when there are none; refuses a proxied stack without them. */
export function trustedProxyList(config: ProvisioningConfig, opts: CaddyfileOptions): string[] | undefined {
    const list = opts.trustedProxies ? [...opts.trustedProxies.ipv4, ...opts.trustedProxies.ipv6] : [];
    if (list.length === 0 && behindCloudflare(config)) {
        throw new Error(
            "dns.proxied is on but Cloudflare's IP ranges are missing: the proxy would see every visitor as a Cloudflare address; pass them (pulumi up looks them up)",
        );
    }
    return list.length > 0 ? list : undefined;
}

interface SiteRoute {
    prefix: string;
    service: string;
    port: number;
    /** The route's own security headers, when it sets any. */
    headers?: RouteConfig["headers"];
    rateLimits?: RouteConfig["rateLimits"];
    allowFrom?: string[];
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
        list.push({
            prefix: normalizePrefix(r.path),
            service: r.service,
            port,
            ...(r.headers ? { headers: r.headers } : {}),
            ...(r.rateLimits ? { rateLimits: r.rateLimits } : {}),
            ...(r.allowFrom ? { allowFrom: r.allowFrom } : {}),
        });
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

/**
 * The client address as the proxy determined it. `{client_ip}` honours
 * `trusted_proxies`/`client_ip_headers` (Caddy 2.7+); with nobody trusted the
 * peer's own address is the client, which `{remote_host}` names in every 2.x.
 */
function clientIpPlaceholder(trusted: boolean): string {
    return trusted ? "{client_ip}" : "{remote_host}";
}

function reverseProxy(route: SiteRoute, trusted: boolean): string[] {
    const client = clientIpPlaceholder(trusted);
    return [
        `reverse_proxy ${route.service}:${route.port} {`,
        // One address, the one the proxy trusts: a client-written X-Forwarded-For is never passed on.
        `\theader_up X-Forwarded-For ${client}`,
        `\theader_up X-Real-IP ${client}`,
        ...STRIPPED_CLIENT_HEADERS.map((h) => `\theader_up -${h}`),
        `\tlb_try_duration ${LB_TRY_DURATION}`,
        `\tlb_try_interval ${LB_TRY_INTERVAL}`,
        "}",
    ];
}

/**
 * The rate limits and allow-list of one route (`route` names its matchers). Every
 * limit repeats the allow-list, so a client outside it gets 403 whichever handler
 * Caddy runs first, and never spends a token.
 */
export function accessLines(host: string, route: SiteRoute, name: string): string[] {
    const out: string[] = [];
    const allow = route.allowFrom ? [`\tallow_from ${route.allowFrom.join(" ")}`] : [];
    if (route.allowFrom) {
        out.push("onebox_rate_limit {", ...allow, "}");
    }
    (route.rateLimits ?? []).forEach((l, i) => {
        const prefix = l.path === undefined ? route.prefix : normalizePrefix(l.path);
        let matcher = "";
        if (prefix !== route.prefix) {
            matcher = ` @${name}_limit${i + 1}`;
            out.push(`@${name}_limit${i + 1} path ${prefix} ${prefix}/*`);
        }
        out.push(
            `onebox_rate_limit${matcher} {`,
            // Buckets are kept per zone across reloads while the zone's settings stay the same.
            `\tzone ${host}${prefix || "/"}#${i + 1}`,
            `\trate ${l.requests} ${l.window}`,
            `\tburst ${l.burst ?? l.requests}`,
            ...(l.exempt.length > 0 ? [`\texempt ${l.exempt.join(" ")}`] : []),
            ...allow,
            "}",
        );
    });
    return out;
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

/** The security headers of one route (or of the stack, without a route): its own settings over `proxy`'s. */
export interface HeaderSet {
    contentSecurityPolicy: string;
    frameOptions: ProvisioningConfig["proxy"]["frameOptions"];
    referrerPolicy: ProvisioningConfig["proxy"]["referrerPolicy"];
    /** Replace the app's own headers (else add each only where the app sent none). */
    overrideAppHeaders: boolean;
}

/** The effective headers of a route; without one, the stack's defaults (404s, the backup status). */
export function headerSet(config: ProvisioningConfig, own?: RouteConfig["headers"]): HeaderSet {
    const p = config.proxy;
    return {
        contentSecurityPolicy: own?.contentSecurityPolicy ?? p.contentSecurityPolicy,
        frameOptions: own?.frameOptions ?? p.frameOptions,
        referrerPolicy: own?.referrerPolicy ?? p.referrerPolicy,
        overrideAppHeaders: own?.overrideAppHeaders ?? p.overrideAppHeaders ?? config.proxy.kind === "traefik-external",
    };
}

/** The Strict-Transport-Security value, or undefined when HSTS is off. */
export function hstsValue(config: ProvisioningConfig): string | undefined {
    const p = config.proxy;
    if (p.hstsMaxAge === 0) {
        return undefined;
    }
    return [`max-age=${p.hstsMaxAge}`, ...(p.hstsIncludeSubdomains ? ["includeSubDomains"] : []), ...(p.hstsPreload ? ["preload"] : [])].join("; ");
}

/**
 * One security headers snippet. Deferred (written as the response leaves), so they
 * see the app's headers: `?Name` adds a header only where the app sent none; a plain
 * `Name` replaces the app's.
 */
export function securityHeaders(config: ProvisioningConfig, set: HeaderSet = headerSet(config), name = "security_headers"): string[] {
    const mark = set.overrideAppHeaders ? "" : "?";
    const lines: string[] = ["defer"];
    const hsts = hstsValue(config);
    if (hsts) {
        lines.push(`${mark}Strict-Transport-Security "${hsts}"`);
    }
    lines.push(`${mark}Content-Security-Policy ${caddyQuote(set.contentSecurityPolicy, "proxy.contentSecurityPolicy")}`);
    if (set.frameOptions !== "off") {
        lines.push(`${mark}X-Frame-Options "${set.frameOptions}"`);
    }
    lines.push(`${mark}X-Content-Type-Options "nosniff"`, `${mark}Referrer-Policy "${set.referrerPolicy}"`, "-Server");
    return [`(${name}) {`, "\theader {", ...indent(lines, 2), "\t}", "}"];
}

/**
 * The distinct header sets of the stack, each with its snippet name: the stack's
 * defaults are `security_headers`, route variants `security_headers_1`, ... in
 * the order the sites and routes are rendered.
 */
export function headerSnippets(config: ProvisioningConfig, sites: [string, SiteRoute[]][]): Map<string, { name: string; set: HeaderSet }> {
    const snippets = new Map<string, { name: string; set: HeaderSet }>();
    const add = (set: HeaderSet) => {
        const key = JSON.stringify(set);
        if (!snippets.has(key)) {
            snippets.set(key, { name: snippets.size === 0 ? "security_headers" : `security_headers_${snippets.size}`, set });
        }
        return key;
    };
    add(headerSet(config));
    for (const [, routes] of sites) {
        for (const r of routes) add(headerSet(config, r.headers));
    }
    return snippets;
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

function siteBlock(config: ProvisioningConfig, host: string, routes: SiteRoute[], withStatus: boolean, trusted: boolean, snippetOf: (r?: SiteRoute) => string): string[] {
    const body: string[] = [
        ...tlsLine(config),
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
        body.push("handle /healthz/backup {", `\timport ${snippetOf()}`, "\timport backup_status", "}");
    }
    let n = 0;
    let catchAll = false;
    for (const route of routes) {
        if (route.prefix === "") {
            catchAll = true;
            body.push(
                "handle {",
                `\timport ${snippetOf(route)}`,
                ...indent(accessLines(host, route, "all"), 1),
                ...indent(reverseProxy(route, trusted), 1),
                "}",
            );
        } else {
            n += 1;
            body.push(
                `@route${n} path ${route.prefix} ${route.prefix}/*`,
                `handle @route${n} {`,
                `\timport ${snippetOf(route)}`,
                ...indent(accessLines(host, route, `route${n}`), 1),
                ...indent(reverseProxy(route, trusted), 1),
                "}",
            );
        }
    }
    if (!catchAll) {
        // Without this, Caddy answers unmatched paths with an empty 200.
        body.push("handle {", `\timport ${snippetOf()}`, "\trespond 404", "}");
    }
    return [`${host} {`, ...indent(body, 1), "}"];
}

function globalOptions(config: ProvisioningConfig, trusted: string[] | undefined): string[] {
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
        // Only these peers may name the client, and only in CF-Connecting-IP (X-Forwarded-For from
        // Cloudflare carries whatever the visitor sent before it).
        ...(trusted ? [`\ttrusted_proxies static ${trusted.join(" ")}`, `\tclient_ip_headers ${CLIENT_IP_HEADER}`] : []),
        "}",
    );
    return ["{", ...indent(lines, 1), "}"];
}

/** Renders the proxy's Caddyfile. */
export function renderCaddyfile(config: ProvisioningConfig, project: string, opts: CaddyfileOptions = {}): string {
    const trusted = trustedProxyList(config, opts);
    const status = planOf(config).backupsEnabled ? planOf(config).backupStatusHost : undefined;
    const out: string[] = [
        `# Caddyfile of ${project}, rendered by onebox; do not edit on the host.`,
        "# deploy.sh installs it as the live config and reloads the proxy gracefully.",
        ...globalOptions(config, trusted),
        "",
    ];
    const sites = [...routesByHost(config)];
    const snippets = headerSnippets(config, sites);
    for (const { name, set } of snippets.values()) {
        out.push(...securityHeaders(config, set, name), "");
    }
    const snippetOf = (r?: SiteRoute) => {
        const found = snippets.get(JSON.stringify(headerSet(config, r?.headers)));
        if (!found) throw new Error(`no header snippet for ${r ? `route ${r.prefix || "/"}` : "the defaults"}`);
        return found.name;
    };
    if (status) {
        out.push(...backupStatusSnippet(), "");
    }
    sites.forEach(([host, routes], i) => {
        out.push(...siteBlock(config, host, routes, host === status, trusted !== undefined, snippetOf));
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
