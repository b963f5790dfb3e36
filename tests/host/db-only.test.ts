/**
 * A database-only server (plan 001, Chronos: the frontend is hosted elsewhere) on a real
 * (container) server: no service, no route, PostgreSQL published to one listed address.
 * The program's own steps must deploy it with no proxy container, ufw must open neither
 * 80 nor 443 (H4, H8, F1), PostgreSQL must answer over TLS from the listed address and
 * not from another one, and a backup must run and report its freshness without a proxy:
 * the heartbeat is pinged and the status file the outputs name says "ok" (B3).
 *
 *   flock -w 3600 /tmp/onebox-host-suite.lock node --import tsx --test --test-concurrency=1 tests/host/db-only.test.ts
 *
 * Needs what e2e.test.ts needs (onebox-test/fresh-server, onebox-test/postgres:17,
 * onebox-test/python, s3rver, psql and openssl on this machine); skips without the
 * images unless ONEBOX_REQUIRE_TOOLS=1.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { backupsOutputs } from "../../components/outputs/contract";
import type { StackConfig } from "../../components/config/schema";
import { databaseCertificates, e2eConfig, e2eRawConfig, e2eSecrets, e2eSteps, runSteps, sh, type StepRun, type TriggerState } from "./lib/harness";
import { Fixture } from "./lib/fixture";
import { tcpConnect, ufwRuleLines } from "./lib/checks";

const NAME = "onebox-dbonly-r5t2";
const PORTS = { ssh: 2341, http: 18341, https: 18441 };
const PROJECT = "shop-e2e";
const HOOK_PORT = 4601;

const fx = new Fixture({ name: NAME, ports: PORTS, images: ["onebox-test/postgres:17", "onebox-test/python"], s3: {}, hook: { port: HOOK_PORT, recordGets: true } });
const SKIP = fx.skip;

let secrets: Record<string, string> = {};
let config: StackConfig;
let runs: StepRun[] = [];
let serverIp = "";
let gateway = "";
const state: TriggerState = {};

const root = (body: string, timeoutMs?: number) => fx.root(body, timeoutMs);

/** The database-only stack: the suite's stack without services or routes, PostgreSQL published to `allowed`. */
function databaseOnlyConfig(allowed: string): StackConfig {
    const raw = e2eRawConfig(PORTS, fx.keys.hostPub, { databaseAllowedCidrs: [allowed] });
    raw.services = {};
    delete raw.routes;
    raw.generatedSecrets = [];
    raw.backups = {
        ...(raw.backups as Record<string, unknown>),
        // The heartbeat receiver listens inside the server (loopback, no certificate): the private-relay opt-in.
        heartbeatUrl: `http://127.0.0.1:${HOOK_PORT}/ping/db-only`,
        allowPlainHttpHooks: true,
        drill: { schedule: (raw.backups as { drill: { schedule: string } }).drill.schedule },
    };
    return e2eConfig(raw);
}

fx.use(async () => {
    serverIp = fx.server.ip();
    // This machine reaches the server from its bridge's gateway: the one listed address.
    gateway = sh("docker", ["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.Gateway}} {{end}}", NAME]).trim().split(/\s+/)[0];
    const tls = databaseCertificates(fx.dir, serverIp);
    secrets = { ...e2eSecrets(), POSTGRES_TLS_CERT: tls.cert, POSTGRES_TLS_KEY: tls.key };
    config = databaseOnlyConfig(`${gateway}/32`);
    runs = await runSteps(fx.server, e2eSteps(config, fx.s3.port), secrets, state);
}, 900_000);

