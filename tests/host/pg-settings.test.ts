/**
 * database.settings and database.pooler on a real (container) server, deployed by the
 * program's own steps:
 * - the settings reach PostgreSQL (`SHOW` inside the server), and a changed setting is in
 *   effect after the next deploy, including one read only at server start (max_connections);
 * - with the pooler (Debian's PgBouncer, onebox-test/pgbouncer:1) the API connects through it
 *   (its DATABASE_HOST/PORT, and its health), two open client sessions share one server
 *   connection (poolSize 1: transaction pooling; session pooling would make the second
 *   wait), PgBouncer publishes nothing and listens on no address of the server itself, and
 *   a rotated password (what passwordRotationDays does) logs in through the pooler at once
 *   while the old one is refused there.
 *
 *   flock -w 3600 /tmp/onebox-host-suite.lock node --import tsx --test --test-concurrency=1 tests/host/pg-settings.test.ts
 *
 * Needs what e2e.test.ts needs and onebox-test/pgbouncer:1 (tests/host/fixture/pgbouncer-image.sh);
 * skips without them unless ONEBOX_REQUIRE_TOOLS=1.
 */
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import assert from "node:assert/strict";
import { e2eConfig, e2eRawConfig, e2eSecrets, e2eSteps, runSteps, type TriggerState } from "./lib/harness";
import { Fixture } from "./lib/fixture";

const NAME = "onebox-pgset-k4w7";
const PORTS = { ssh: 2331, http: 18331, https: 18431 };
const PG = "shop-e2e-postgres";
const POOLER = "shop-e2e-pgbouncer";

const fx = new Fixture({ name: NAME, ports: PORTS, images: ["onebox-test/postgres:17", "onebox-test/api:1", "onebox-test/web:1", "onebox-test/pgbouncer:1"], s3: {} });
const SKIP = fx.skip;
let secrets: Record<string, string> = {};
const state: TriggerState = {};
const root = (body: string) => fx.root(body);

/** SHOW of each name inside PostgreSQL, as one "name=value" line each. */
async function show(names: string[]): Promise<Record<string, string>> {
    const sql = names.map((n) => `SELECT '${n}=' || current_setting('${n}');`).join("\n");
    const out = await root(`docker exec -i ${PG} psql -X -U shop -d shop -tA -v ON_ERROR_STOP=1 <<'SQL'\n${sql}\nSQL`);
    return Object.fromEntries(out.trim().split("\n").map((l) => l.split("=", 2) as [string, string]));
}

/** The e2e stack with these database settings (and pooler, when given; the API then connects through it). */
function rawWith(database: Record<string, unknown>): Record<string, unknown> {
    const raw = e2eRawConfig(PORTS, fx.keys.hostPub);
    raw.database = { ...(raw.database as Record<string, unknown>), ...database };
    if (database.pooler) {
        const services = raw.services as Record<string, Record<string, unknown>>;
        services.api = { ...services.api, databaseEnv: { pooler: true } };
    }
    return raw;
}

/**
 * Inside the API's container, with its own settings and password file (never an argument):
 * two sessions open at once through DATABASE_HOST/PORT and one directly to PostgreSQL, each
 * asked for its server process. Prints one JSON line.
 */
const SESSIONS_PY = `
import json, os, psycopg2
pw = open(os.environ["DATABASE_PASSWORD_FILE"]).read().strip()
def open_(host, port):
    c = psycopg2.connect(host=host, port=int(port), dbname=os.environ["DATABASE_NAME"], user=os.environ["DATABASE_USER"], password=pw, connect_timeout=5)
    c.autocommit = True
    return c
def pid(c):
    cur = c.cursor(); cur.execute("SELECT pg_backend_pid()"); return cur.fetchone()[0]
def peer(c):
    cur = c.cursor(); cur.execute("SELECT host(inet_client_addr())"); return cur.fetchone()[0]
a = open_(os.environ["DATABASE_HOST"], os.environ["DATABASE_PORT"])
b = open_(os.environ["DATABASE_HOST"], os.environ["DATABASE_PORT"])
d = open_("${PG}", 5432)
print(json.dumps({"host": os.environ["DATABASE_HOST"], "port": os.environ["DATABASE_PORT"], "a": pid(a), "b": pid(b), "a2": pid(a), "direct": pid(d), "peer": peer(a), "directPeer": peer(d)}))
`;

async function sessions(): Promise<{ host: string; port: string; a: number; b: number; a2: number; direct: number; peer: string; directPeer: string }> {
    const out = await root(`docker exec -i shop-e2e-api-1 python3 - <<'PY'\n${SESSIONS_PY}\nPY`);
    return JSON.parse(out.trim().split("\n").pop() ?? "") as never;
}

/** Exit status of a SCRAM login through the pooler with this password (on stdin, never in argv). */
async function loginThroughPooler(password: string): Promise<number> {
    const r = await fx.server.script(
        `printf '%s' '${password}' | docker exec -i ${POOLER} sh -c 'PGPASSWORD="$(cat)" PGCONNECT_TIMEOUT=5 psql -X -h 127.0.0.1 -p 6432 -U shop -d shop -tAc "SELECT 1"'`,
        120_000,
    );
    return r.code;
}

async function deploy(raw: Record<string, unknown>) {
    const runs = await runSteps(fx.server, e2eSteps(e2eConfig(raw), fx.s3.port), secrets, state);
    assert.match(runs.find((r) => r.name === "deploy")?.stdout ?? "", /release [0-9a-f]{12} is live/);
    return runs;
}

fx.use(() => {
    secrets = e2eSecrets();
});

const NAMES = ["max_connections", "shared_buffers", "work_mem", "log_min_duration_statement", "statement_timeout", "idle_in_transaction_session_timeout", "log_lock_waits", "log_connections", "random_page_cost"];

