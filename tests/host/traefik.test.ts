/**
 * Plan 004 (FingerFlow) on a real (container) server: an existing server that already
 * runs Traefik on the external Docker network "proxy", publishing 443. The stack is the
 * example's own stack file (examples/004-fingerflow), with only what the fixture needs
 * swapped: the server's address and host key, the test images, PostgreSQL 17, uploaded
 * images instead of the registry, the backups endpoint. Traefik is the stand-in of
 * tests/host/fixture/images/traefik-standin (a Caddy routed by the containers' Traefik
 * labels, like Traefik's Docker provider), started BEFORE the first deploy.
 *
 * - the deploy requests every route through the stand-in (found on "proxy" by its
 *   published 443, reached on 127.0.0.1:443 with Docker's userland-proxy off) and goes
 *   live; every route answers through it, from outside the server, with the stack's
 *   security headers; the stand-in is never restarted (H14);
 * - a release whose routers Traefik does not serve (a wrong entrypoint) fails the deploy
 *   naming the route, and the previous release serves again through the stand-in.
 *
 *   flock -w 3600 /tmp/onebox-host-suite.lock node --import tsx --test --test-concurrency=1 tests/host/traefik.test.ts
 *
 * Needs onebox-test/fresh-server, the stack images and onebox-test/traefik-standin
 * (scripts/test.sh builds them); skips without them unless ONEBOX_REQUIRE_TOOLS=1.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import type { StackConfig } from "../../components/config/schema";
import { exampleStacks } from "../../scripts/examples";
import { exampleConfig } from "../helpers/run-example";
import { curl, e2eConfig, e2eSteps, fixtureHost, runSteps, StepError, waitFor, type StepRun, type TriggerState } from "./lib/harness";
import { Fixture, installAdminDocker, loadImage } from "./lib/fixture";
import type { StepName } from "../../components/provisioning/steps";

const NAME = "onebox-traefik-r6t1";
const PORTS = { ssh: 2342, http: 18342, https: 18442 };
const STANDIN = "traefik";
const STANDIN_IMAGE = "onebox-test/traefik-standin:latest";
const HOST = "app.fingerflow.example";
const PROJECT = "fingerflow-prod";
/** The steps up to the deploy: backups and jobs are other files' business. */
const STEPS: StepName[] = ["wait-ready", "bootstrap", "secrets", "images", "deploy"];
/**
 * The admin's own daemon settings from before the stack: already what the stack needs
 * but live-restore (applied by a reload), so the bootstrap never restarts Docker under
 * Traefik. userland-proxy is off: no docker-proxy listens on 443, the kernel forwards.
 */
const ADMIN_DAEMON = {
    "log-driver": "json-file",
    "log-opts": { "max-size": "10m", "max-file": "3" },
    "no-new-privileges": true,
    "userland-proxy": false,
};

const fx = new Fixture({ name: NAME, ports: PORTS, images: ["onebox-test/api:1", "onebox-test/web:1", "onebox-test/postgres:17", STANDIN_IMAGE] });
const SKIP = fx.skip;

const state: TriggerState = {};
const rand = (n: number) => createHash("sha256").update(`${Math.random()}${process.hrtime.bigint()}`).digest("hex").slice(0, n);
const secrets: Record<string, string> = {
    POSTGRES_PASSWORD: rand(32),
    SESSION_SECRET: rand(48),
    CSRF_SECRET: rand(48),
    BACKUP_S3_ACCESS_KEY_ID: "S3RVER",
    BACKUP_S3_SECRET_ACCESS_KEY: "S3RVER",
};
let firstRuns: StepRun[] = [];


const root = (body: string, timeoutMs?: number) => fx.root(body, timeoutMs);

/** The example's stack file as Pulumi hands it to the program (README secrets as stand-ins), as plain objects. */
function exampleRaw(): Record<string, unknown> {
    const stack = exampleStacks().find((s) => s.example === "004-fingerflow" && s.stack === "prod");
    assert.ok(stack, "examples/004-fingerflow/Pulumi.prod.yaml");
    const raw: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(exampleConfig(stack))) {
        const key = k.replace(/^onebox:/, "");
        try {
            raw[key] = JSON.parse(v) as unknown;
        } catch {
            raw[key] = v;
        }
    }
    return raw;
}

