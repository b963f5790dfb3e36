/**
 * The Caddyfile for both routing styles (app./api. subdomains; one hostname
 * with path prefixes): security headers, TLS modes, routes longest-first with
 * retrying upstreams, HTTP->HTTPS redirects left on, and the B3 status endpoint.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { behindCloudflare, caddyQuote, renderCaddyfile as renderWith, renderStatusCaddyfile, routesByHost } from "../../../components/provisioning/render/caddyfile";
import type { StackConfig } from "../../../components/config/schema";
import { FAKE_CLOUDFLARE_RANGES } from "../../helpers/cloudflare";
import { configOf } from "./fixtures";

/** Renders as the provisioner does: with Cloudflare's (fake) ranges when the stack is proxied by Cloudflare. */
function renderCaddyfile(config: StackConfig, project: string): string {
    return renderWith(config, project, { trustedProxies: behindCloudflare(config) ? FAKE_CLOUDFLARE_RANGES : undefined });
}

/** Expected text written with 4-space indents; Caddyfiles use tabs. */
function tabs(text: string): string {
    return text.replace(/^((?: {4})+)/gm, (m) => "\t".repeat(m.length / 4));
}

const CF_TRUST = `        trusted_proxies static ${[...FAKE_CLOUDFLARE_RANGES.ipv4, ...FAKE_CLOUDFLARE_RANGES.ipv6].join(" ")}
        client_ip_headers CF-Connecting-IP
`;

const GLOBAL_AND_SNIPPETS = (email: string | undefined, csp: string, trust = "") =>
    tabs(`{
${email ? `    email ${email}\n` : ""}    admin localhost:2019
    skip_install_trust
    servers {
        protocols h1 h2
${trust}    }
}

(security_headers) {
    header {
        defer
        ?Strict-Transport-Security "max-age=31536000"
        ?Content-Security-Policy "${csp}"
        ?X-Frame-Options "DENY"
        ?X-Content-Type-Options "nosniff"
        ?Referrer-Policy "strict-origin-when-cross-origin"
        -Server
    }
}

(backup_status) {
    root * /srv/status
    header Cache-Control "no-store"
    @missing not file /backup.json
    respond @missing "backup status unknown: no backup has reported yet" 503
    @stale file /backup.stale
    rewrite * /backup.json
    file_server @stale {
        status 503
    }
    file_server
}
`);

const PROXY = (upstream: string, client = "{remote_host}") =>
    `reverse_proxy ${upstream} {
    header_up X-Forwarded-For ${client}
    header_up X-Real-IP ${client}
    header_up -CF-Connecting-IP
    header_up -True-Client-IP
    header_up -Forwarded
    lb_try_duration 30s
    lb_try_interval 250ms
}`;

function indentBlock(text: string, depth: number): string {
    return text
        .split("\n")
        .map((l) => " ".repeat(4 * depth) + l)
        .join("\n");
}

const LOG = (host: string) => `    log {
        output file /var/log/caddy/${host}.log {
            roll_size 10MiB
            roll_keep 10
        }
    }
`;

