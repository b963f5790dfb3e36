/**
 * Rate limits and allow-lists through the rendered Caddyfile, on the stack's
 * own Caddy build (proxy/caddy, onebox_rate_limit) and real networks.
 *
 * The proxy joins two Docker networks: the first ("cloudflare") is the trusted
 * range given to the render where `pulumi up` gives Cloudflare's published
 * ranges, so a client there names visitors in CF-Connecting-IP; a client on the
 * second ("internet") is only ever its own address. Each burst of requests
 * comes from one client container (one source address), one connection per
 * request. Behind the proxy an echo server answers 200.
 *
 *   tests/host/fixture/caddy-image.sh   # onebox-test/caddy:current (the onebox Caddy build)
 *   flock -w 3600 /tmp/onebox-host-suite.lock node --import tsx --test --test-concurrency=1 tests/host/rate-limit.test.ts
 *
 * Talks only to the containers it creates; every wait is bounded.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { validateConfig } from "../../components/config/load";
import type { StackConfig } from "../../components/config/schema";
import { renderCaddyfile } from "../../components/provisioning/render/caddyfile";
import { sh } from "./lib/harness";
import { HOST_KEY } from "../unit/provisioning/fixtures";

const CADDY_IMAGE = "onebox-test/caddy:current";
const PYTHON_IMAGE = "onebox-test/python:latest";
const HOST = "app.example.test";
const ID = `onebox-rl-${randomBytes(3).toString("hex")}`;
const NET = { cloudflare: `${ID}-cf`, internet: `${ID}-inet`, backend: `${ID}-app` };
const PROXY = `${ID}-proxy`;
const ECHO = `${ID}-echo`;
/** Visitors Cloudflare names: two ordinary ones, one in the exempt office network, one admin. */
const VISITOR_A = "198.51.100.7";
const VISITOR_B = "198.51.100.8";
const OFFICE = "192.0.2.0/24";
const OFFICE_VISITOR = "192.0.2.10";
const ADMINS = "203.0.113.0/24";
const ADMIN = "203.0.113.5";
/** The plan's limits: login 5 a minute (one more every 12 s), registration 3 an hour. */
const LOGIN = { requests: 5, window: "1m", secondsPerToken: 12 };
const REGISTER = { requests: 3, window: "1h", secondsPerToken: 1200 };

const ECHO_SERVER = `
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", 3000), H).serve_forever()
`;

/**
 * argv[1]: JSON list of [path, headers]. Sends them in order from this one
 * container, a connection each; prints each status and Retry-After, and the
 * seconds the whole sequence took.
 */
const CLIENT = `
import http.client, json, ssl, sys, time
start = time.monotonic()
out = []
for path, headers in json.loads(sys.argv[1]):
    c = http.client.HTTPSConnection("${HOST}", 443, timeout=10, context=ssl._create_unverified_context())
    c.request("GET", path, headers=headers)
    r = c.getresponse()
    r.read()
    out.append({"status": r.status, "retryAfter": r.getheader("Retry-After")})
    c.close()
print(json.dumps({"responses": out, "seconds": time.monotonic() - start}))
`;

interface Sequence {
    responses: { status: number; retryAfter: string | null }[];
    seconds: number;
}

let dir = "";
let caddyfileDir = "";
let subnet = "";
const proxyAddress: Record<"cloudflare" | "internet", string> = { cloudflare: "", internet: "" };

function stack(tls: Record<string, unknown> = { mode: "internal" }): StackConfig {
    return validateConfig({
        app: { name: "edge", environment: "test" },
        host: { provider: "existing", address: "127.0.0.1", hostKey: HOST_KEY, sshAllowedCidrs: ["172.16.0.0/12"] },
        sshPrivateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nnever-used\n-----END OPENSSH PRIVATE KEY-----\n",
        dns: { provider: "none", zone: "example.test" },
        tls,
        proxy: { image: CADDY_IMAGE },
        services: { web: { image: "onebox-test/web:1", port: 3000, health: { path: "/health" } } },
        routes: [
            {
                host: HOST,
                service: "web",
                rateLimits: [
                    { path: "/login", requests: LOGIN.requests, window: LOGIN.window, exempt: [OFFICE] },
                    { path: "/register", requests: REGISTER.requests, window: REGISTER.window },
                ],
            },
            { host: HOST, path: "/admin", service: "web", allowFrom: [ADMINS] },
        ],
    }).config;
}

function docker(...args: string[]): string {
    return sh("docker", args, { timeoutMs: 120_000 }).trim();
}

function cleanup(): void {
    for (const c of [PROXY, ECHO]) spawnSync("docker", ["rm", "-f", c], { stdio: "ignore" });
    for (const n of Object.values(NET)) spawnSync("docker", ["network", "rm", n], { stdio: "ignore" });
}
process.on("exit", cleanup);

