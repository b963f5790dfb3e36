/**
 * Several stacks on one server (issue: examples and existing servers, item 5), on a real
 * (container) server: production and staging of one app, both behind one existing Traefik
 * (the stand-in of tests/host/fixture/images/traefik-standin) on the external network
 * "proxy", each with its own PostgreSQL, API, frontend and backups; staging also publishes
 * its database to one listed address.
 *
 * - both deploy through the program's own steps, each into its own directories, data,
 *   containers, units and lock, and one proxy serves both (H14, H8);
 * - the server's one firewall keeps both stacks' ports when one stack's bootstrap runs
 *   again (H4); run by hand, the bootstrap and the backup scripts ask which stack;
 * - each stack backs up on its own (its units, state, status file and prefix) and restores
 *   from its own backups (B1, B3);
 * - a failing release of staging rolls back staging only: production's containers are the
 *   same, started at the same time;
 * - a third stack whose own proxy would take 443, which Traefik publishes, is refused before
 *   any of its containers exists.
 *
 *   flock -w 3600 /tmp/onebox-host-suite.lock node --import tsx --test --test-concurrency=1 tests/host/stacks.test.ts
 *
 * Needs onebox-test/fresh-server, the stack images and onebox-test/traefik-standin
 * (scripts/test.sh builds them), openssl; skips without them unless ONEBOX_REQUIRE_TOOLS=1.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import type { StackConfig } from "../../components/config/schema";
import type { StepName } from "../../components/provisioning/steps";
import { curl, databaseCertificates, e2eConfig, e2eRawConfig, e2eSecrets, e2eSteps, runSteps, sh, StepError, waitFor, type StepRun, type TriggerState } from "./lib/harness";
import { Fixture, installAdminDocker, loadImage } from "./lib/fixture";
import { tcpConnect, ufwRuleLines } from "./lib/checks";

const NAME = "onebox-stacks-w3k9";
const PORTS = { ssh: 2344, http: 18344, https: 18444 };
const STANDIN = "traefik";
const STANDIN_IMAGE = "onebox-test/traefik-standin:latest";
/** Docker settings the admin already had: what the stacks need but live-restore (a reload), so nothing restarts Traefik. */
const ADMIN_DAEMON = { "log-driver": "json-file", "log-opts": { "max-size": "10m", "max-file": "3" }, "no-new-privileges": true, "userland-proxy": false };

const fx = new Fixture({ name: NAME, ports: PORTS, images: ["onebox-test/api:1", "onebox-test/web:1", "onebox-test/postgres:17", "onebox-test/caddy:latest", STANDIN_IMAGE], commands: ["openssl"], s3: {} });
const SKIP = fx.skip;
const root = (body: string, timeoutMs?: number) => fx.root(body, timeoutMs);

type Env = "prod" | "staging";
type Obj = Record<string, unknown>;

interface Stack {
    env: Env;
    project: string;
    secrets: Record<string, string>;
    state: TriggerState;
    runs: StepRun[];
}

const stacks: Record<Env, Stack> = {
    prod: { env: "prod", project: "shop-prod", secrets: {}, state: {}, runs: [] },
    staging: { env: "staging", project: "shop-staging", secrets: {}, state: {}, runs: [] },
};
let gateway = "";
let serverIp = "";

/**
 * One stack of app `shop`: the suite's stack behind the existing Traefik, its routes on its
 * own hostnames, the API reporting `version`; staging publishes PostgreSQL to this machine.
 */
function stackConfig(env: Env, opts: { version: string; broken?: boolean }): StackConfig {
    const raw = e2eRawConfig(PORTS, fx.keys.hostPub, { databaseAllowedCidrs: env === "staging" ? [`${gateway}/32`] : [] });
    raw.app = { name: "shop", environment: env };
    raw.dns = { provider: "none", zone: "shop.test" };
    raw.tls = { mode: "external" };
    // The backup status server behind Traefik runs the proxy image: the suite's Caddy build.
    raw.proxy = { kind: "traefik-external", externalNetwork: "proxy", traefikEntrypoint: "websecure", image: "onebox-test/caddy:latest" };
    const services = raw.services as Record<string, Obj>;
    services.api = { ...services.api, env: { APP_VERSION: opts.version, ...(opts.broken ? { APP_BROKEN: "1" } : {}) } };
    raw.routes = [
        { host: `api.${env}.shop.test`, service: "api" },
        { host: `${env}.shop.test`, service: "web" },
    ];
    raw.deploy = { ...(raw.deploy as Obj), healthTimeoutSeconds: opts.broken ? 30 : 90 };
    return e2eConfig(raw);
}

