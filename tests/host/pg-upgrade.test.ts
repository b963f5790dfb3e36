/**
 * A PostgreSQL major upgrade on a real (container) server: the stack runs
 * PostgreSQL 15 (Debian 12's), rows are written, `database.version` becomes 17
 * (Debian 13's) and the program's own steps run again. deploy.sh must upgrade by
 * dump and restore: every row there, on PostgreSQL 17, with the safety dump and
 * the old data directory kept; then a downgrade back to 15 must be refused with
 * PostgreSQL 17 still serving the same rows.
 *
 *   flock -w 3600 /tmp/onebox-host-suite.lock node --import tsx --test --test-concurrency=1 tests/host/pg-upgrade.test.ts
 *
 * Needs what e2e.test.ts needs, plus onebox-test/postgres:15
 * (ONEBOX_BASE_SUITE=bookworm tests/host/fixture/base-image.sh, then stack-images.sh);
 * skips without it unless ONEBOX_REQUIRE_TOOLS=1.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { e2eConfig, e2eRawConfig, e2eSecrets, e2eSteps, runSteps, StepError, type E2eOptions, type TriggerState } from "./lib/harness";
import { Fixture } from "./lib/fixture";
import { httpsRequest } from "./lib/checks";

const NAME = "onebox-pgup-q3v8";
const PORTS = { ssh: 2321, http: 18321, https: 18421 };
const PG = "shop-e2e-postgres";
const OLD: E2eOptions = { apiImage: "onebox-test/api:1", database: { version: 15, image: "onebox-test/postgres:15" } };
const NEW: E2eOptions = { ...OLD, database: { version: 17, image: "onebox-test/postgres:17" } };

const fx = new Fixture({ name: NAME, ports: PORTS, images: ["onebox-test/postgres:15", "onebox-test/postgres:17"], s3: {} });
const SKIP = fx.skip;
let secrets: Record<string, string> = {};
const state: TriggerState = {};

const root = (body: string) => fx.root(body);

async function psql(sql: string): Promise<string> {
    return (await root(`docker exec -i ${PG} psql -X -U shop -d shop -tA -v ON_ERROR_STOP=1 <<'SQL'\n${sql}\nSQL`)).trim();
}

/** Everything the upgrade must carry over, in one comparable string. */
const FINGERPRINT_SQL =
    "SELECT count(*) || ' ' || md5(string_agg(id || ':' || note || ':' || coalesce(amount::text, '-'), ',' ORDER BY id)) FROM upgrade_check;";

async function deploy(o: E2eOptions) {
    return runSteps(fx.server, e2eSteps(e2eConfig(e2eRawConfig(PORTS, fx.keys.hostPub, o)), fx.s3.port), secrets, state);
}

fx.use(() => {
    secrets = e2eSecrets();
});

test("database.version 15 -> 17: dump and restore, every row on 17, safety copies kept; a downgrade is refused and 17 keeps serving", { skip: SKIP, timeout: 1_800_000 }, async (t) => {
    const first = await deploy(OLD);
    assert.match(first.find((r) => r.name === "deploy")?.stdout ?? "", /release [0-9a-f]{12} is live/);
    assert.match(await psql("SHOW server_version_num;"), /^15\d{4}$/);
    await psql(
        "CREATE TABLE upgrade_check (id int PRIMARY KEY, note text NOT NULL, amount numeric(12,2));\n" +
            "INSERT INTO upgrade_check SELECT g, 'row ' || g || ' ' || repeat('x', g % 50), CASE WHEN g % 7 = 0 THEN NULL ELSE g * 1.25 END FROM generate_series(1, 5000) g;\n" +
            "CREATE SCHEMA billing; CREATE TABLE billing.invoices (id serial PRIMARY KEY, total int); INSERT INTO billing.invoices (total) SELECT g FROM generate_series(1, 40) g;",
    );
    const before15 = await psql(FINGERPRINT_SQL);
    assert.match(before15, /^5000 [0-9a-f]{32}$/);

    const t0 = Date.now();
    const upgrade = await deploy(NEW);
    t.diagnostic(`upgrade deploy: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const out = upgrade.find((r) => r.name === "deploy")?.stdout ?? "";
    assert.match(out, /PostgreSQL 15 -> 17: dump and restore/);
    assert.match(out, /PostgreSQL 17 holds what 15 held/);
    assert.match(out, /release [0-9a-f]{12} is live/);
    assert.match(await psql("SHOW server_version_num;"), /^17\d{4}$/);
    assert.equal(await psql(FINGERPRINT_SQL), before15, "every row, byte for byte");
    assert.equal(await psql("SELECT count(*), sum(total) FROM billing.invoices;"), "40|820");
    const api = await httpsRequest("api.example.test", PORTS.https, "/health");
    assert.equal(api.status, 200, `the API serves on the upgraded database: ${api.body}`);

    // The safety copies: the dump (0600) and the whole old data directory, in a 0700 directory.
    const kept = (await root("ls -1 /mnt/data/shop-e2e/postgres-upgrades")).trim().split("\n");
    assert.equal(kept.length, 1);
    assert.match(kept[0], /^\d{8}T\d{6}Z-pg15-to-pg17$/);
    const dir = `/mnt/data/shop-e2e/postgres-upgrades/${kept[0]}`;
    assert.equal((await root(`stat -c %a ${dir} ${dir}/dumpall-pg15.sql`)).trim(), "700\n600");
    assert.equal((await root(`cat ${dir}/data-pg15/PG_VERSION`)).trim(), "15");
    assert.match(await root(`tail -n 5 ${dir}/dumpall-pg15.sql`), /PostgreSQL database cluster dump complete/);
    assert.equal((await root("cat /mnt/data/shop-e2e/postgres/PG_VERSION")).trim(), "17");

    // Back to 15: refused before any server starts on the newer data; 17 serves on.
    await assert.rejects(deploy(OLD), (e: unknown) => e instanceof StepError && /a downgrade is a restore/.test(e.message));
    assert.match(await psql("SHOW server_version_num;"), /^17\d{4}$/);
    assert.equal(await psql(FINGERPRINT_SQL), before15);
    assert.equal((await root("cat /mnt/data/shop-e2e/postgres/PG_VERSION")).trim(), "17");
});
