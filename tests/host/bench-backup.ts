/**
 * Backup figures on a real (container) server for a database of about 1 GB, printed
 * as a table (never fails on speed; fails only when a backup or restore fails or
 * brings back the wrong rows):
 *
 *   - rows generated inside PostgreSQL until the database reaches ONEBOX_BENCH_DB_MB
 *     (default 1024), in bounded batches;
 *   - the nightly backup (pg_dump -Fc, verify, upload to the local S3, verify);
 *   - a restore of that dump into a scratch database;
 *   - with backups.pointInTime: a full base backup by its unit, then
 *     `restore.sh --to-time` into a scratch database (restore of the base backup,
 *     WAL replay to the time, dump, restore), checked against marker rows.
 *
 *   flock -w 3600 /tmp/onebox-host-suite.lock npm run bench:backup
 *
 * Not a test: it is in no suite. Starts its own server (own name and ports, a
 * sparse 12 GB data disk) and removes everything it started when it ends, also
 * on failure. Needs what tests/host/pitr.test.ts needs.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { e2eConfig, e2eRawConfig, e2eSecrets, e2eSteps, makeKeys, ROOT, runSteps, S3InServer, TestServer, waitFor, type E2eOptions, type TriggerState } from "./lib/harness";
import { httpsRequest } from "./lib/checks";

const NAME = "onebox-bench-backup-w3";
const PORTS = { ssh: 2313, http: 18313, https: 18413 };
const S3_PORT = 4570;
const PG = "shop-e2e-postgres";
const CA_ON_SERVER = "/etc/onebox-test-s3-ca.pem";
const PREFIX = "shop/e2e/pitr";
const BACKUP_STATE = "/var/lib/onebox/shop-e2e/backup";
const OPTS: E2eOptions = { apiImage: "onebox-test/api:1", database: { version: 17, image: "onebox-test/postgres-pitr:17" }, pointInTime: true };

const TARGET_MB = Number(process.env.ONEBOX_BENCH_DB_MB ?? "1024");
if (!Number.isInteger(TARGET_MB) || TARGET_MB < 1 || TARGET_MB > 8192) {
    throw new Error(`ONEBOX_BENCH_DB_MB must be a whole number of MB from 1 to 8192, not ${process.env.ONEBOX_BENCH_DB_MB}`);
}
/** Rows per INSERT (about 140 MB of table each) and a ceiling on batches. */
const BATCH_ROWS = 500_000;
const MAX_BATCHES = 80;
const LONG = 3_600_000;

const rows: { what: string; value: string }[] = [];
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;
function record(what: string, value: string): void {
    rows.push({ what, value });
    process.stderr.write(`[bench] ${what}: ${value}\n`);
}
function printTable(): void {
    if (rows.length === 0) return;
    const w = Math.max(...rows.map((r) => r.what.length), 7);
    const v = Math.max(...rows.map((r) => r.value.length), 5);
    const line = (a: string, b: string) => `| ${a.padEnd(w)} | ${b.padStart(v)} |`;
    console.log(line("measure", "value"));
    console.log(`|${"-".repeat(w + 2)}|${"-".repeat(v + 1)}:|`);
    for (const r of rows) console.log(line(r.what, r.value));
}
async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
    const t0 = Date.now();
    const r = await fn();
    return [r, Date.now() - t0];
}

/** A self-signed certificate for 127.0.0.1: the local S3's, and the CA pgBackRest trusts. */
function makeCertificate(dir: string): { cert: string; key: string } {
    const cert = path.join(dir, "s3.crt");
    const key = path.join(dir, "s3.key");
    const r = spawnSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`openssl failed: ${r.stderr}`);
    return { cert, key };
}