type Obj = Record<string, unknown>;

/**
 * Plan 004 as written, with only what the fixture needs swapped. `entrypoint` overrides
 * proxy.traefikEntrypoint (the failing release); `note` changes the backend (a new release).
 */
function fingerflowConfig(opts: { entrypoint?: string; note?: string } = {}): StackConfig {
    const raw = exampleRaw();
    const proxy = raw.proxy as Obj;
    assert.equal(proxy.kind, "traefik-external");
    assert.equal(proxy.externalNetwork, "proxy");
    if (opts.entrypoint) proxy.traefikEntrypoint = opts.entrypoint;
    // The backup status server behind Traefik runs the proxy image: the suite's Caddy build.
    proxy.image = "onebox-test/caddy:latest";
    // The fixture server: sshd on its own port 22, reached through Docker's port publishing.
    raw.host = { ...(raw.host as Obj), ...fixtureHost(fx.keys.hostPub) };
    const services = raw.services as Record<string, Obj>;
    // The suite's images: the API (port 8000, /health answers 200 when PostgreSQL does) and
    // the static frontend (port 3000, non-root: it needs none of nginx's capabilities).
    services.backend = { ...services.backend, image: "onebox-test/api:1", memoryMb: 128, env: { ...(services.backend.env as Obj), ...(opts.note ? { RELEASE_NOTE: opts.note } : {}) } };
    const frontend: Obj = { ...services.frontend, image: "onebox-test/web:1", port: 3000 };
    delete frontend.capAdd;
    delete frontend.user;
    services.frontend = frontend;
    raw.database = { ...(raw.database as Obj), version: 17, image: "onebox-test/postgres:17", memoryMb: 192 };
    // Images are uploaded from this machine (there is no registry here); the rest as written.
    raw.deploy = { ...(raw.deploy as Obj), imageSource: "upload", registries: [], healthTimeoutSeconds: 60 };
    delete (raw.secrets as Obj).REGISTRY_TOKEN;
    raw.sshPrivateKey = "-----BEGIN OPENSSH PRIVATE KEY-----\nharness\n-----END OPENSSH PRIVATE KEY-----\n";
    return e2eConfig(raw);
}

function stepsFor(config: StackConfig) {
    // The backups endpoint is the in-server S3 of the other files (no backup runs here).
    return e2eSteps(config, 4569).filter((s) => STEPS.includes(s.name));
}

interface Standin {
    id: string;
    startedAt: string;
    pid: string;
}

async function standin(): Promise<Standin> {
    const [id, startedAt, pid] = (await root(`docker inspect -f '{{.Id}} {{.State.StartedAt}} {{.State.Pid}}' ${STANDIN}`)).trim().split(" ");
    return { id, startedAt, pid };
}

/** One request from this machine through the server's published 443 (outside the server), headers only. */
async function fromOutside(urlPath: string): Promise<{ code: string; headers: string }> {
    const r = await curl(HOST, PORTS.https, urlPath, ["-D", "-", "-o", "/dev/null"]);
    const code = /^HTTP\/\S+ (\d{3})/m.exec(r.stdout)?.[1] ?? `none (curl ${r.code}: ${r.stderr.trim()})`;
    return { code, headers: r.stdout };
}

/** The stack's security headers, as the example's proxy settings and the defaults give them. */
function assertSecurityHeaders(headers: string, where: string): void {
    assert.match(headers, /^x-content-type-options: nosniff\r?$/im, where);
    assert.match(headers, /^strict-transport-security: max-age=31536000\r?$/im, where);
    assert.match(headers, /^x-frame-options: DENY\r?$/im, where);
    assert.match(headers, /^referrer-policy: strict-origin-when-cross-origin\r?$/im, where);
    assert.match(headers, /^content-security-policy: default-src 'self'; frame-ancestors 'none'; object-src 'none'; base-uri 'self'\r?$/im, where);
}

