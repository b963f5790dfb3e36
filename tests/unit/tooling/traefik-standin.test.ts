/**
 * The Traefik stand-in of the host tests (tests/host/fixture/images/traefik-standin): its
 * translation of Traefik labels into a Caddyfile, run with jq on containers as the Docker
 * Engine API lists them, with the labels the compose render writes. No Docker needed.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";
import { renderRelease } from "../../../components/provisioning/steps";
import { configOf } from "../provisioning/fixtures";

const JQ = path.resolve(__dirname, "../../../tests/host/fixture/images/traefik-standin/labels-to-caddyfile.jq");

interface Container {
    Names: string[];
    Labels: Record<string, string>;
    NetworkSettings: { Networks: Record<string, { IPAddress: string }> };
}

function translate(containers: Container[], entrypoint = "websecure", network = "proxy"): string {
    const r = spawnSync("jq", ["-j", "--arg", "entrypoint", entrypoint, "--arg", "network", network, "-f", JQ], { input: JSON.stringify(containers), encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout;
}

function container(name: string, ip: string, labels: Record<string, string>, network = "proxy"): Container {
    return { Names: [`/${name}`], Labels: labels, NetworkSettings: { Networks: { [network]: { IPAddress: ip } } } };
}

/** The fingerflow stack's routed containers as Docker sees them ($$ in compose is one $). */
function fingerflowContainers(): Container[] {
    const compose = renderRelease(configOf("fingerflow"), "/srv/data").files.find((f) => f.name === "compose.yaml");
    assert.ok(compose);
    const model = parseYaml(compose.content) as { services: Record<string, { labels?: Record<string, string> }> };
    const ips: Record<string, string> = { "backup-status": "172.20.0.10", backend: "172.20.0.11", frontend: "172.20.0.12" };
    return Object.entries(model.services)
        .filter(([, s]) => s.labels !== undefined)
        .map(([name, s]) => container(`fingerflow-prod-${name}-1`, ips[name] ?? "", Object.fromEntries(Object.entries(s.labels ?? {}).map(([k, v]) => [k, v.replace(/\$\$/g, "$")]))));
}

const HEADERS = [
    "\t\theader {",
    "\t\t\tdefer",
    "\t\t\tContent-Security-Policy \"default-src 'self'; frame-ancestors 'none'; object-src 'none'; base-uri 'self'\"",
    "\t\t\tX-Content-Type-Options nosniff",
    "\t\t\t-Server",
    "\t\t\tX-Frame-Options DENY",
    '\t\t\tReferrer-Policy "strict-origin-when-cross-origin"',
    '\t\t\tStrict-Transport-Security "max-age=31536000"',
    "\t\t}",
];
const PREAMBLE = ["# Rendered by the Traefik stand-in from the labels of the running containers; do not edit.", "{", "\tadmin localhost:2019", "\tauto_https disable_redirects", "\tskip_install_trust", "\tdefault_sni standin.invalid", "\tfallback_sni standin.invalid", "}"];
/** Every other host (or none: no router at all) gets Traefik's own 404 on the entrypoint, no middleware headers. */
const CATCH_ALL = ["", "https://standin.invalid, https:// {", "\ttls internal", '\trespond "404 page not found" 404', "}"];

