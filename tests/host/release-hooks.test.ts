/**
 * Release hooks on a real (container) server, through the program's own steps:
 *   - deploy.release runs exactly once per release (a row per release id in a table the
 *     command writes; a re-run of the deploy step for the same release adds none);
 *   - a failing release command leaves the old version serving through the proxy and the
 *     database as it was, and the dump taken before it (backupBeforeRelease) exists,
 *     verified, and restores to that same content;
 *   - a failing preflight names the missing key and its service and changes nothing;
 *   - a failing smoke check rolls back to the previous release.
 *
 *   flock -w 3600 /tmp/onebox-host-suite.lock node --import tsx --test --test-concurrency=1 tests/host/release-hooks.test.ts
 *
 * Needs what e2e.test.ts needs (onebox-test/fresh-server and the stack images of
 * tests/host/fixture/stack-images.sh); skips without them unless ONEBOX_REQUIRE_TOOLS=1.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { e2eConfig, e2eRawConfig, e2eSecrets, e2eSteps, runSteps, runStepScript, StepError, type TriggerState } from "./lib/harness";
import { Fixture } from "./lib/fixture";
import { httpsRequest } from "./lib/checks";

const NAME = "onebox-hooks-k7p2";
const PORTS = { ssh: 2331, http: 18331, https: 18431 };
const PG = "shop-e2e-postgres";
const DUMPS = "/mnt/data/shop-e2e/postgres-release-dumps";

const fx = new Fixture({ name: NAME, ports: PORTS, images: ["onebox-test/postgres:17", "onebox-test/api:1", "onebox-test/api:2", "onebox-test/web:1", "onebox-test/caddy:latest"] });
const SKIP = fx.skip;

/**
 * The migration: one row per run in release_log (the release id deploy.sh hands it, and the
 * image's version), in one transaction. With the argument "fail" it raises before the
 * commit, so PostgreSQL discards the row: a migration that fails cleanly.
 */
const MIGRATION = [
    "import os, sys",
    "sys.path.insert(0, '/app')",
    "import app",
    "conn = app.connect()",
    "cur = conn.cursor()",
    "cur.execute('CREATE TABLE IF NOT EXISTS release_log (release text NOT NULL, version text NOT NULL, at timestamptz NOT NULL DEFAULT now())')",
    "cur.execute('INSERT INTO release_log (release, version) VALUES (%s, %s)', (os.environ['ONEBOX_RELEASE'], app.VERSION))",
    "print('migrated', os.environ['ONEBOX_RELEASE'], 'version', app.VERSION)",
    "if sys.argv[1:] == ['fail']:",
    "    raise SystemExit('migration failed on purpose')",
    "conn.commit()",
].join("\n");

interface Hooks {
    apiImage: string;
    release?: "ok" | "fail";
    backupBeforeRelease?: boolean;
    requiredEnv?: Record<string, string[]>;
    smoke?: Record<string, unknown>[];
}

function configFor(h: Hooks) {
    const raw = e2eRawConfig(PORTS, fx.keys.hostPub, { apiImage: h.apiImage });
    // No object storage here: the dump before a release needs none (the deploy installs its check).
    delete raw.backups;
    raw.deploy = {
        ...(raw.deploy as Record<string, unknown>),
        ...(h.release ? { release: { service: "api", command: ["python3", "-c", MIGRATION, ...(h.release === "fail" ? ["fail"] : [])], timeoutSeconds: 120 } } : {}),
        ...(h.backupBeforeRelease ? { backupBeforeRelease: true } : {}),
        ...(h.requiredEnv ? { preflight: { requiredEnv: h.requiredEnv } } : {}),
        ...(h.smoke ? { smoke: h.smoke } : {}),
    };
    return e2eConfig(raw);
}

let secrets: Record<string, string> = {};
const state: TriggerState = {};

const root = (body: string) => fx.root(body);

async function psql(sql: string, db = "shop"): Promise<string> {
    return (await root(`docker exec -i ${PG} psql -X -U shop -d ${db} -tA -v ON_ERROR_STOP=1 <<'SQL'\n${sql}\nSQL`)).trim();
}

