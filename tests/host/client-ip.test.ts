/**
 * The client address through the rendered Caddyfile, on real Caddy and real
 * networks (render/caddyfile.ts): behind Cloudflare the proxy trusts only
 * Cloudflare's ranges to name the client in CF-Connecting-IP; a header from
 * any other source is ignored, and the app sees one address in
 * X-Forwarded-For and X-Real-IP.
 *
 * Two source addresses, honestly: the proxy container joins two Docker
 * networks; a client container on the first ("cloudflare") and one on the
 * second ("internet") send the same headers. The Caddyfile is the real render
 * of a stack, given the first network's subnet where `pulumi up` gives
 * Cloudflare's published ranges (a test-only trusted range). Behind the proxy
 * an echo server reports the headers it received.
 *
 *   tests/host/fixture/caddy-image.sh   # onebox-test/caddy:current (Caddy >= 2.7)
 *   flock -w 3600 /tmp/onebox-host-suite.lock node --import tsx --test --test-concurrency=1 tests/host/client-ip.test.ts
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
import { ROOT, sh } from "./lib/harness";
import { HOST_KEY } from "../unit/provisioning/fixtures";

const CADDY_IMAGE = "onebox-test/caddy:current";
/** Debian's Caddy 2.6, the proxy image of the end-to-end suite. */
const OLD_CADDY_IMAGE = "onebox-test/caddy:latest";
const PYTHON_IMAGE = "onebox-test/python:latest";
const HOST = "app.example.test";
const ID = `onebox-cip-${randomBytes(3).toString("hex")}`;
const NET = { cloudflare: `${ID}-cf`, internet: `${ID}-inet`, backend: `${ID}-app` };
const PROXY = `${ID}-proxy`;
const ECHO = `${ID}-echo`;
/** The visitor Cloudflare names, and an address a client claims for itself. */
const VISITOR = "198.51.100.7";
const FORGED = "203.0.113.66";
/** The CSP the app sets itself on paths containing /own, and the one the stack sets on /strict. */
const APP_CSP = "default-src 'self' https://cdn.example.test";
const STRICT_CSP = "default-src 'none'";

/** Answers every GET with the request's headers (lower-case names) and the peer's address, as JSON. */
const ECHO_SERVER = `
import http.server, json
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        seen = {k.lower(): v for k, v in self.headers.items()}
        seen["peer"] = self.client_address[0]
        body = json.dumps(seen).encode()
        self.send_response(200)
        if "/own" in self.path:
            self.send_header("Content-Security-Policy", "${APP_CSP}")
            self.send_header("X-Frame-Options", "SAMEORIGIN")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", 3000), H).serve_forever()
`;

/** One HTTPS request for path argv[2] with the headers in argv[1]; prints the client's own address, what the app saw and the response headers. */
const CLIENT = `
import http.client, json, ssl, sys
c = http.client.HTTPSConnection("${HOST}", 443, timeout=10, context=ssl._create_unverified_context())
c.request("GET", sys.argv[2], headers=json.loads(sys.argv[1]))
me = c.sock.getsockname()[0]
r = c.getresponse()
body = r.read().decode()
print(json.dumps({"status": r.status, "self": me, "seen": json.loads(body) if r.status == 200 else body, "headers": [[k.lower(), v] for k, v in r.getheaders()]}))
`;

interface Seen {
    status: number;
    self: string;
    seen: Record<string, string>;
    /** Response headers as received, repeated names kept. */
    headers: [string, string][];
}

let dir = "";
let caddyfileDir = "";
let subnet = "";
const proxyAddress: Record<"cloudflare" | "internet", string> = { cloudflare: "", internet: "" };