function stepsOf(config: StackConfig, only?: StepName[]) {
    return e2eSteps(config, fx.s3.port).filter((s) => !only || only.includes(s.name));
}

/** A request from this machine through the server's published 443 (Traefik), outside the server. */
async function through(host: string, urlPath: string): Promise<{ code: string; body: string }> {
    const r = await curl(host, PORTS.https, urlPath, ["-w", "\n%{http_code}"]);
    const lines = r.stdout.split("\n");
    return { code: lines.pop() ?? "", body: lines.join("\n") };
}

async function apiVersion(env: Env): Promise<string> {
    const r = await through(`api.${env}.shop.test`, "/health");
    assert.equal(r.code, "200", `api.${env}.shop.test/health: ${r.body}`);
    return (JSON.parse(r.body) as { version: string }).version;
}

/** Id and start time of every container of a project, sorted. */
async function containersOf(project: string): Promise<string[]> {
    const ids = (await root(`docker ps -q --filter label=com.docker.compose.project=${project}`)).trim().split("\n").filter(Boolean);
    assert.ok(ids.length > 0, `${project} has containers`);
    return (await root(`docker inspect -f '{{.Name}} {{.Id}} {{.State.StartedAt}}' ${ids.join(" ")}`)).trim().split("\n").sort();
}

fx.use(async () => {
    serverIp = fx.server.ip();
    gateway = sh("docker", ["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.Gateway}} {{end}}", NAME]).trim().split(/\s+/)[0];
    // The server as its admin left it: Docker, the network "proxy" and Traefik on it publishing 443.
    await installAdminDocker(fx.server, ADMIN_DAEMON, "docker network create proxy >/dev/null");
    loadImage(fx.server, STANDIN_IMAGE);
    await root(`docker run -d --name ${STANDIN} --restart unless-stopped --network proxy -p 443:443 \
  -v /var/run/docker.sock:/var/run/docker.sock:ro -e STANDIN_NETWORK=proxy -e STANDIN_ENTRYPOINT=websecure ${STANDIN_IMAGE} >/dev/null`);
    await waitFor("the stand-in serves (its 404: no router yet)", async () => (await fx.server.script("curl -sk -o /dev/null -w '%{http_code}' --max-time 5 https://127.0.0.1/")).stdout === "404", 60_000);
    const tls = databaseCertificates(fx.dir, serverIp);
    stacks.prod.secrets = e2eSecrets();
    stacks.staging.secrets = { ...e2eSecrets(), POSTGRES_TLS_CERT: tls.cert, POSTGRES_TLS_KEY: tls.key };
    for (const s of [stacks.prod, stacks.staging]) {
        s.runs = await runSteps(fx.server, stepsOf(stackConfig(s.env, { version: `${s.env}-1` })), s.secrets, s.state);
    }
}, 1_800_000);