test("deploys with no proxy: PostgreSQL is the stack's only container and nothing publishes 80/443 (H8)", { skip: SKIP, timeout: 120_000 }, async () => {
    assert.deepEqual(runs.map((r) => r.name), ["wait-ready", "bootstrap", "secrets", "images", "deploy", "backup", "jobs"]);
    assert.match(runs.find((r) => r.name === "deploy")?.stdout ?? "", /release [0-9a-f]{12} is live/);
    const containers = (await root(`docker ps --filter label=com.docker.compose.project=${PROJECT} --format '{{.Label "com.docker.compose.service"}}'`)).trim().split("\n");
    assert.deepEqual(containers, ["postgres"]);
    const ports = await root("docker ps --format '{{.Names}} {{.Ports}}'");
    assert.doesNotMatch(ports, /:(80|443)->/, `no container publishes 80 or 443:\n${ports}`);
    assert.match(ports, /0\.0\.0\.0:5432->5432\/tcp/);
    const release = (await root("readlink -f /srv/onebox/shop-e2e/current")).trim();
    assert.match(release, /^\/srv\/onebox\/shop-e2e\/releases\/[0-9a-f]{12}$/);
    assert.deepEqual((await root(`ls ${release}`)).trim().split("\n").sort(), ["compose.yaml", "release.manifest"], "the release has no Caddyfile");
});

test("H4/F1: ufw allows SSH from the admin range and PostgreSQL from the listed address, nothing on 80/443", { skip: SKIP, timeout: 120_000 }, async () => {
    const status = await root("ufw status verbose");
    assert.match(status, /^Status: active$/m);
    assert.deepEqual(ufwRuleLines(status), ["22/tcp ALLOW IN 172.16.0.0/12", `5432/tcp ALLOW IN ${gateway}`]);
    // From this machine (the listed address) to the server's address: 443 and 80 are not served.
    for (const port of [80, 443]) {
        assert.notEqual(await tcpConnect(serverIp, port, 4000), "connected", `port ${port}`);
    }
});

test("PostgreSQL answers over TLS from the listed address and is dropped for any other", { skip: SKIP, timeout: 180_000 }, () => {
    const psql = spawnSync("psql", ["-X", "-tA", "-c", "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", `host=${serverIp} port=5432 dbname=shop user=shop connect_timeout=5 sslmode=verify-full sslrootcert=${fx.dir}/ca.pem`], {
        encoding: "utf8",
        env: { PATH: process.env.PATH, PGPASSWORD: secrets.POSTGRES_PASSWORD },
        timeout: 30_000,
    });
    assert.equal(psql.status, 0, psql.stderr);
    assert.equal(psql.stdout.trim(), "t", "the session is encrypted");
    // Another container on this machine's Docker bridge has another address: DOCKER-USER drops it.
    const probe = spawnSync(
        "docker",
        ["run", "--rm", "--network", "bridge", "onebox-test/python:latest", "python3", "-c",
            `import socket\ntry:\n    socket.create_connection(("${serverIp}", 5432), 4)\n    print("connected")\nexcept OSError as e:\n    print(type(e).__name__)`],
        { encoding: "utf8", timeout: 90_000 },
    );
    assert.equal(probe.status, 0, probe.stderr);
    assert.notEqual(probe.stdout.trim(), "connected", "an address outside database.allowedCidrs cannot reach PostgreSQL");
    assert.match(probe.stdout.trim(), /^(TimeoutError|timeout|ConnectionRefusedError)$/);
});

test("B3 without a proxy: a backup runs, pings the heartbeat, and the status file the outputs name says ok", { skip: SKIP, timeout: 240_000 }, async () => {
    const outputs = backupsOutputs(config);
    assert.ok(outputs);
    assert.equal(outputs.statusUrl, null, "no route serves /healthz/backup");
    assert.equal(outputs.heartbeat, true);
    assert.ok(outputs.statusFile);
    assert.deepEqual(fx.hook.requests(), [], "no heartbeat before the first backup");
    await root("systemctl start onebox-shop-e2e-backup.service", 230_000);
    const last = (await root("cat /var/lib/onebox/shop-e2e/backup/LAST_SUCCESS")).trim();
    const key = last.split(" ")[1];
    assert.match(key, /^shop\/e2e\/daily\/shop-\d{8}T\d{6}Z\.dump$/);
    assert.deepEqual(fx.s3.objects("shop/e2e/daily/").map((o) => o.key), [key]);
    const status = JSON.parse(await root(`cat ${outputs.statusFile}`)) as { status: string; lastKey: string };
    assert.equal(status.status, "ok");
    assert.equal(status.lastKey, key);
    const pings = fx.hook.requests();
    assert.deepEqual(pings.map((r) => `${r.method} ${r.url}`), ["GET /ping/db-only"], "one heartbeat per successful backup");
});