function stack(): StackConfig {
    return validateConfig({
        app: { name: "edge", environment: "test" },
        host: { provider: "existing", address: "127.0.0.1", hostKey: HOST_KEY, sshAllowedCidrs: ["172.16.0.0/12"] },
        sshPrivateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nnever-used\n-----END OPENSSH PRIVATE KEY-----\n",
        dns: { provider: "none", zone: "example.test" },
        tls: { mode: "internal" },
        services: { web: { image: "onebox-test/web:1", port: 3000, health: { path: "/health" } } },
        routes: [
            { host: HOST, service: "web" },
            { host: HOST, path: "/strict", service: "web", headers: { contentSecurityPolicy: STRICT_CSP, overrideAppHeaders: true } },
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

/** A request from a fresh client container on `net` (so from an address on that network). */
function request(net: "cloudflare" | "internet", headers: Record<string, string>, urlPath = "/"): Seen {
    const out = docker("run", "--rm", "--network", NET[net], "--add-host", `${HOST}:${proxyAddress[net]}`, PYTHON_IMAGE, "python3", "-c", CLIENT, JSON.stringify(headers), urlPath);
    return JSON.parse(out) as Seen;
}

/** Installs a Caddyfile and reloads the proxy (graceful, through its admin API inside the container). */
function install(caddyfile: string): void {
    fs.writeFileSync(path.join(caddyfileDir, "Caddyfile"), caddyfile);
    docker("exec", PROXY, "caddy", "reload", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile");
}

before(() => {
    for (const image of [CADDY_IMAGE, OLD_CADDY_IMAGE, PYTHON_IMAGE]) {
        const r = spawnSync("docker", ["image", "inspect", image], { stdio: "ignore" });
        assert.equal(r.status, 0, `${image} is missing: run ${path.relative(ROOT, path.join(ROOT, "tests/host/fixture"))}/stack-images.sh and caddy-image.sh`);
    }
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "onebox-cip-"));
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
    // The internal CA issues the site certificate at start: wait (bounded) for the first answer.
    let last = "";
    for (let i = 0; i < 30; i++) {
        try {
            if (request("cloudflare", {}).status === 200) return;
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

test("the two clients really come from two different networks, and only the first is inside the trusted range", () => {
    const a = request("cloudflare", {});
    const b = request("internet", {});
    assert.notEqual(a.self, b.self);
    assert.equal(a.seen["x-real-ip"], a.self);
    assert.equal(b.seen["x-real-ip"], b.self);
});

test("from the trusted range, CF-Connecting-IP names the client: the app sees the visitor in X-Forwarded-For and X-Real-IP", () => {
    const r = request("cloudflare", { "CF-Connecting-IP": VISITOR, "X-Forwarded-For": FORGED });
    assert.equal(r.status, 200);
    assert.equal(r.seen["x-forwarded-for"], VISITOR);
    assert.equal(r.seen["x-real-ip"], VISITOR);
    assert.equal(r.seen["cf-connecting-ip"], undefined, "the header is consumed, not passed on");
});

test("from the trusted range without CF-Connecting-IP, X-Forwarded-For is not believed", () => {
    const r = request("cloudflare", { "X-Forwarded-For": FORGED, "X-Real-IP": FORGED });
    assert.equal(r.seen["x-forwarded-for"], r.self);
    assert.equal(r.seen["x-real-ip"], r.self);
});

test("from another source the same headers are ignored: the client is the connection's own address", () => {
    const r = request("internet", { "CF-Connecting-IP": VISITOR, "X-Forwarded-For": VISITOR, "X-Real-IP": VISITOR, "True-Client-IP": VISITOR, Forwarded: `for=${VISITOR}` });
    assert.equal(r.status, 200);
    assert.equal(r.seen["x-forwarded-for"], r.self);
    assert.equal(r.seen["x-real-ip"], r.self);
    for (const h of ["cf-connecting-ip", "true-client-ip", "forwarded"]) {
        assert.equal(r.seen[h], undefined, `${h} reached the app`);
    }
});

test("the access log records the visitor Cloudflare named, not Cloudflare's address", () => {
    request("cloudflare", { "CF-Connecting-IP": VISITOR });
    const log = docker("exec", PROXY, "cat", `/var/log/caddy/${HOST}.log`);
    const entries = log.split("\n").filter(Boolean).map((l) => JSON.parse(l) as { request: { client_ip?: string; remote_ip: string } });
    assert.ok(entries.some((e) => e.request.client_ip === VISITOR && e.request.remote_ip !== VISITOR), log.slice(-2000));
});

/** Every value of one response header. */
function valuesOf(r: Seen, name: string): string[] {
    return r.headers.filter(([k]) => k === name).map(([, v]) => v);
}

test("headers: where the app sets none the proxy adds the stack's; Server is removed", () => {
    const r = request("internet", {}, "/");
    assert.deepEqual(valuesOf(r, "content-security-policy"), [stack().proxy.contentSecurityPolicy]);
    assert.deepEqual(valuesOf(r, "x-frame-options"), ["DENY"]);
    assert.deepEqual(valuesOf(r, "x-content-type-options"), ["nosniff"]);
    assert.deepEqual(valuesOf(r, "strict-transport-security"), ["max-age=31536000"]);
    assert.deepEqual(valuesOf(r, "server"), []);
});

test("headers: the app's own CSP and frame options are kept (once), the missing ones added", () => {
    const r = request("internet", {}, "/own");
    assert.deepEqual(valuesOf(r, "content-security-policy"), [APP_CSP]);
    assert.deepEqual(valuesOf(r, "x-frame-options"), ["SAMEORIGIN"]);
    assert.deepEqual(valuesOf(r, "x-content-type-options"), ["nosniff"]);
});

test("headers: a route told to override replaces the app's with its own CSP (one header, not two)", () => {
    const r = request("internet", {}, "/strict/own");
    assert.equal(r.status, 200);
    assert.deepEqual(valuesOf(r, "content-security-policy"), [STRICT_CSP]);
    assert.deepEqual(valuesOf(r, "x-frame-options"), ["DENY"]);
});

test("a stack not behind Cloudflare trusts nobody: even the first network's CF-Connecting-IP is ignored", () => {
    install(renderCaddyfile(stack(), "edge-test"));
    const r = request("cloudflare", { "CF-Connecting-IP": VISITOR, "X-Forwarded-For": VISITOR });
    assert.equal(r.seen["x-forwarded-for"], r.self);
    assert.equal(r.seen["x-real-ip"], r.self);
    assert.equal(r.seen["cf-connecting-ip"], undefined);
});

test("the untrusting Caddyfile still loads in Debian's Caddy 2.6 (the end-to-end suite's proxy image)", () => {
    const r = spawnSync(
        "docker",
        ["run", "--rm", "-v", `${caddyfileDir}:/etc/caddy:ro`, "--entrypoint", "caddy", OLD_CADDY_IMAGE, "adapt", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"],
        { encoding: "utf8", timeout: 60_000 },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /"X-Real-Ip":\["\{http\.request\.remote\.host\}"\]/);
});