test("H14/H8 two stacks of one app deploy side by side, each in its own directories, data, containers and units, behind one proxy", { skip: SKIP, timeout: 300_000 }, async () => {
    for (const s of [stacks.prod, stacks.staging]) {
        assert.deepEqual(s.runs.map((r) => [r.name, r.ran]), ["wait-ready", "bootstrap", "secrets", "images", "deploy", "backup", "jobs"].map((n) => [n, true]), s.project);
        assert.match(s.runs.find((r) => r.name === "deploy")!.stdout, /release [0-9a-f]{12} is live/);
    }
    // Settings, releases, state and data: one directory per stack, none shared.
    assert.equal((await root("stat -c '%n %a' /etc/onebox/shop-prod /etc/onebox/shop-staging")).trim(), "/etc/onebox/shop-prod 700\n/etc/onebox/shop-staging 700");
    const current = (await root("readlink -f /srv/onebox/shop-prod/current /srv/onebox/shop-staging/current")).trim().split("\n");
    assert.match(current[0], /^\/srv\/onebox\/shop-prod\/releases\/[0-9a-f]{12}$/);
    assert.match(current[1], /^\/srv\/onebox\/shop-staging\/releases\/[0-9a-f]{12}$/);
    assert.notEqual(current[0].split("/").pop(), current[1].split("/").pop(), "different releases");
    for (const project of ["shop-prod", "shop-staging"]) {
        const mounts = JSON.parse(await root(`docker inspect -f '{{json .Mounts}}' ${project}-postgres`)) as { Source: string; Destination: string }[];
        assert.ok(mounts.some((m) => m.Source === `/mnt/data/${project}/postgres` && m.Destination === "/var/lib/postgresql/data"), JSON.stringify(mounts));
        assert.equal((await root(`cat /mnt/data/${project}/postgres/PG_VERSION`)).trim(), "17");
    }
    assert.equal((await root("ls /etc/onebox/*.env /var/lib/onebox/backup /var/lib/onebox/status 2>/dev/null | grep -v data-volume.env || true")).trim(), "", "no per-host leftovers of the single-stack layout");
    // Each stack's own timers are armed.
    assert.equal((await root("systemctl is-active onebox-shop-prod-backup.timer onebox-shop-staging-backup.timer onebox-shop-prod-backup-status.timer onebox-shop-staging-backup-status.timer")).trim(), "active\nactive\nactive\nactive");
    // One proxy: only Traefik publishes 443; of the stacks only staging's database publishes a port.
    const published = (await root("docker ps --format '{{.Names}} {{.Ports}}' | grep -- '->' | sort")).trim().split("\n");
    assert.deepEqual(published.map((l) => l.split(" ")[0]), ["shop-staging-postgres", STANDIN], published.join("\n"));
    // Both stacks answer through it from outside the server, each with its own release.
    assert.equal(await apiVersion("prod"), "prod-1");
    assert.equal(await apiVersion("staging"), "staging-1");
    for (const env of ["prod", "staging"] as const) {
        assert.equal((await through(`${env}.shop.test`, "/")).code, "200", `${env}.shop.test/`);
    }
    // Their data are apart: an item written to production is not in staging.
    const added = await curl("api.prod.shop.test", PORTS.https, "/api/items", ["-X", "POST", "-H", "content-type: application/json", "-d", '{"name":"only-in-prod"}', "-w", "\n%{http_code}"]);
    assert.match(added.stdout, /\n201$/, added.stdout);
    assert.match((await through("api.prod.shop.test", "/api/items")).body, /only-in-prod/);
    assert.equal((await through("api.staging.shop.test", "/api/items")).body, "[]");
});

