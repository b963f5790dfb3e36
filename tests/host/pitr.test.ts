/**
 * Point-in-time recovery on a real (container) server (backups.pointInTime): the
 * stack's PostgreSQL archives its WAL through the host's pgBackRest to a local S3
 * (s3rver over TLS, inside the server), a base backup runs from its systemd unit,
 * rows are written, the time is noted, more rows are written, and
 * `restore.sh --to-time` must bring back exactly the rows written before that time.
 *
 *   flock -w 3600 /tmp/onebox-host-suite.lock node --import tsx --test --test-concurrency=1 tests/host/pitr.test.ts
 *
 * Needs what e2e.test.ts needs, plus onebox-test/postgres-pitr:17 (stack-images.sh)
 * and openssl; skips without them unless ONEBOX_REQUIRE_TOOLS=1.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { e2eConfig, e2eRawConfig, e2eSecrets, e2eSteps, runSteps, waitFor, type E2eOptions, type TriggerState } from "./lib/harness";
import { Fixture } from "./lib/fixture";

const NAME = "onebox-pitr-m4k7";
const PORTS = { ssh: 2331, http: 18331, https: 18431 };
const PG = "shop-e2e-postgres";
const S3_PORT = 4569;
const CA_ON_SERVER = "/etc/onebox-test-s3-ca.pem";
const OPTS: E2eOptions = { apiImage: "onebox-test/api:1", database: { version: 17, image: "onebox-test/postgres-pitr:17" }, pointInTime: true };
const PREFIX = "shop/e2e/pitr";

const fx = new Fixture({ name: NAME, ports: PORTS, images: ["onebox-test/postgres-pitr:17"], commands: ["openssl"], s3: { port: S3_PORT, tls: (dir) => makeCertificate(dir) } });
const SKIP = fx.skip;

let secrets: Record<string, string> = {};
const state: TriggerState = {};

const root = (body: string, timeoutMs?: number) => fx.root(body, timeoutMs);

async function psql(sql: string, db = "shop"): Promise<string> {
    return (await root(`docker exec -i ${PG} psql -X -U shop -d ${db} -tA -v ON_ERROR_STOP=1 <<'SQL'\n${sql}\nSQL`)).trim();
}

/** A self-signed certificate for 127.0.0.1: the local S3's, and the CA pgBackRest trusts. */
function makeCertificate(dir: string): { cert: string; key: string } {
    const cert = path.join(dir, "s3.crt");
    const key = path.join(dir, "s3.key");
    const r = spawnSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`openssl failed: ${r.stderr}`);
    return { cert, key };
}

fx.use(async () => {
    await root(`cat > ${CA_ON_SERVER} <<'PEM'\n${fs.readFileSync(path.join(fx.dir, "s3.crt"), "utf8")}PEM\nchmod 0644 ${CA_ON_SERVER}`);
    secrets = e2eSecrets();
});

/** Waits until every WAL segment up to the current one has left the server for the bucket. */
async function waitArchived(): Promise<void> {
    const segment = await psql("SELECT pg_walfile_name(pg_switch_wal());");
    assert.match(segment, /^[0-9A-F]{24}$/);
    await waitFor(
        `WAL segment ${segment} in the bucket`,
        () => Promise.resolve(fx.s3.objects(`${PREFIX}/archive/`).some((o) => path.basename(o.key).startsWith(segment))),
        180_000,
        2000,
    );
}