/** `count` requests for `urlPath` from one fresh client container on `net`, with `headers`. */
function burst(net: "cloudflare" | "internet", urlPath: string, count: number, headers: Record<string, string> = {}): Sequence {
    const requests = Array.from({ length: count }, () => [urlPath, headers]);
    const out = docker("run", "--rm", "--network", NET[net], "--add-host", `${HOST}:${proxyAddress[net]}`, PYTHON_IMAGE, "python3", "-c", CLIENT, JSON.stringify(requests));
    return JSON.parse(out) as Sequence;
}

function statuses(s: Sequence): number[] {
    return s.responses.map((r) => r.status);
}

/**
 * A limit refills while requests are in flight: `count` requests pass only if
 * they took less than one refill. The precondition is checked, not assumed.
 */
function assertQuick(s: Sequence, secondsPerToken: number): void {
    assert.ok(s.seconds < secondsPerToken, `the requests took ${s.seconds.toFixed(1)} s, longer than one refill (${secondsPerToken} s): the counts below would not be meaningful`);
}

before(() => {
    for (const image of [CADDY_IMAGE, PYTHON_IMAGE]) {
        const r = spawnSync("docker", ["image", "inspect", image], { stdio: "ignore" });
        assert.equal(r.status, 0, `${image} is missing: run tests/host/fixture/stack-images.sh and caddy-image.sh`);
    }
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "onebox-rl-"));
    caddyfileDir = path.join(dir, "caddy");
    fs.mkdirSync(caddyfileDir);
    for (const n of Object.values(NET)) docker("network", "create", n);
    subnet = docker("network", "inspect", "-f", "{{(index .IPAM.Config 0).Subnet}}", NET.cloudflare);
    assert.match(subnet, /^\d+\.\d+\.\d+\.\d+\/\d+$/);
    docker("run", "-d", "--name", ECHO, "--network", NET.backend, "--network-alias", "web", PYTHON_IMAGE, "python3", "-c", ECHO_SERVER);
    fs.writeFileSync(path.join(caddyfileDir, "Caddyfile"), renderCaddyfile(stack(), "edge-test", { trustedProxies: { ipv4: [subnet], ipv6: [] } }));
    docker("run", "-d", "--name", PROXY, "--network", NET.cloudflare, "--tmpfs", "/var/log/caddy", "-v", `${caddyfileDir}:/etc/caddy:ro`, CADDY_IMAGE);
    docker("network", "connect", NET.internet, PROXY);
    docker("network", "connect", NET.backend, PROXY);
    for (const net of ["cloudflare", "internet"] as const) {
        proxyAddress[net] = docker("inspect", "-f", `{{(index .NetworkSettings.Networks "${NET[net]}").IPAddress}}`, PROXY);
        assert.match(proxyAddress[net], /^\d+\.\d+\.\d+\.\d+$/);
    }
    // The internal CA issues the site certificate at start: wait (bounded) for the first answer
    // on a path without limits.
    let last = "";
    for (let i = 0; i < 30; i++) {
        try {
            if (burst("cloudflare", "/", 1).responses[0]?.status === 200) return;
        } catch (e) {
            last = (e as Error).message;
        }
        spawnSync("sleep", ["1"]);
    }
    throw new Error(`the proxy never answered: ${last}\n${spawnSync("docker", ["logs", "--tail", "40", PROXY], { encoding: "utf8" }).stderr}`);
});