test("H4 one firewall for both: production's bootstrap run again keeps staging's database port; by hand the bootstrap asks which stack", { skip: SKIP, timeout: 600_000 }, async () => {
    const rules = async () => ufwRuleLines(await root("ufw status verbose"));
    const before = await rules();
    assert.ok(before.includes(`5432/tcp ALLOW IN ${gateway}`), before.join("\n"));
    assert.ok(before.some((l) => /^443\/tcp ALLOW IN Anywhere/.test(l)), before.join("\n"));
    assert.equal(await tcpConnect(serverIp, 5432), "connected", "staging's database answers the listed address");
    // Production's bootstrap, as its step runs it: its settings have no database port.
    assert.doesNotMatch(await root("cat /etc/onebox/shop-prod/bootstrap.env"), /5432/);
    const again = await root("env ONEBOX_BOOTSTRAP_ENV=/etc/onebox/shop-prod/bootstrap.env /usr/local/lib/onebox/bootstrap.sh 2>&1", 480_000);
    assert.doesNotMatch(again, /removed stale rule/, again);
    assert.deepEqual(await rules(), before);
    assert.equal(await tcpConnect(serverIp, 5432), "connected", "still open after production's run");
    // Run by hand without naming a stack, the bootstrap refuses to pick one.
    const check = await fx.server.script("/usr/local/lib/onebox/bootstrap.sh --check");
    assert.notEqual(check.code, 0);
    assert.match(check.stderr, /several stacks' settings \(\/etc\/onebox\/shop-prod\/bootstrap\.env \/etc\/onebox\/shop-staging\/bootstrap\.env\); name one/);
});

test("B1/B3 each stack backs up on its own units into its own prefix and state; restore.sh by hand names the stack", { skip: SKIP, timeout: 600_000 }, async () => {
    await root("systemctl start onebox-shop-prod-backup.service", 280_000);
    const prodLast = (await root("cat /var/lib/onebox/shop-prod/backup/LAST_SUCCESS")).trim().split(" ")[1];
    assert.match(prodLast, /^shop\/prod\/daily\/shop-\d{8}T\d{6}Z\.dump$/);
    assert.equal((await root("test -e /var/lib/onebox/shop-staging/backup/LAST_SUCCESS && echo yes || echo no")).trim(), "no", "staging has not backed up");
    await root("systemctl start onebox-shop-staging-backup.service", 280_000);
    const stagingLast = (await root("cat /var/lib/onebox/shop-staging/backup/LAST_SUCCESS")).trim().split(" ")[1];
    assert.match(stagingLast, /^shop\/staging\/daily\/shop-\d{8}T\d{6}Z\.dump$/);
    assert.deepEqual(fx.s3.objects("shop/prod/daily/").map((o) => o.key), [prodLast]);
    assert.deepEqual(fx.s3.objects("shop/staging/daily/").map((o) => o.key), [stagingLast]);
    for (const [project, key] of [["shop-prod", prodLast], ["shop-staging", stagingLast]]) {
        const status = JSON.parse(await root(`cat /var/lib/onebox/${project}/status/backup.json`)) as { status: string; lastKey: string };
        assert.deepEqual([status.status, status.lastKey], ["ok", key], project);
    }
    // By hand: the scripts do not guess between two stacks' settings.
    const guess = await fx.server.script("/usr/local/lib/onebox/backup/restore.sh --key latest");
    assert.notEqual(guess.code, 0);
    assert.match(guess.stderr, /holds the backups of several stacks .*name one: ONEBOX_BACKUP_ENV=/);
    // Staging's own dump restores beside its live database, with production's item nowhere in it.
    const restore = await root("ONEBOX_BACKUP_ENV=/etc/onebox/shop-staging/backup.env /usr/local/lib/onebox/backup/restore.sh --key latest --into-scratch restore_check 2>&1", 280_000);
    assert.match(restore, new RegExp(stagingLast.replace(/[.]/g, "\\.")));
    const rows = await root("docker exec shop-staging-postgres psql -U shop -d restore_check -tAc 'SELECT count(*) FROM items'");
    assert.equal(rows.trim(), "0");
    const prodRows = await root("docker exec shop-prod-postgres psql -U shop -d shop -tAc \"SELECT count(*) FROM items WHERE name = 'only-in-prod'\"");
    assert.equal(prodRows.trim(), "1");
});

test("a failing release of staging rolls back staging only; production's containers are the same ones, never restarted", { skip: SKIP, timeout: 900_000 }, async () => {
    const prodBefore = await containersOf("shop-prod");
    const prodCurrent = (await root("readlink /srv/onebox/shop-prod/current")).trim();
    const stagingCurrent = (await root("readlink /srv/onebox/shop-staging/current")).trim();
    const err = await runSteps(fx.server, stepsOf(stackConfig("staging", { version: "staging-2", broken: true })), stacks.staging.secrets, stacks.staging.state).then(
        () => undefined,
        (e: unknown) => e,
    );
    assert.ok(err instanceof StepError, `staging's deploy must fail, got ${String(err)}`);
    assert.equal(err.step, "deploy");
    assert.match(`${err.result.stdout}\n${err.result.stderr}`, /rolling back to release [0-9a-f]{12}/);
    assert.equal((await root("readlink /srv/onebox/shop-staging/current")).trim(), stagingCurrent);
    await waitFor("staging's previous release answers through Traefik", async () => (await through("api.staging.shop.test", "/health")).body.includes('"staging-1"'), 90_000);
    assert.equal(await apiVersion("staging"), "staging-1");
    // Production: same release, same containers, same start times, still answering.
    assert.equal((await root("readlink /srv/onebox/shop-prod/current")).trim(), prodCurrent);
    assert.deepEqual(await containersOf("shop-prod"), prodBefore);
    assert.equal(await apiVersion("prod"), "prod-1");
});

test("a third stack whose own proxy would take 443 (published by Traefik) is refused before any of its containers exists", { skip: SKIP, timeout: 600_000 }, async () => {
    const raw = e2eRawConfig(PORTS, fx.keys.hostPub);
    const caddy = e2eConfig(raw);
    assert.equal(caddy.proxy.kind, "caddy");
    const err = await runSteps(fx.server, stepsOf(caddy, ["secrets", "images", "deploy"]), e2eSecrets(), {}).then(
        () => undefined,
        (e: unknown) => e,
    );
    assert.ok(err instanceof StepError, `the deploy must fail, got ${String(err)}`);
    assert.equal(err.step, "deploy");
    assert.match(err.result.stderr, /port 443 is published by the container traefik \(not a compose stack\), and this release publishes it too\. Only one stack on a server can run its own proxy on 80\/443/);
    assert.match(err.result.stdout, /nothing was changed/);
    assert.equal((await root("docker ps -aq --filter label=com.docker.compose.project=shop-e2e | wc -l")).trim(), "0");
    assert.equal((await root("test -e /srv/onebox/shop-e2e/current && echo yes || echo no")).trim(), "no");
    // The two stacks keep serving.
    assert.equal(await apiVersion("prod"), "prod-1");
    assert.equal(await apiVersion("staging"), "staging-1");
});