describe("Caddyfile: app. and api. subdomains (finances, Cloudflare origin certificate)", () => {
    const text = renderCaddyfile(configOf("finances"), "finances-prod");

    test("exact text", () => {
        const csp = "default-src 'self'; connect-src 'self' https://api.example.com; frame-ancestors 'none'; object-src 'none'; base-uri 'self'";
        const expected =
            "# Caddyfile of finances-prod, rendered by onebox; do not edit on the host.\n" +
            "# deploy.sh installs it as the live config and reloads the proxy gracefully.\n" +
            GLOBAL_AND_SNIPPETS(undefined, csp, CF_TRUST) +
            "\n" +
            tabs(`api.example.com {
    tls /etc/caddy/certs/origin.pem /etc/caddy/certs/origin.key
    encode zstd gzip
${LOG("api.example.com")}
    handle /healthz/backup {
        import security_headers
        import backup_status
    }
    handle {
        import security_headers
${indentBlock(PROXY("api:8000", "{client_ip}"), 2)}
    }
}

app.example.com {
    tls /etc/caddy/certs/origin.pem /etc/caddy/certs/origin.key
    encode zstd gzip
${LOG("app.example.com")}
    handle {
        import security_headers
${indentBlock(PROXY("web:3000", "{client_ip}"), 2)}
    }
}
`);
        assert.equal(text, expected);
    });

    test("B3: /healthz/backup is served on the host routed to the database service only", () => {
        assert.equal(text.match(/handle \/healthz\/backup/g)?.length, 1);
        assert.ok(text.indexOf("handle /healthz/backup") > text.indexOf("api.example.com {"));
        assert.ok(text.indexOf("handle /healthz/backup") < text.indexOf("app.example.com {"));
    });
});

describe("Caddyfile: one hostname with path prefixes (social, internal CA)", () => {
    const text = renderCaddyfile(configOf("social"), "social-prod");

    test("exact site block: longest prefix first, each matching /p and /p/*, catch-all last", () => {
        const site = tabs(`social.example {
    tls internal
    encode zstd gzip
${LOG("social.example")}
    handle /healthz/backup {
        import security_headers
        import backup_status
    }
    @route1 path /health /health/*
    handle @route1 {
        import security_headers
${indentBlock(PROXY("api:8000"), 2)}
    }
    @route2 path /api /api/*
    handle @route2 {
        import security_headers
${indentBlock(PROXY("api:8000"), 2)}
    }
    handle {
        import security_headers
${indentBlock(PROXY("web:8080"), 2)}
    }
}
`);
        assert.ok(text.endsWith(`\n${site}`), text);
    });

    test("FingerFlow's routes behind Caddy: /api, /auth, /health to the backend, the rest to the frontend", () => {
        const config = configOf("fingerflow", (r) => {
            r.proxy = { kind: "caddy" };
            r.tls = { mode: "acme", acmeEmail: "ops@fingerflow.example" };
        });
        const routes = routesByHost(config).get("app.fingerflow.example");
        assert.deepEqual(routes?.map((r) => `${r.prefix || "/"} -> ${r.service}:${r.port}`), [
            "/health -> backend:8000",
            "/auth -> backend:8000",
            "/api -> backend:8000",
            "/ -> frontend:80",
        ]);
    });

    test("a hostname without a / route answers 404 for other paths (not Caddy's empty 200)", () => {
        const config = configOf("social", (r) => {
            r.routes = (r.routes as { path: string }[]).filter((x) => x.path !== "/");
        });
        assert.ok(renderCaddyfile(config, "social-prod").includes(tabs("    handle {\n        import security_headers\n        respond 404\n    }\n}\n")));
    });
});