test("backups.pointInTime: WAL archived to the bucket, base backup by its unit, restore.sh --to-time brings back exactly the rows before the time", { skip: SKIP, timeout: 1_800_000 }, async (t) => {
    const steps = e2eSteps(e2eConfig(e2eRawConfig(PORTS, fx.keys.hostPub, OPTS)), S3_PORT, { endpoint: `https://127.0.0.1:${S3_PORT}`, caFile: CA_ON_SERVER });
    const run = await runSteps(fx.server, steps, secrets, state);
    assert.match(run.find((r) => r.name === "deploy")?.stdout ?? "", /release [0-9a-f]{12} is live/);
    assert.match(run.find((r) => r.name === "backup")?.stdout ?? "", /stanza onebox is ready/);

    // The settings the option implies, on the running server.
    assert.equal(await psql("SHOW archive_mode;"), "on");
    assert.equal(await psql("SHOW archive_timeout;"), "1min");
    assert.equal(await psql("SHOW wal_level;"), "replica");
    // The pusher is armed: a path unit on the spool and its retry timer.
    assert.equal((await root("systemctl is-active onebox-shop-e2e-pitr-push.path onebox-shop-e2e-pitr-push.timer onebox-shop-e2e-pitr-backup.timer")).trim(), "active\nactive\nactive");

    await psql("CREATE TABLE pitr_check (id int PRIMARY KEY, note text NOT NULL);\nINSERT INTO pitr_check SELECT g, 'before ' || g FROM generate_series(1, 100) g;");
    const t0 = Date.now();
    await root("systemctl start onebox-shop-e2e-pitr-backup.service", 900_000);
    t.diagnostic(`base backup (unit): ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    assert.ok(fx.s3.objects(`${PREFIX}/backup/onebox/`).some((o) => /\d{8}-\d{6}F\/backup\.manifest$/.test(o.key)), "a full backup's manifest in the bucket");

    // Rows after the base backup, then the moment to return to, then rows after it.
    await psql("INSERT INTO pitr_check SELECT g, 'before ' || g FROM generate_series(101, 160) g;");
    const noted = await psql(`SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');`);
    assert.match(noted, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    await psql("INSERT INTO pitr_check SELECT g, 'after ' || g FROM generate_series(161, 200) g;\nUPDATE pitr_check SET note = 'changed after' WHERE id <= 10;\nDELETE FROM pitr_check WHERE id BETWEEN 50 AND 59;");
    await waitArchived();
    const expected = await psql("SELECT count(*) || ' ' || md5(string_agg(id || ':' || note, ',' ORDER BY id)) FROM (SELECT g AS id, 'before ' || g AS note FROM generate_series(1, 160) g) x;");

    const t1 = Date.now();
    const restore = await root(`/usr/local/lib/onebox/backup/restore.sh --to-time ${noted} --into-scratch pitr_at_time`, 900_000);
    t.diagnostic(`point-in-time restore into scratch: ${((Date.now() - t1) / 1000).toFixed(1)} s`);
    assert.match(restore, /recovered to /);
    const got = await psql("SELECT count(*) || ' ' || md5(string_agg(id || ':' || note, ',' ORDER BY id)) FROM pitr_check;", "pitr_at_time");
    assert.equal(got, expected, "exactly the 160 rows as they were at the noted time: none of the later inserts, updates or deletes");

    // The live database is untouched, and the recovery left nothing behind.
    assert.equal(await psql("SELECT count(*), count(*) FILTER (WHERE note = 'changed after') FROM pitr_check;"), "190|10");
    assert.equal((await root("ls -A /mnt/data/shop-e2e/postgres-pitr-restore 2>/dev/null | wc -l; docker ps -aq --filter label=onebox.role=pitr | wc -l")).trim(), "0\n0");
    assert.equal((await root("find /mnt/data/shop-e2e/postgres-wal-spool -name '0*' | wc -l")).trim(), "0", "the spool is empty once pushed");

    // The weekly drill's check: a marker just before a noted time is recovered, one just after is not.
    const t2 = Date.now();
    const drill = (await root("/usr/local/lib/onebox/backup/pitr.sh drill", 900_000)).trim().split("\n").pop() ?? "";
    t.diagnostic(`point-in-time drill: ${((Date.now() - t2) / 1000).toFixed(1)} s`);
    const result = JSON.parse(drill) as { ok: boolean; target: string; error: unknown };
    assert.equal(result.ok, true, drill);
    assert.equal(result.error, null);
    assert.match(result.target, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}\+00$/);
    assert.equal(await psql("SELECT count(*) FROM marker;", "onebox_pitr_drill"), "2", "both markers in the live cluster, in the drill's own database");

    // A time before the first base backup cannot be reached: the restore fails, nothing changes.
    const early = await fx.server.script("/usr/local/lib/onebox/backup/restore.sh --to-time 2000-01-01T00:00:00Z --into-scratch pitr_too_early", 600_000);
    assert.notEqual(early.code, 0, "a time before every base backup is refused");
    assert.equal(await psql("SELECT count(*) FROM pg_database WHERE datname = 'pitr_too_early';"), "0");
});