/** The content a release must not change: every release_log row and every item. */
const CONTENT_SQL =
    "SELECT (SELECT count(*) || ':' || coalesce(md5(string_agg(release || '/' || version || '/' || at, ',' ORDER BY at, release)), '-') FROM release_log) || ' ' || " +
    "(SELECT count(*) || ':' || coalesce(md5(string_agg(id || '/' || name, ',' ORDER BY id)), '-') FROM items);";

async function deploy(h: Hooks): Promise<string> {
    const runs = await runSteps(fx.server, e2eSteps(configFor(h), 0), secrets, state);
    const d = runs.find((r) => r.name === "deploy");
    assert.ok(d?.ran, "the deploy step ran");
    return d.stdout;
}

function liveId(out: string): string {
    const m = /release ([0-9a-f]{12}) is live/.exec(out);
    assert.ok(m, `no live release in:\n${out.slice(-3000)}`);
    return m[1];
}

async function apiVersion(): Promise<string> {
    const r = await httpsRequest("api.example.test", PORTS.https, "/health");
    assert.equal(r.status, 200, `the API answers through the proxy: ${r.body}`);
    return (JSON.parse(r.body) as { version: string }).version;
}

async function current(): Promise<string> {
    return path.basename((await root("readlink /srv/onebox/shop-e2e/current")).trim());
}

async function apiContainer(): Promise<string> {
    return (await root("docker ps --quiet --filter label=com.docker.compose.service=api --filter label=com.docker.compose.project=shop-e2e")).trim();
}

fx.use(() => {
    secrets = e2eSecrets();
});