describe("Caddyfile: the client address (Cloudflare's CF-Connecting-IP only from Cloudflare)", () => {
    const proxied = configOf("finances");
    const direct = configOf("social");

    test("dns.proxied: exactly the given ranges are trusted, both families, and only CF-Connecting-IP names the client", () => {
        const ranges = { ipv4: ["198.51.100.0/24"], ipv6: ["2001:db8::/32"] };
        const text = renderWith(proxied, "finances-prod", { trustedProxies: ranges });
        assert.ok(text.includes("\tservers {\n\t\tprotocols h1 h2\n\t\ttrusted_proxies static 198.51.100.0/24 2001:db8::/32\n\t\tclient_ip_headers CF-Connecting-IP\n\t}\n"), text);
        assert.equal(text.match(/trusted_proxies/g)?.length, 1);
    });

    test("dns.proxied without Cloudflare's ranges is refused (the app would see only Cloudflare's addresses)", () => {
        for (const trustedProxies of [undefined, { ipv4: [], ipv6: [] }]) {
            assert.throws(() => renderWith(proxied, "finances-prod", { trustedProxies }), /dns\.proxied is on but Cloudflare's IP ranges are missing/);
        }
    });

    test("not proxied: nobody is trusted, the client is the connection's address", () => {
        const text = renderCaddyfile(direct, "social-prod");
        assert.doesNotMatch(text, /trusted_proxies|client_ip_headers|\{client_ip\}/);
        assert.equal(text.match(/header_up X-Real-IP \{remote_host\}/g)?.length, direct.routes.length);
    });

    for (const [name, config, client] of [
        ["proxied", proxied, "{client_ip}"],
        ["not proxied", direct, "{remote_host}"],
    ] as const) {
        test(`${name}: every upstream gets the one client address in X-Forwarded-For and X-Real-IP, and no client-written address header`, () => {
            const text = renderCaddyfile(config, "x-prod");
            const blocks = text.split("reverse_proxy ").slice(1).map((b) => b.slice(0, b.indexOf("lb_try_duration")));
            assert.equal(blocks.length, config.routes.length);
            for (const b of blocks) {
                const ops = b.split("\n").map((l) => l.trim()).filter((l) => l.startsWith("header_up"));
                assert.deepEqual(ops, [
                    `header_up X-Forwarded-For ${client}`,
                    `header_up X-Real-IP ${client}`,
                    "header_up -CF-Connecting-IP",
                    "header_up -True-Client-IP",
                    "header_up -Forwarded",
                ]);
            }
        });
    }

    test("behindCloudflare: only with Cloudflare DNS, proxied, in front of our own Caddy", () => {
        assert.equal(behindCloudflare(proxied), true);
        assert.equal(behindCloudflare(direct), false);
        assert.equal(behindCloudflare(configOf("cleaning")), true);
        assert.equal(behindCloudflare(configOf("cleaning", (r) => ((r.dns as Record<string, unknown>).proxied = false))), false);
        assert.equal(behindCloudflare(configOf("fingerflow")), false);
    });
});

describe("Caddyfile: TLS, redirects and headers", () => {
    test("acme: the contact e-mail is a global option and sites have no tls directive", () => {
        const text = renderCaddyfile(configOf("cleaning"), "cleaning-prod");
        assert.ok(text.includes("{\n\temail ops@clean.example\n\tadmin localhost:2019\n"));
        assert.doesNotMatch(text, /^\s*tls /m);
        assert.deepEqual([...routesByHost(configOf("cleaning")).keys()], ["api.clean.example", "clean.example", "www.clean.example"]);
    });

    for (const name of ["finances", "chronos", "cleaning", "social"] as const) {
        test(`${name}: HTTP->HTTPS redirects stay on (no auto_https, no http:// sites, no port-80 listeners)`, () => {
            const text = renderCaddyfile(configOf(name), `${name}-prod`);
            assert.doesNotMatch(text, /auto_https|http:\/\/|:80\b/);
        });

        test(`${name}: every site compresses and every handler imports security headers first`, () => {
            const text = renderCaddyfile(configOf(name), `${name}-prod`);
            const sites = text.split("\n").filter((l) => /^[a-z0-9.-]+ \{$/.test(l)).length;
            assert.equal(text.match(/^\tencode zstd gzip$/gm)?.length, sites);
            const handlers = text.match(/^\thandle\b.*\{\n.*/gm) ?? [];
            assert.ok(handlers.length >= sites);
            for (const h of handlers) assert.match(h, /\n\t\timport security_headers(_\d+)?$/);
        });
    }

    test("by default each header is added only where the app sent none (?), and Server is removed", () => {
        const text = renderCaddyfile(configOf("social"), "social-prod");
        const block = text.slice(text.indexOf("(security_headers) {"), text.indexOf("}\n", text.indexOf("(security_headers) {")));
        const fields = block.split("\n").map((l) => l.trim()).filter((l) => /^[?-]?[A-Z]/.test(l));
        assert.deepEqual(fields.map((l) => l.split(" ")[0]), ["?Strict-Transport-Security", "?Content-Security-Policy", "?X-Frame-Options", "?X-Content-Type-Options", "?Referrer-Policy", "-Server"]);
        assert.match(block, /\n\t\tdefer\n/);
    });

    test("HSTS includeSubDomains and preload", () => {
        const text = renderCaddyfile(
            configOf("social", (r) => {
                r.proxy = { hstsIncludeSubdomains: true, hstsPreload: true };
                r.tls = { mode: "acme", acmeEmail: "ops@social.example" };
            }),
            "social-prod",
        );
        assert.match(text, /\t\t\?Strict-Transport-Security "max-age=31536000; includeSubDomains; preload"\n/);
    });

    test("per-route headers: a route's own CSP, frame and referrer policy and override go to its handler only", () => {
        const config = configOf("social", (r) => {
            r.proxy = { frameOptions: "SAMEORIGIN", referrerPolicy: "same-origin" };
            r.routes = (r.routes as Record<string, unknown>[]).map((x) =>
                x.path === "/api" ? { ...x, headers: { contentSecurityPolicy: "default-src 'none'", frameOptions: "off", overrideAppHeaders: true } } : x,
            );
        });
        const text = renderCaddyfile(config, "social-prod");
        assert.ok(
            text.includes(
                tabs(`(security_headers_1) {
    header {
        defer
        Strict-Transport-Security "max-age=31536000"
        Content-Security-Policy "default-src 'none'"
        X-Content-Type-Options "nosniff"
        Referrer-Policy "same-origin"
        -Server
    }
}
`),
            ),
            text,
        );
        assert.match(text, /\?X-Frame-Options "SAMEORIGIN"/);
        assert.ok(text.includes(tabs("    @route2 path /api /api/*\n    handle @route2 {\n        import security_headers_1\n")), text);
        assert.equal(text.match(/import security_headers_1\n/g)?.length, 1);
        assert.equal(text.match(/import security_headers\n/g)?.length, 3, "the other two routes and the status handler keep the defaults");
    });

    test("two routes with the same own headers share one snippet", () => {
        const own = { contentSecurityPolicy: "default-src 'none'" };
        const config = configOf("social", (r) => {
            r.routes = (r.routes as Record<string, unknown>[]).map((x) => (x.path === "/" ? x : { ...x, headers: own }));
        });
        const text = renderCaddyfile(config, "social-prod");
        assert.equal(text.match(/^\(security_headers(_\d+)?\) \{$/gm)?.length, 2);
        assert.equal(text.match(/import security_headers_1\n/g)?.length, 2);
    });

    test("hstsMaxAge 0 drops the HSTS header", () => {
        const text = renderCaddyfile(configOf("social", (r) => (r.proxy = { hstsMaxAge: 0 })), "social-prod");
        assert.doesNotMatch(text, /Strict-Transport-Security/);
    });

    test("B3: no /healthz/backup without backups", () => {
        assert.doesNotMatch(renderCaddyfile(configOf("social", (r) => delete r.backups), "social-prod"), /healthz\/backup|backup_status/);
    });

    test("values the Caddyfile cannot carry are refused, naming the setting", () => {
        assert.equal(caddyQuote("default-src 'self'", "x"), "\"default-src 'self'\"");
        for (const bad of ['a"b', "a{b}", "a\\b", "a\nb"]) {
            assert.throws(() => caddyQuote(bad, "proxy.contentSecurityPolicy"), /^Error: proxy\.contentSecurityPolicy:/);
        }
    });
});

test("B3: status server behind Traefik: plain HTTP on 8080, the same status handler, 404 elsewhere (exact)", () => {
    assert.equal(
        renderStatusCaddyfile("fingerflow-prod"),
        "# Backup status server of fingerflow-prod, rendered by onebox; Traefik routes /healthz/backup here.\n" +
            tabs(`{
    admin localhost:2019
}

(backup_status) {
    root * /srv/status
    header Cache-Control "no-store"
    @missing not file /backup.json
    respond @missing "backup status unknown: no backup has reported yet" 503
    @stale file /backup.stale
    rewrite * /backup.json
    file_server @stale {
        status 503
    }
    file_server
}

:8080 {
    handle /healthz/backup {
        import backup_status
    }
    handle {
        respond 404
    }
}
`),
    );
});

describe("Caddyfile: rate limits and allow-lists (onebox_rate_limit of the onebox Caddy build)", () => {
    /** Intentional social's auth limits (login 5/min, registration 3/hour) and an admin route for the office only. */
    const limited = configOf("social", (r) => {
        r.proxy = { image: "ghcr.io/social/onebox-caddy:2.11.9" };
        r.routes = [
            {
                host: "social.example",
                path: "/api",
                service: "api",
                rateLimits: [
                    { path: "/api/auth/login", requests: 5, window: "1m" },
                    { path: "/api/auth/register", requests: 3, window: "1h", exempt: ["198.51.100.0/24"] },
                    { requests: 600, window: "1m", burst: 100 },
                ],
            },
            { host: "social.example", path: "/health", service: "api" },
            { host: "social.example", path: "/admin", service: "web", allowFrom: ["203.0.113.0/24", "2001:db8::/32"], rateLimits: [{ requests: 30, window: "1m" }] },
            { host: "social.example", path: "/", service: "web" },
        ];
    });
    const text = renderCaddyfile(limited, "social-prod");

    test("exact route blocks: each limit inside its route before the upstream, path limits behind their own matcher", () => {
        const routes = tabs(`    @route1 path /health /health/*
    handle @route1 {
        import security_headers
${indentBlock(PROXY("api:8000"), 2)}
    }
    @route2 path /admin /admin/*
    handle @route2 {
        import security_headers
        onebox_rate_limit {
            allow_from 203.0.113.0/24 2001:db8::/32
        }
        onebox_rate_limit {
            zone social.example/admin#1
            rate 30 1m
            burst 30
            allow_from 203.0.113.0/24 2001:db8::/32
        }
${indentBlock(PROXY("web:8080"), 2)}
    }
    @route3 path /api /api/*
    handle @route3 {
        import security_headers
        @route3_limit1 path /api/auth/login /api/auth/login/*
        onebox_rate_limit @route3_limit1 {
            zone social.example/api/auth/login#1
            rate 5 1m
            burst 5
        }
        @route3_limit2 path /api/auth/register /api/auth/register/*
        onebox_rate_limit @route3_limit2 {
            zone social.example/api/auth/register#2
            rate 3 1h
            burst 3
            exempt 198.51.100.0/24
        }
        onebox_rate_limit {
            zone social.example/api#3
            rate 600 1m
            burst 100
        }
${indentBlock(PROXY("api:8000"), 2)}
    }
    handle {
        import security_headers
${indentBlock(PROXY("web:8080"), 2)}
    }
}
`);
        assert.ok(text.endsWith(routes), text);
    });

    test("a limit on the catch-all route gets a matcher name of its own", () => {
        const config = configOf("social", (r) => {
            r.proxy = { image: "ghcr.io/social/onebox-caddy:2.11.9" };
            r.routes = [{ host: "social.example", service: "web", rateLimits: [{ path: "/login/", requests: 5, window: "1m" }] }];
        });
        assert.ok(
            renderCaddyfile(config, "social-prod").includes(
                tabs(`        @all_limit1 path /login /login/*
        onebox_rate_limit @all_limit1 {
            zone social.example/login#1
`),
            ),
        );
    });

    test("a stack without limits renders no onebox_rate_limit (it loads in stock Caddy)", () => {
        assert.doesNotMatch(renderCaddyfile(configOf("social"), "social-prod"), /onebox_rate_limit/);
    });
});