/** Every route of the plan answers through the stand-in, from outside, with the stack's headers. */
async function assertRoutesServed(): Promise<void> {
    for (const [urlPath, want] of [["/", /^200$/], ["/health", /^200$/], ["/api/items", /^[234]\d\d$/], ["/auth/login", /^[234]\d\d$/]] as const) {
        const r = await fromOutside(urlPath);
        assert.match(r.code, want, `${HOST}${urlPath} through the stand-in:\n${r.headers}`);
        assertSecurityHeaders(r.headers, `${HOST}${urlPath}`);
    }
    // The backend, not the frontend, serves /health (the longer rule wins).
    const health = await curl(HOST, PORTS.https, "/health");
    assert.match(health.stdout, /"status":\s*"ok"/);
}

fx.use(async () => {
    // The server as its admin left it: Docker from the distribution, their daemon.json,
    // the external network "proxy" and Traefik on it publishing 443 (plan 004).
    await installAdminDocker(fx.server, ADMIN_DAEMON, "docker network create proxy >/dev/null");
    loadImage(fx.server, STANDIN_IMAGE);
    await root(`docker run -d --name ${STANDIN} --restart unless-stopped --network proxy -p 443:443 \
  -v /var/run/docker.sock:/var/run/docker.sock:ro -e STANDIN_NETWORK=proxy -e STANDIN_ENTRYPOINT=websecure ${STANDIN_IMAGE} >/dev/null`);
    await waitFor("the stand-in serves (its 404: no router yet)", async () => (await fx.server.script("curl -sk -o /dev/null -w '%{http_code}' --max-time 5 https://127.0.0.1/")).stdout === "404", 60_000);
}, 900_000);

test("H14/H8/H4 the first deploy requests every route through the existing Traefik and goes live; it keeps running", { skip: SKIP, timeout: 1_200_000 }, async () => {
    const before = await standin();
    firstRuns = await runSteps(fx.server, stepsFor(fingerflowConfig()), secrets, state);
    assert.deepEqual(firstRuns.map((r) => [r.name, r.ran]), STEPS.map((s) => [s, true]));
    const boot = firstRuns.find((r) => r.name === "bootstrap")!.stdout;
    assert.doesNotMatch(boot, /restarting docker/, "Docker is not restarted under Traefik");
    const deploy = firstRuns.find((r) => r.name === "deploy")!.stdout;
    assert.match(deploy, /route checks through traefik on proxy\.externalNetwork proxy \(127\.0\.0\.1:443\)/);
    // Every route of the plan was requested through Traefik, with the health path for the backend's own /health.
    for (const url of [`https://${HOST}/api`, `https://${HOST}/auth`, `https://${HOST}/health`, `https://${HOST}/`]) {
        assert.match(deploy, new RegExp(`route ok: ${url.replace(/[.]/g, "\\.")} answered \\d{3}`), url);
    }
    // The stand-in's certificate is its own internal CA's: routing checked, certificate warned about.
    assert.match(firstRuns.find((r) => r.name === "deploy")!.stderr, /warning: https:\/\/app\.fingerflow\.example\/health: this host does not trust the certificate Traefik serves .*; the routing was checked without verifying it/);
    assert.match(deploy, /release [0-9a-f]{12} is live/);
    assert.deepEqual(await standin(), before, "the existing Traefik was not restarted (same container, start and process)");
    // The stack brought no proxy and published nothing; its routed services joined "proxy".
    const ps = await root(`docker ps --filter label=com.docker.compose.project=${PROJECT} --format '{{.Label "com.docker.compose.service"}} {{.Ports}}'`);
    assert.doesNotMatch(ps, /->/, `the stack publishes no port:\n${ps}`);
    assert.doesNotMatch(ps, /^caddy /m);
    const onProxy = (await root("docker network inspect proxy -f '{{range .Containers}}{{.Name}} {{end}}'")).trim().split(/\s+/).sort();
    assert.ok(onProxy.includes(STANDIN) && onProxy.some((n) => n.includes("backend")) && onProxy.some((n) => n.includes("frontend")), onProxy.join(" "));
    assert.ok(!onProxy.some((n) => n.includes("postgres")), "PostgreSQL stays off the shared network (H13)");
    await assertRoutesServed();
});