after(() => {
    cleanup();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test("the running proxy is the onebox build and loaded the limits", () => {
    const modules = docker("exec", PROXY, "caddy", "list-modules");
    assert.match(modules, /^http\.handlers\.onebox_rate_limit$/m);
    const config = docker("exec", PROXY, "wget", "-qO-", "http://localhost:2019/config/");
    assert.match(config, /"handler":"onebox_rate_limit"/);
});

test("login 5 a minute: a visitor's 5 logins pass, the 6th gets 429 with Retry-After; the visitor next to it is not limited", () => {
    const a = burst("cloudflare", "/login", LOGIN.requests + 2, { "CF-Connecting-IP": VISITOR_A });
    assertQuick(a, LOGIN.secondsPerToken);
    assert.deepEqual(statuses(a), [200, 200, 200, 200, 200, 429, 429]);
    const retry = Number(a.responses[5].retryAfter);
    assert.ok(Number.isInteger(retry) && retry >= 1 && retry <= LOGIN.secondsPerToken, `Retry-After ${String(a.responses[5].retryAfter)}`);
    assert.equal(a.responses[0].retryAfter, null);

    // Another visitor through the same Cloudflare address has an allowance of its own.
    const b = burst("cloudflare", "/login", 1, { "CF-Connecting-IP": VISITOR_B });
    assert.deepEqual(statuses(b), [200]);
    // The limit is per path: the limited visitor still reaches the rest of the site.
    assert.deepEqual(statuses(burst("cloudflare", "/", 1, { "CF-Connecting-IP": VISITOR_A })), [200]);
});

test("the limit keys on the trusted client address: an untrusted source cannot escape it by naming other visitors", () => {
    const headers = [VISITOR_A, VISITOR_B, "192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"].map((v) => ["/login", { "CF-Connecting-IP": v, "X-Forwarded-For": v }]);
    const out = docker("run", "--rm", "--network", NET.internet, "--add-host", `${HOST}:${proxyAddress.internet}`, PYTHON_IMAGE, "python3", "-c", CLIENT, JSON.stringify(headers));
    const s = JSON.parse(out) as Sequence;
    assertQuick(s, LOGIN.secondsPerToken);
    assert.deepEqual(statuses(s), [200, 200, 200, 200, 200, 429]);
});

test("registration 3 an hour: the 4th gets 429, told to come back in about 20 minutes", () => {
    const s = burst("cloudflare", "/register", REGISTER.requests + 1, { "CF-Connecting-IP": VISITOR_A });
    assertQuick(s, REGISTER.secondsPerToken);
    assert.deepEqual(statuses(s), [200, 200, 200, 429]);
    const retry = Number(s.responses[3].retryAfter);
    assert.ok(retry > REGISTER.secondsPerToken - 60 && retry <= REGISTER.secondsPerToken, `Retry-After ${String(s.responses[3].retryAfter)}`);
});

test("the exempt office network is never limited", () => {
    const s = burst("cloudflare", "/login", 3 * LOGIN.requests, { "CF-Connecting-IP": OFFICE_VISITOR });
    assert.deepEqual(statuses(s), Array<number>(3 * LOGIN.requests).fill(200));
});

test("allowFrom: the admin network reaches /admin; other visitors and untrusted sources get 403", () => {
    assert.deepEqual(statuses(burst("cloudflare", "/admin", 1, { "CF-Connecting-IP": ADMIN })), [200]);
    assert.deepEqual(statuses(burst("cloudflare", "/admin/users", 1, { "CF-Connecting-IP": VISITOR_B })), [403]);
    // A direct client naming an admin address is not believed.
    assert.deepEqual(statuses(burst("internet", "/admin", 1, { "CF-Connecting-IP": ADMIN, "X-Forwarded-For": ADMIN })), [403]);
    // The allow-list covers only its route.
    assert.deepEqual(statuses(burst("internet", "/administrator", 1)), [200]);
});

test("a reload (what every deploy does) keeps the counts: the limited visitor is still limited", () => {
    docker("exec", PROXY, "caddy", "reload", "--force", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile");
    const s = burst("cloudflare", "/register", 1, { "CF-Connecting-IP": VISITOR_A });
    assert.deepEqual(statuses(s), [429]);
});

test("the limits adapt with ACME and with the internal CA", () => {
    const renders: [string, string][] = [
        ["acme", renderCaddyfile(stack({ mode: "acme", acmeEmail: "ops@example.test" }), "edge-test", { trustedProxies: { ipv4: [subnet], ipv6: [] } })],
        ["internal", renderCaddyfile(stack(), "edge-test")],
    ];
    for (const [name, caddyfile] of renders) {
        const file = path.join(caddyfileDir, `Caddyfile.${name}`);
        fs.writeFileSync(file, caddyfile);
        const r = spawnSync(
            "docker",
            ["run", "--rm", "-v", `${caddyfileDir}:/etc/caddy:ro`, "--entrypoint", "caddy", CADDY_IMAGE, "adapt", "--config", `/etc/caddy/Caddyfile.${name}`, "--adapter", "caddyfile"],
            { encoding: "utf8", timeout: 60_000 },
        );
        assert.equal(r.status, 0, `${name}: ${r.stderr}`);
        const json = JSON.parse(r.stdout) as { apps: { tls?: { automation?: { policies?: { issuers?: { module: string; email?: string }[] }[] } } } };
        assert.equal((r.stdout.match(/"handler":"onebox_rate_limit"/g) ?? []).length, 3, `${name}: two limits and one allow-list`);
        const issuers = (json.apps.tls?.automation?.policies ?? []).flatMap((p) => p.issuers ?? []);
        if (name === "acme") {
            assert.ok(issuers.some((i) => i.module === "acme" && i.email === "ops@example.test"), r.stdout);
        } else {
            assert.ok(issuers.some((i) => i.module === "internal"), r.stdout);
        }
    }
});