test("database.settings reach PostgreSQL, and a change is in effect after the next deploy", { skip: SKIP, timeout: 1_200_000 }, async () => {
    await deploy(rawWith({}));
    // The defaults every stack had before settings existed (memoryMb 192: shared_buffers 48MB).
    const defaults = await show(NAMES);
    assert.equal(defaults.max_connections, "50");
    assert.equal(defaults.shared_buffers, "48MB");
    assert.equal(defaults.log_lock_waits, "off");

    await deploy(
        rawWith({
            settings: {
                max_connections: 40,
                shared_buffers: "32MB",
                work_mem: "2MB",
                log_min_duration_statement: "250ms",
                statement_timeout: "30s",
                idle_in_transaction_session_timeout: "1min",
                log_lock_waits: true,
                log_connections: true,
                random_page_cost: 1.1,
            },
        }),
    );
    assert.deepEqual(await show(NAMES), {
        max_connections: "40",
        shared_buffers: "32MB",
        work_mem: "2MB",
        log_min_duration_statement: "250ms",
        statement_timeout: "30s",
        idle_in_transaction_session_timeout: "1min",
        log_lock_waits: "on",
        log_connections: "on",
        random_page_cost: "1.1",
    });

    // A setting read only at server start and one that a reload would change: both after the deploy.
    await deploy(rawWith({ settings: { max_connections: 30, work_mem: "3MB" } }));
    const changed = await show(["max_connections", "work_mem", "log_lock_waits"]);
    assert.deepEqual(changed, { max_connections: "30", work_mem: "3MB", log_lock_waits: "off" });
});

test("database.pooler: the API connects through PgBouncer in transaction mode, on the database network only; a rotated password works through it", { skip: SKIP, timeout: 1_200_000 }, async () => {
    const withPooler = rawWith({ settings: { max_connections: 30 }, pooler: { enabled: true, image: "onebox-test/pgbouncer:1", poolSize: 1, maxClientConnections: 20 } });
    await deploy(withPooler);

    // The API's settings point at the pooler and its health (a database query) passes through it.
    const s = await sessions();
    assert.equal(s.host, POOLER);
    assert.equal(s.port, "6432");
    // Transaction pooling: two open client sessions run on the one server connection of the
    // pool (session pooling would have made the second wait for the first to disconnect).
    assert.equal(s.a, s.b, "both sessions ran on the pool's one server connection");
    assert.equal(s.a2, s.a);
    assert.notEqual(s.direct, s.a, "a direct connection is a server process of its own");
    // The pooler is on the database network only (one address).
    const poolerIp = (await root(`docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' ${POOLER}`)).trim();
    assert.match(poolerIp, /^\d+\.\d+\.\d+\.\d+$/, "the pooler is on exactly one network");
    // PostgreSQL sees the pooled session coming from the pooler, the direct one from the API.
    assert.equal(s.peer, poolerIp, "the pooled session's client address is the pooler's");
    assert.notEqual(s.directPeer, poolerIp);
    assert.match(s.directPeer, /^\d+\.\d+\.\d+\.\d+$/);

    // Not reachable from the server's public side: no published port, only the database network,
    // nothing listening on the server's own addresses for 6432.
    assert.equal((await root(`docker inspect -f '{{json .HostConfig.PortBindings}}' ${POOLER}`)).trim(), "{}");
    assert.equal((await root(`docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}' ${POOLER}`)).trim(), "shop-e2e_database");
    const serverIp = (await root("ip -4 -o addr show scope global | awk '{print $4}' | cut -d/ -f1 | head -n 1")).trim();
    assert.match(serverIp, /^\d+\.\d+\.\d+\.\d+$/);
    const probe = await fx.server.script(`timeout 5 bash -c '</dev/tcp/${serverIp}/6432' && echo open || echo closed`, 60_000);
    assert.equal(probe.stdout.trim(), "closed");
    // Control: the same probe sees sshd on that address, so "closed" above means something.
    const control = await fx.server.script(`timeout 5 bash -c '</dev/tcp/${serverIp}/22' && echo open || echo closed`, 60_000);
    assert.equal(control.stdout.trim(), "open");

    // Rotation (passwordRotationDays at a period boundary): the new password logs in through the
    // pooler as soon as the deploy is done, the old one no longer does, and the API still serves.
    const old = secrets.POSTGRES_PASSWORD;
    assert.equal(await loginThroughPooler(old), 0, "the current password logs in through the pooler");
    secrets = { ...secrets, POSTGRES_PASSWORD: randomBytes(24).toString("hex") };
    const runs = await deploy(withPooler);
    assert.deepEqual(runs.map((r) => r.name).filter((n) => n === "secrets" || n === "deploy"), ["secrets", "deploy"]);
    assert.match(runs.find((r) => r.name === "deploy")?.stdout ?? "", /pgbouncer re-read its auth file/);
    assert.equal(await loginThroughPooler(secrets.POSTGRES_PASSWORD), 0, "the new password logs in through the pooler");
    assert.notEqual(await loginThroughPooler(old), 0, "the old password is refused by the pooler");
    const after = await sessions();
    assert.equal(after.host, POOLER);
    assert.equal(after.a, after.b);
    // The auth file holds the verifier, never the password (R3), 0400 for the pooler's user.
    const auth = await root(`stat -c '%a %u' /etc/onebox/shop-e2e/secrets/pgbouncer/userlist.txt && cat /etc/onebox/shop-e2e/secrets/pgbouncer/userlist.txt`);
    assert.match(auth, /^400 10002\n"shop" "SCRAM-SHA-256\$4096:/);
    assert.ok(!auth.includes(secrets.POSTGRES_PASSWORD));
});