test("userland-proxy false: 127.0.0.1:443 reaches the published Traefik through Docker's NAT, no userland proxy serves it", { skip: SKIP, timeout: 120_000 }, async () => {
    assert.equal((await root("jq -r '.\"userland-proxy\"' /etc/docker/daemon.json")).trim(), "false");
    const proxies = await root("pgrep -a docker-proxy || true");
    assert.equal(proxies.trim(), "", "no docker-proxy process runs");
    // dockerd only holds the host port (a reservation that never accepts): no process of the host serves 443.
    const listeners = (await root("ss -Htlnp 'sport = :443'")).trim().split("\n").filter((l) => l !== "");
    for (const l of listeners) assert.match(l, /users:\(\("dockerd",/, `only dockerd's reservation of the port:\n${listeners.join("\n")}`);
    // Locally sent packets to 127.0.0.1:443 are DNATed to the stand-in's address on "proxy".
    const ip = (await root(`docker inspect -f '{{(index .NetworkSettings.Networks "proxy").IPAddress}}' ${STANDIN}`)).trim();
    assert.match(ip, /^\d+\.\d+\.\d+\.\d+$/);
    const nat = await root("iptables-save -t nat");
    assert.match(nat, /^-A OUTPUT -m addrtype --dst-type LOCAL -j DOCKER$/m, "the OUTPUT hook covers loopback (the userland-proxy false form)");
    assert.match(nat, new RegExp(`^-A DOCKER .*--dport 443 -j DNAT --to-destination ${ip.replace(/[.]/g, "\\.")}:443$`, "m"));
    // The answer (TLS and HTTP, with the stack's headers) can only come from the stand-in.
    const r = await root(`curl -sk -D - -o /dev/null --max-time 10 --resolve ${HOST}:443:127.0.0.1 https://${HOST}/health`);
    assert.match(r, /^HTTP\/\S+ 200/m);
    assert.match(r, /^x-content-type-options: nosniff\r?$/im);
});

test("H14 a re-deploy goes live through Traefik and restarts nothing of it", { skip: SKIP, timeout: 900_000 }, async () => {
    const before = await standin();
    const runs = await runSteps(fx.server, stepsFor(fingerflowConfig({ note: "second" })), secrets, state);
    assert.deepEqual(runs.filter((r) => r.ran).map((r) => r.name), ["deploy"]);
    const deploy = runs.find((r) => r.name === "deploy")!.stdout;
    assert.match(deploy, new RegExp(`route ok: https://${HOST.replace(/[.]/g, "\\.")}/health answered 200`));
    assert.match(deploy, /release [0-9a-f]{12} is live/);
    assert.deepEqual(await standin(), before);
    await assertRoutesServed();
});

test("a release Traefik does not route (wrong entrypoint) fails naming the route; the previous release serves again through Traefik", { skip: SKIP, timeout: 900_000 }, async () => {
    const before = await standin();
    const current = (await root("readlink -f /srv/onebox/fingerflow-prod/current")).trim();
    const err = await runSteps(fx.server, stepsFor(fingerflowConfig({ note: "second", entrypoint: "web" })), secrets, state).then(
        () => undefined,
        (e: unknown) => e,
    );
    assert.ok(err instanceof StepError, `the deploy must fail, got ${String(err)}`);
    assert.equal(err.step, "deploy");
    const out = `${err.result.stdout}\n${err.result.stderr}`;
    assert.match(out, new RegExp(`route https://${HOST.replace(/[.]/g, "\\.")}/\\S* answered 404 through traefik \\(127\\.0\\.0\\.1:443\\) on proxy\\.externalNetwork proxy without this stack's headers`));
    assert.equal((await root("readlink -f /srv/onebox/fingerflow-prod/current")).trim(), current, "current still points at the previous release");
    // The previous release's containers (entrypoint websecure) are back, and Traefik routes them again.
    await waitFor("the previous release serves through the stand-in", async () => (await fromOutside("/health")).code === "200", 60_000);
    const labels = await root(`docker ps --filter label=com.docker.compose.project=${PROJECT} --filter label=com.docker.compose.service=backend --format '{{.Labels}}'`);
    assert.match(labels, /entrypoints=websecure/);
    assert.doesNotMatch(labels, /entrypoints=web(,|$)/);
    await assertRoutesServed();
    assert.deepEqual(await standin(), before);
});