describe("Traefik stand-in: labels to Caddyfile", () => {
    test("the compose render's labels: one site per host, routers by Traefik's priority (the rule's length, or the label), path rules as Traefik matches them, the headers and compress middlewares", () => {
        const containers = fingerflowContainers();
        assert.deepEqual(containers.map((c) => c.Names[0]).sort(), ["/fingerflow-prod-backend-1", "/fingerflow-prod-backup-status-1", "/fingerflow-prod-frontend-1"]);
        const proxied = (upstream: string, compress = true) => [...HEADERS, ...(compress ? ["\t\tencode gzip"] : []), `\t\treverse_proxy ${upstream}`, "\t}"];
        assert.equal(
            translate(containers),
            [
                ...PREAMBLE,
                "",
                "https://app.fingerflow.example {",
                "\ttls internal",
                // The status server's router carries priority 10000 and only the headers middleware.
                "\t@r0 path /healthz/backup",
                "\thandle @r0 {",
                ...proxied("172.20.0.10:8080", false),
                // Equal forms: the longer path has the longer rule, so the higher priority.
                "\t@r1 path /health /health/*",
                "\thandle @r1 {",
                ...proxied("172.20.0.11:8000"),
                "\t@r2 path /auth /auth/*",
                "\thandle @r2 {",
                ...proxied("172.20.0.11:8000"),
                "\t@r3 path /api /api/*",
                "\thandle @r3 {",
                ...proxied("172.20.0.11:8000"),
                // Host(`...`) alone: the shortest rule, last; it catches the rest, so no 404 handler.
                "\thandle {",
                ...proxied("172.20.0.12:80"),
                "}",
                ...CATCH_ALL,
                "",
            ].join("\n"),
        );
    });

    test("a host without a catch-all router answers Traefik's own 404 (no middleware headers) where nothing matches", () => {
        const out = translate([
            container("a-1", "10.1.0.2", {
                "traefik.enable": "true",
                "traefik.http.routers.a.rule": "Host(`a.example`) && (Path(`/api`) || PathPrefix(`/api/`))",
                "traefik.http.routers.a.entrypoints": "websecure",
                "traefik.http.services.a.loadbalancer.server.port": "8000",
            }),
        ]);
        assert.equal(
            out,
            [
                ...PREAMBLE,
                "",
                "https://a.example {",
                "\ttls internal",
                "\t@r0 path /api /api/*",
                "\thandle @r0 {",
                "\t\treverse_proxy 10.1.0.2:8000",
                "\t}",
                "\t# No router matched: Traefik's own 404, without any middleware's headers.",
                "\thandle {",
                '\t\trespond "404 page not found" 404',
                "\t}",
                "}",
                ...CATCH_ALL,
                "",
            ].join("\n"),
        );
    });

    test("with no router at all (every router on another entrypoint, say) the entrypoint still answers Traefik's own 404", () => {
        const off = container("web-1", "10.1.0.3", { "traefik.enable": "true", "traefik.http.services.s.loadbalancer.server.port": "80", "traefik.http.routers.plain.rule": "Host(`plain.example`)", "traefik.http.routers.plain.entrypoints": "web" });
        assert.equal(translate([]), [...PREAMBLE, ...CATCH_ALL, ""].join("\n"));
        assert.equal(translate([off]), [...PREAMBLE, ...CATCH_ALL, ""].join("\n"));
    });

    test("what Traefik would not route here is left out, each with a reason: disabled, another entrypoint, no address on the network, an unknown rule or middleware, no port", () => {
        const base = { "traefik.enable": "true", "traefik.http.services.s.loadbalancer.server.port": "80" };
        const out = translate([
            container("off-1", "10.1.0.2", { ...base, "traefik.enable": "false", "traefik.http.routers.off.rule": "Host(`off.example`)" }),
            container("web-1", "10.1.0.3", { ...base, "traefik.http.routers.plain.rule": "Host(`plain.example`)", "traefik.http.routers.plain.entrypoints": "web" }),
            container("elsewhere-1", "10.9.0.3", { ...base, "traefik.http.routers.far.rule": "Host(`far.example`)" }, "other"),
            container("regex-1", "10.1.0.4", { ...base, "traefik.http.routers.re.rule": "HostRegexp(`.+`)" }),
            container("prefix-1", "10.1.0.5", { ...base, "traefik.http.routers.odd.rule": "Host(`odd.example`) && (Path(`/a`) || PathPrefix(`/b/`))" }),
            container("noport-1", "10.1.0.6", { "traefik.enable": "true", "traefik.http.routers.np.rule": "Host(`np.example`)" }),
            container("mw-1", "10.1.0.7", { ...base, "traefik.http.routers.mw.rule": "Host(`mw.example`)", "traefik.http.routers.mw.middlewares": "auth@file" }),
        ]);
        const skipped = out.split("\n").filter((l) => l.startsWith("# skipped"));
        assert.deepEqual(skipped, [
            "# skipped: router far: container elsewhere-1 has no address on proxy",
            "# skipped: router re: unsupported rule HostRegexp(`.+`)",
            "# skipped: router odd: unsupported rule Host(`odd.example`) && (Path(`/a`) || PathPrefix(`/b/`))",
            "# skipped: router np: no service port",
        ]);
        assert.doesNotMatch(out, /off\.example|plain\.example|far\.example/);
        // A middleware defined outside the labels (auth@file) is named, not silently dropped.
        assert.match(out, /https:\/\/mw\.example \{\n\ttls internal\n\thandle \{\n\t\theader \{\n\t\t\tdefer\n\t\t\t# skipped: unknown middleware auth\n\t\t\}\n\t\treverse_proxy 10\.1\.0\.7:80\n/);
        // The entrypoint the stand-in serves is an argument: "web" routers on a "web" stand-in.
        assert.match(translate([container("web-1", "10.1.0.3", { ...base, "traefik.http.routers.plain.rule": "Host(`plain.example`)", "traefik.http.routers.plain.entrypoints": "web" })], "web"), /https:\/\/plain\.example \{/);
    });

    test("values are quoted for the Caddyfile; an explicit priority wins over the rule's length", () => {
        const out = translate([
            container("q-1", "10.1.0.2", {
                "traefik.enable": "true",
                "traefik.http.services.q.loadbalancer.server.port": "80",
                "traefik.http.routers.long.rule": "Host(`q.example`) && (Path(`/a-very-long-path`) || PathPrefix(`/a-very-long-path/`))",
                "traefik.http.routers.short.rule": "Host(`q.example`) && Path(`/s`)",
                "traefik.http.routers.short.priority": "500",
                "traefik.http.routers.short.middlewares": "h",
                "traefik.http.middlewares.h.headers.customResponseHeaders.X-Note": 'say "hi"',
                "traefik.http.middlewares.h.headers.customFrameOptionsValue": "SAMEORIGIN",
            }),
        ]);
        assert.match(out, /\t@r0 path \/s\n\thandle @r0 \{\n\t\theader \{\n\t\t\tdefer\n\t\t\tX-Note "say \\"hi\\""\n\t\t\tX-Frame-Options "SAMEORIGIN"\n\t\t\}\n/);
        assert.match(out, /\t@r1 path \/a-very-long-path \/a-very-long-path\/\*\n/);
    });
});