test("release hooks: once per release, a failing migration, a failing preflight, a failing smoke check", { skip: SKIP, timeout: 1_800_000 }, async (t) => {
    // Release A: the migration runs before the first start.
    const outA = await deploy({ apiImage: "onebox-test/api:1", release: "ok" });
    const idA = liveId(outA);
    assert.match(outA, /deploy\.release: the release command succeeded/);
    assert.match(outA, new RegExp(`release: migrated ${idA} version 1`));
    assert.equal(await psql("SELECT release || ' ' || version FROM release_log ORDER BY at;"), `${idA} 1`);
    assert.equal(await apiVersion(), "1");

    // Release B: a new image; its dump first, then its migration, then the switch; a passing smoke check.
    const outB = await deploy({
        apiImage: "onebox-test/api:2",
        release: "ok",
        backupBeforeRelease: true,
        smoke: [{ host: "api.example.test", path: "/health", bodyMatches: '"version": ?"2"', attempts: 5 }],
    });
    const idB = liveId(outB);
    assert.notEqual(idB, idA);
    assert.match(outB, new RegExp(`deploy\\.backupBeforeRelease: verified dump [0-9]+ bytes at ${DUMPS}/shop-${idB}-`));
    assert.match(outB, /deploy\.smoke\[0\]: https:\/\/api\.example\.test\/health answered 200/);
    // The migration ran before any traffic moved: its log line precedes the canary of the new API.
    assert.ok(outB.indexOf("release: migrated") < outB.indexOf("canary: starting the new api"), "migration before the canary");
    assert.equal(await psql("SELECT string_agg(release || ' ' || version, ',' ORDER BY at) FROM release_log;"), `${idA} 1,${idB} 2`);
    assert.equal(await apiVersion(), "2");

    // The deploy step for B once more (an operator re-running it): the migration is not run again.
    const again = await runStepScript(fx.server, e2eSteps(configFor({ apiImage: "onebox-test/api:2", release: "ok", backupBeforeRelease: true, smoke: [{ host: "api.example.test", path: "/health", bodyMatches: '"version": ?"2"', attempts: 5 }] }), 0).find((s) => s.name === "deploy")!, secrets);
    assert.match(again.stdout, new RegExp(`deploy\\.release: already ran for release ${idB}`));
    assert.equal(await psql("SELECT release || ':' || count(*) FROM release_log GROUP BY release ORDER BY min(at);"), `${idA}:1\n${idB}:1`);

    // Release C: its migration fails. B keeps serving, the database is as it was, and the
    // dump taken before the migration holds exactly that content.
    await psql("INSERT INTO items (name) VALUES ('kept-1'), ('kept-2');");
    const beforeC = await psql(CONTENT_SQL);
    const currentB = await current();
    await assert.rejects(deploy({ apiImage: "onebox-test/api:1", release: "fail", backupBeforeRelease: true }), (e: unknown) => {
        assert.ok(e instanceof StepError, String(e));
        assert.match(e.message, /deploy\.release: the release command exited 1: .*migration failed on purpose/);
        assert.match(e.message, /release: migrated [0-9a-f]{12} version 1/);
        return true;
    });
    assert.equal(await apiVersion(), "2", "release B still serves through the proxy");
    assert.equal(await current(), currentB);
    assert.equal(await psql(CONTENT_SQL), beforeC, "the database is as it was");
    const dumps = (await root(`ls -1t ${DUMPS}`)).trim().split("\n");
    assert.equal(dumps.length, 2, `one dump per release that ran its command with backupBeforeRelease: ${dumps.join(", ")}`);
    const dumpC = `${DUMPS}/${dumps[0]}`;
    assert.doesNotMatch(dumps[0], new RegExp(idB), "the newest dump is C's");
    assert.equal((await root(`stat -c %a ${DUMPS} ${dumpC}`)).trim(), "700\n600");
    await root(`docker exec ${PG} createdb -U shop restored_c && docker exec -i ${PG} pg_restore -U shop -d restored_c --no-owner --exit-on-error < ${dumpC}`);
    assert.equal(await psql(CONTENT_SQL, "restored_c"), beforeC, "the pre-release dump restores to the same content");
    await root(`docker exec ${PG} dropdb -U shop restored_c`);

    // Release D: a preflight key whose secret file is gone: named with its service; nothing changes.
    const apiBefore = await apiContainer();
    await root("mv /etc/onebox/shop-e2e/secrets/api/APP_SECRET /root/APP_SECRET.aside");
    try {
        await assert.rejects(deploy({ apiImage: "onebox-test/api:1", requiredEnv: { api: ["DATABASE_HOST", "APP_SECRET"] } }), (e: unknown) => {
            assert.ok(e instanceof StepError, String(e));
            assert.match(e.message, /deploy\.preflight: missing environment keys: service api: APP_SECRET \(APP_SECRET_FILE names a secret file, and \/etc\/onebox\/shop-e2e\/secrets\/api\/APP_SECRET is missing or empty\)/);
            assert.doesNotMatch(e.message, /DATABASE_HOST \(/, "a key that is set is not named");
            assert.match(e.message, /nothing was changed; release [0-9a-f]{12} keeps serving/);
            assert.doesNotMatch(e.message, /rolling back/);
            return true;
        });
    } finally {
        await root("mv /root/APP_SECRET.aside /etc/onebox/shop-e2e/secrets/api/APP_SECRET");
    }
    assert.equal(await apiContainer(), apiBefore, "the API container was not touched");
    assert.equal(await current(), currentB);
    assert.equal(await apiVersion(), "2");

    // Release E: healthy, but its smoke check fails: rolled back to B.
    const t0 = Date.now();
    await assert.rejects(deploy({ apiImage: "onebox-test/api:1", smoke: [{ host: "api.example.test", path: "/health", bodyContains: '"version": "9"', attempts: 2 }] }), (e: unknown) => {
        assert.ok(e instanceof StepError, String(e));
        assert.match(e.message, /deploy\.smoke\[0\]: https:\/\/api\.example\.test\/health answered 200 without ""version": "9"" in the body \(2 attempt\(s\)\)/);
        assert.match(e.message, new RegExp(`release ${currentB} is serving again`));
        return true;
    });
    t.diagnostic(`failed smoke check and rollback: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    assert.equal(await current(), currentB);
    assert.equal(await apiVersion(), "2", "B serves again after the rollback");
    assert.equal(await psql("SELECT count(*) FROM release_log;"), "2", "no release command ran for C, D or E");
});
