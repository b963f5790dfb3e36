/**
 * H13 on a real Docker engine: the networks of the rendered compose model,
 * created as the model defines them (internal flags, driver options), with one
 * container per service attached exactly to the service's networks under its
 * name. Then TCP connections between them, by name as the app would open them.
 *
 * - only `database: true` services reach PostgreSQL, only `redis: true` ones Redis;
 * - the proxy reaches only routed services;
 * - app services reach each other by name, whichever shared network Docker's DNS
 *   answers with (jobs and api share `egress` and `internal`: with traffic between
 *   containers off on `egress`, the name resolved to the egress address and the
 *   connection timed out).
 *
 * Egress, and that a service without it cannot reach the host's own addresses
 * (the firewall rule for internal bridges), need the bootstrapped server's
 * firewall and a world outside the host: tests/host/e2e.test.ts checks them.
 *
 * The stand-ins listen on the services' ports (python3's http.server): what is
 * tested is who can open a connection to whom, which the networks alone decide.
 *
 *   flock -w 3600 /tmp/onebox-host-suite.lock node --import tsx --test --test-concurrency=1 tests/host/network-isolation.test.ts
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { validateConfig } from "../../components/config/load";
import { composeModel } from "../../components/provisioning/render/compose";
import { appPaths } from "../../components/provisioning/paths";
import { sh } from "./lib/harness";
import { HOST_KEY } from "../unit/provisioning/fixtures";

const IMAGE = "onebox-test/python:latest";
const ID = `onebox-h13-${randomBytes(3).toString("hex")}`;

interface Service {
    networks?: string[];
}
interface Model {
    services: Record<string, Service>;
    networks: Record<string, { internal?: boolean; driver_opts?: Record<string, string>; external?: boolean }>;
}

const { config } = validateConfig({
    app: { name: "iso", environment: "test" },
    host: { provider: "existing", address: "127.0.0.1", hostKey: HOST_KEY, sshAllowedCidrs: ["172.16.0.0/12"] },
        sshPrivateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nnever-used\n-----END OPENSSH PRIVATE KEY-----\n",
    dns: { provider: "none", zone: "example.test" },
    tls: { mode: "internal" },
    services: {
        api: { image: "onebox-test/python:1", port: 8000, health: { path: "/health" }, database: true },
        web: { image: "onebox-test/python:1", port: 3000, health: { path: "/health" }, egress: false },
        jobs: { image: "onebox-test/python:1", health: { command: ["true"] }, redis: true },
    },
    routes: [
        { host: "app.example.test", service: "web" },
        { host: "app.example.test", path: "/api", service: "api" },
    ],
    redis: { enabled: true },
});
// The project names the internal bridges (obi-<hash>): one of its own per run.
const model = composeModel(config, { project: ID, paths: appPaths(ID, "/mnt/data") }) as unknown as Model;
/** Port each stand-in listens on. */
const PORT: Record<string, number> = { proxy: 443, postgres: 5432, redis: 6379, api: 8000, web: 3000, jobs: 9000 };

const containers: string[] = [];
const networks: string[] = [];

function docker(...args: string[]): string {
    return sh("docker", args, { timeoutMs: 120_000 }).trim();
}

function cleanup(): void {
    for (const c of containers) spawnSync("docker", ["rm", "-f", c], { stdio: "ignore" });
    for (const n of networks) spawnSync("docker", ["network", "rm", n], { stdio: "ignore" });
}
process.on("exit", cleanup);

/** Whether `from` opens a TCP connection to host:port within 3 s. */
function connects(from: string, host: string, port: number): boolean {
    const r = spawnSync("docker", ["exec", `${ID}-${from}`, "python3", "-c", `import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 3)`, host, String(port)], { timeout: 30_000 });
    return r.status === 0;
}

before(() => {
    assert.equal(spawnSync("docker", ["image", "inspect", IMAGE], { stdio: "ignore" }).status, 0, `${IMAGE} is missing: run tests/host/fixture/stack-images.sh`);
    for (const [name, def] of Object.entries(model.networks)) {
        assert.ok(!def.external, "no external network in this stack");
        const args = ["network", "create"];
        if (def.internal) args.push("--internal");
        for (const [k, v] of Object.entries(def.driver_opts ?? {})) args.push("-o", `${k}=${v}`);
        docker(...args, `${ID}-${name}`);
        networks.push(`${ID}-${name}`);
    }
    for (const [name, svc] of Object.entries(model.services)) {
        const nets = svc.networks ?? [];
        assert.ok(nets.length > 0, `${name} has networks`);
        const c = `${ID}-${name}`;
        docker("run", "-d", "--name", c, "--network", `${ID}-${nets[0]}`, "--network-alias", name, IMAGE, "python3", "-m", "http.server", String(PORT[name]));
        containers.push(c);
        for (const n of nets.slice(1)) docker("network", "connect", "--alias", name, `${ID}-${n}`, c);
    }
    // Bounded wait until every stand-in listens (checked from inside itself).
    for (const name of Object.keys(model.services)) {
        let ok = false;
        for (let i = 0; i < 20 && !ok; i++) {
            ok = connects(name, "127.0.0.1", PORT[name]);
            if (!ok) spawnSync("sleep", ["0.5"]);
        }
        assert.ok(ok, `${name} never listened`);
    }
});

after(() => {
    cleanup();
});

test("the stack has the services and networks the checks below rely on", () => {
    assert.deepEqual(Object.keys(model.services).sort(), ["api", "jobs", "postgres", "proxy", "redis", "web"]);
    assert.deepEqual(Object.keys(model.networks).sort(), ["database", "edge", "egress", "internal", "redis", "web"]);
});

test("only the service with database: true reaches PostgreSQL", () => {
    assert.equal(connects("api", "postgres", PORT.postgres), true, "api (database: true)");
    assert.equal(connects("web", "postgres", PORT.postgres), false, "web");
    assert.equal(connects("jobs", "postgres", PORT.postgres), false, "jobs");
    assert.equal(connects("proxy", "postgres", PORT.postgres), false, "proxy");
});

test("only the service with redis: true reaches Redis", () => {
    assert.equal(connects("jobs", "redis", PORT.redis), true, "jobs (redis: true)");
    assert.equal(connects("api", "redis", PORT.redis), false, "api");
    assert.equal(connects("web", "redis", PORT.redis), false, "web");
});

test("the proxy reaches the routed services and nothing else", () => {
    assert.equal(connects("proxy", "web", PORT.web), true);
    assert.equal(connects("proxy", "api", PORT.api), true);
    assert.equal(connects("proxy", "jobs", PORT.jobs), false, "an unrouted worker");
});

test("app services reach each other by name, over whichever network they share", () => {
    // jobs and api share egress and internal, web and api share internal and web.
    assert.equal(connects("jobs", "api", PORT.api), true, "jobs -> api");
    assert.equal(connects("web", "api", PORT.api), true, "web -> api");
    assert.equal(connects("api", "jobs", PORT.jobs), true, "api -> jobs");
    assert.equal(connects("api", "web", PORT.web), true, "api -> web");
});

test("internal networks sit on bridges named obi-<hash> (what the host firewall drops to the host)", () => {
    for (const [name, def] of Object.entries(model.networks)) {
        const bridge = docker("network", "inspect", "-f", '{{index .Options "com.docker.network.bridge.name"}}', `${ID}-${name}`);
        if (def.internal) assert.match(bridge, /^obi-[0-9a-f]{11}$/, name);
        else assert.doesNotMatch(bridge, /^obi-/, name);
    }
});