async function main(): Promise<void> {
    const workDir = fs.mkdtempSync(path.join(os.tmpdir(), "onebox-bench-backup-"));
    const keys = makeKeys(workDir, PORTS.ssh);
    const tls = makeCertificate(workDir);
    const server = new TestServer(NAME, PORTS, keys);
    const s3 = new S3InServer(server, "onebox-e2e", S3_PORT, tls);
    process.on("exit", () => {
        s3.stop();
        spawnSync("bash", [path.join(ROOT, "tests/host/fixture/stop-server.sh"), NAME], { stdio: "ignore" });
    });
    const root = async (body: string, timeoutMs = 600_000): Promise<string> => {
        const r = await server.script(body, timeoutMs);
        if (r.code !== 0) throw new Error(`server: ${body.slice(0, 200)} exited ${r.code}\n${r.stdout.slice(-2000)}\n${r.stderr.slice(-2000)}`);
        return r.stdout;
    };
    /** Starts a oneshot unit and waits for it; on failure the error carries the unit's journal. */
    const unit = async (name: string): Promise<void> => {
        const r = await server.script(`systemctl start ${name}`, LONG);
        if (r.code !== 0) throw new Error(`${name} failed:\n${(await server.script(`journalctl -u ${name} --no-pager -n 40`)).stdout}`);
    };
    const psql = async (sql: string, db = "shop", timeoutMs = 600_000): Promise<string> =>
        (await root(`docker exec -i ${PG} psql -X -q -U shop -d ${db} -tA -v ON_ERROR_STOP=1 <<'SQL'\n${sql}\nSQL`, timeoutMs)).trim();
    /** Closes the current WAL segment and waits until it is in the bucket (so is every one before it). */
    const waitArchived = async (): Promise<void> => {
        const segment = await psql("SELECT pg_walfile_name(pg_switch_wal());");
        if (!/^[0-9A-F]{24}$/.test(segment)) throw new Error(`not a WAL segment name: ${segment}`);
        await waitFor(`WAL segment ${segment} in the bucket`, () => Promise.resolve(s3.objects(`${PREFIX}/archive/`).some((o) => path.basename(o.key).startsWith(segment))), 1_200_000, 2000);
    };
    try {
        server.stop();
        server.start("12G");
        await server.firstBoot("/dev/sdb", "/mnt/data");
        // pgBackRest is given the local S3's CA (PITR_CA_FILE); the nightly upload (rclone)
        // uses the system's trust store, as it would for a real endpoint's public certificate.
        await root(
            `cat > ${CA_ON_SERVER} <<'PEM'\n${fs.readFileSync(tls.cert, "utf8")}PEM\nchmod 0644 ${CA_ON_SERVER}\n` +
                `mkdir -p /usr/local/share/ca-certificates && cp ${CA_ON_SERVER} /usr/local/share/ca-certificates/onebox-test-s3.crt && update-ca-certificates >/dev/null`,
        );
        await s3.start();
        const state: TriggerState = {};
        const steps = e2eSteps(e2eConfig(e2eRawConfig(PORTS, keys.hostPub, OPTS)), S3_PORT, { endpoint: `https://127.0.0.1:${S3_PORT}`, caFile: CA_ON_SERVER });
        await runSteps(server, steps, e2eSecrets(), state);
        record("server", `${os.cpus().length} CPU(s) here, ${(os.totalmem() / 2 ** 30).toFixed(0)} GB RAM`);
        // The nightly backup's check wants a row in the configured table (items).
        const post = await httpsRequest("api.example.test", PORTS.https, "/api/items", { method: "POST", body: JSON.stringify({ name: "bench" }) });
        if (post.status !== 201) throw new Error(`POST /api/items answered ${post.status}`);

        // About TARGET_MB of rows: 8 distinct md5 strings (256 characters) a row, below the
        // size where PostgreSQL would compress it, so the table is as big as it says.
        await psql("CREATE TABLE bench (id bigint PRIMARY KEY, payload text NOT NULL);");
        const target = TARGET_MB * 1024 * 1024;
        let next = 1;
        let batches = 0;
        const [, seedMs] = await timed(async () => {
            while (batches < MAX_BATCHES && Number(await psql("SELECT pg_database_size('shop');")) < target) {
                await psql(
                    `INSERT INTO bench SELECT g, ${Array.from({ length: 8 }, (_, i) => `md5(random()::text || '${i}')`).join(" || ")} FROM generate_series(${next}, ${next + BATCH_ROWS - 1}) g;`,
                    "shop",
                    LONG,
                );
                next += BATCH_ROWS;
                batches++;
            }
            await psql("ANALYZE bench;");
        });
        const dbBytes = Number(await psql("SELECT pg_database_size('shop');"));
        const rowCount = next - 1;
        record(`generate ${rowCount} rows (${batches} INSERTs)`, seconds(seedMs));
        record("database size (pg_database_size)", mib(dbBytes));
        record("  of which the table bench", mib(Number(await psql("SELECT pg_total_relation_size('bench');"))));
        const [, walMs] = await timed(waitArchived);
        record("WAL of the rows archived (after the last INSERT)", seconds(walMs));
        record("  WAL in the bucket", mib(s3.objects(`${PREFIX}/archive/`).reduce((n, o) => n + o.size, 0)));

        // The nightly backup and a restore of it.
        const [, backupMs] = await timed(() => unit("onebox-shop-e2e-backup.service"));
        const key = (await root(`cat ${BACKUP_STATE}/LAST_SUCCESS`)).trim().split(" ")[1];
        const dump = s3.objects(key).find((o) => o.key === key);
        if (!dump) throw new Error(`the backup's object ${key} is not in the bucket`);
        record("nightly backup (dump, verify, upload, verify)", seconds(backupMs));
        record("  dump size (pg_dump -Fc)", mib(dump.size));
        const [, restoreMs] = await timed(() => root("/usr/local/lib/onebox/backup/restore.sh --key latest --into-scratch bench_restore --yes </dev/null", LONG));
        const restored = Number(await psql("SELECT count(*) FROM bench;", "bench_restore"));
        if (restored !== rowCount) throw new Error(`the restored database has ${restored} rows in bench, not ${rowCount}`);
        record("restore into a scratch database (download, verify, pg_restore)", seconds(restoreMs));
        await root(`docker exec ${PG} dropdb -U shop bench_restore`);

        // Point-in-time: a full base backup, rows on both sides of a noted time, recovery to it.
        const [, baseMs] = await timed(() => unit("onebox-shop-e2e-pitr-backup.service"));
        const base = s3.objects(`${PREFIX}/backup/onebox/`).filter((o) => /\/\d{8}-\d{6}F\//.test(o.key));
        if (base.length === 0) throw new Error("no full base backup in the bucket");
        record("base backup, full (pgBackRest, unit)", seconds(baseMs));
        record("  base backup in the bucket", mib(base.reduce((n, o) => n + o.size, 0)));
        await psql("CREATE TABLE bench_marker (id int PRIMARY KEY); INSERT INTO bench_marker SELECT generate_series(1, 100);");
        const noted = await psql(`SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');`);
        await psql("INSERT INTO bench_marker SELECT generate_series(101, 150); DELETE FROM bench WHERE id <= 1000;");
        await waitArchived();
        const [out, pitrMs] = await timed(() => root(`/usr/local/lib/onebox/backup/restore.sh --to-time ${noted} --into-scratch bench_at_time --yes </dev/null`, LONG));
        if (!/recovered to /.test(out)) throw new Error(`restore.sh --to-time did not report a recovery:\n${out.slice(-2000)}`);
        const got = await psql("SELECT (SELECT count(*) FROM bench_marker) || ' ' || (SELECT count(*) FROM bench);", "bench_at_time");
        if (got !== `100 ${rowCount}`) throw new Error(`recovered to ${noted}: markers and rows are "${got}", not "100 ${rowCount}"`);
        record("point-in-time restore --to-time into scratch", seconds(pitrMs));
        await root(`docker exec ${PG} dropdb -U shop bench_at_time`);
    } finally {
        s3.dispose();
        server.stop();
        fs.rmSync(workDir, { recursive: true, force: true });
    }
    printTable();
}

main().catch((e: unknown) => {
    printTable();
    console.error(e instanceof Error ? e.message : String(e));
    process.exitCode = 1;
});
