/**
 * Timings of the real-host path, printed as a table (never fails on speed):
 * a fresh server to HTTPS step by step, a no-op re-run, a redeploy under load,
 * and backup/restore of a seeded database of known size.
 *
 *   npm run bench:host            # ONEBOX_BENCH_ROWS=380000 (about 50 MB of table)
 *
 * Starts its own server (own name and ports) and removes everything it started
 * when it ends, also on failure.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {
    e2eConfig,
    e2eRawConfig,
    e2eSecrets,
    e2eSteps,
    makeKeys,
    ROOT,
    runStepScript,
    runSteps,
    S3InServer,
    sh,
    TestServer,
    type E2eOptions,
    type TriggerState,
} from "./lib/harness";
import { httpsRequest } from "./lib/checks";
import { LoadLoop } from "./lib/load";

const NAME = "onebox-bench-q9";
const PORTS = { ssh: 2312, http: 18312, https: 18412 };
const ROWS = Number(process.env.ONEBOX_BENCH_ROWS ?? "380000");
const PG = "shop-e2e-postgres";
const BACKUP_STATE = "/var/lib/onebox/shop-e2e/backup";

interface Row {
    what: string;
    value: string;
}
const rows: Row[] = [];
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
function record(what: string, value: string): void {
    rows.push({ what, value });
    process.stderr.write(`[bench] ${what}: ${value}\n`);
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
    const t0 = Date.now();
    const r = await fn();
    return [r, Date.now() - t0];
}

function printTable(): void {
    const w = Math.max(...rows.map((r) => r.what.length), 7);
    const v = Math.max(...rows.map((r) => r.value.length), 5);
    const line = (a: string, b: string) => `| ${a.padEnd(w)} | ${b.padStart(v)} |`;
    console.log(line("measure", "value"));
    console.log(`|${"-".repeat(w + 2)}|${"-".repeat(v + 1)}:|`);
    for (const r of rows) {
        console.log(line(r.what, r.value));
    }
}

async function main(): Promise<void> {
    const keysDir = fs.mkdtempSync(path.join(os.tmpdir(), "onebox-bench-keys-"));
    const keys = makeKeys(keysDir, PORTS.ssh);
    const server = new TestServer(NAME, PORTS, keys);
    const s3 = new S3InServer(server, "onebox-e2e");
    const cleanup = () => {
        s3.dispose();
        server.stop();
        fs.rmSync(keysDir, { recursive: true, force: true });
    };
    process.on("exit", () => {
        s3.stop();
        spawnSync("bash", [path.join(ROOT, "tests/host/fixture/stop-server.sh"), NAME], { stdio: "ignore" });
    });
    const root = async (body: string, timeoutMs = 600_000): Promise<string> => {
        const r = await server.script(body, timeoutMs);
        if (r.code !== 0) {
            throw new Error(`server: ${body.slice(0, 200)} exited ${r.code}\n${r.stdout.slice(-2000)}\n${r.stderr.slice(-2000)}`);
        }
        return r.stdout;
    };
    try {
        server.stop();
        const total0 = Date.now();
        let t0 = Date.now();
        server.start();
        record("server container up (SSH answers)", seconds(Date.now() - t0));
        record("first boot script", seconds(await server.firstBoot("/dev/sdb", "/mnt/data")));
        await s3.start();

        const secrets = e2eSecrets();
        const state: TriggerState = {};
        let options: E2eOptions = { apiImage: "onebox-test/api:1" };
        const steps = (o: E2eOptions) => e2eSteps(e2eConfig(e2eRawConfig(PORTS, keys.hostPub, o)), s3.port);
        t0 = Date.now();
        for (const run of await runSteps(server, steps(options), secrets, state)) {
            record(`step ${run.name}`, seconds(run.ms));
        }
        const health = await httpsRequest("api.example.test", PORTS.https, "/health");
        if (health.status !== 200) {
            throw new Error(`https://api.example.test/health answered ${health.status}`);
        }
        record("all steps (fresh server -> HTTPS 200)", seconds(Date.now() - t0));
        record("container start -> HTTPS 200", seconds(Date.now() - total0));

        // No-op: what `pulumi up` does with an unchanged config (no step runs), and the
        // host scripts re-run by hand (each converges and changes nothing).
        const [noop, noopMs] = await timed(() => runSteps(server, steps(options), secrets, state));
        record("no-op re-run (steps run)", `${noop.filter((r) => r.ran).length} in ${seconds(noopMs)}`);
        let byHand = 0;
        for (const step of steps(options).filter((s) => !s.upload)) {
            byHand += (await runStepScript(server, step, secrets)).ms;
        }
        record("every host step re-run by hand", seconds(byHand));

        // Redeploy with a new API image under a bounded request loop.
        options = { ...options, apiImage: "onebox-test/api:2" };
        let loop: LoadLoop | undefined;
        const [redeploy, redeployMs] = await timed(() =>
            runSteps(server, steps(options), secrets, state, {
                beforeStep: (name) => {
                    if (name === "deploy") {
                        loop = new LoadLoop({ port: PORTS.https, host: "api.example.test", path: "/health", concurrency: 4, pauseMs: 25, maxRequests: 5000, maxMs: 120_000 });
                    }
                },
            }),
        );
        await new Promise((r) => setTimeout(r, 1000));
        const load = loop ? await loop.stop() : undefined;
        record("redeploy api:1 -> api:2 (images + deploy)", seconds(redeployMs));
        record("  of which deploy step", seconds(redeploy.find((r) => r.name === "deploy")?.ms ?? 0));
        record("  requests / failed during deploy", load ? `${load.requests} / ${load.failed}` : "n/a");
        record("  max request latency during deploy", load ? `${load.maxLatencyMs} ms` : "n/a");

        // Seed a database of known size, then back it up and restore it. The drill checks that
        // the configured table (items) has rows, so one goes in through the API.
        const post = await httpsRequest("api.example.test", PORTS.https, "/api/items", { method: "POST", body: JSON.stringify({ name: "bench" }) });
        if (post.status !== 201) {
            throw new Error(`POST /api/items answered ${post.status}`);
        }
        const [, seedMs] = await timed(() =>
            root(
                `docker exec ${PG} psql -X -q -U shop -d shop -v ON_ERROR_STOP=1 -c "CREATE TABLE bench AS SELECT g AS id, md5(random()::text) || md5(random()::text) || md5(random()::text) AS payload FROM generate_series(1, ${ROWS}) g; ANALYZE bench;"`,
            ),
        );
        const dbBytes = Number((await root(`docker exec ${PG} psql -X -U shop -d shop -tAc "SELECT pg_database_size('shop')"`)).trim());
        const tableBytes = Number((await root(`docker exec ${PG} psql -X -U shop -d shop -tAc "SELECT pg_total_relation_size('bench')"`)).trim());
        const mb = dbBytes / 1024 / 1024;
        record(`seed ${ROWS} rows (generate_series)`, seconds(seedMs));
        record("database size (pg_database_size)", `${mb.toFixed(1)} MB`);
        record("  of which the seeded table", `${(tableBytes / 1024 / 1024).toFixed(1)} MB`);

        const [, backupMs] = await timed(() => root("systemctl start onebox-shop-e2e-backup.service"));
        const key = (await root(`cat ${BACKUP_STATE}/LAST_SUCCESS`)).trim().split(" ")[1];
        const dumpBytes = s3.objects(key).find((o) => o.key === key)?.size ?? 0;
        record("backup (dump, verify, upload, verify)", seconds(backupMs));
        record("  dump size (pg_dump -Fc)", `${(dumpBytes / 1024 / 1024).toFixed(1)} MB`);
        record("  backup time per MB of database", `${(backupMs / 1000 / mb).toFixed(3)} s/MB`);

        const [, restoreMs] = await timed(() => root("/usr/local/lib/onebox/backup/restore.sh --key latest --into-scratch bench_restore --yes </dev/null"));
        const restored = (await root(`docker exec ${PG} psql -X -U shop -d bench_restore -tAc "SELECT count(*) FROM bench"`)).trim();
        record("restore into a scratch database", `${seconds(restoreMs)} (${restored} rows)`);
        record("  restore time per MB of database", `${(restoreMs / 1000 / mb).toFixed(3)} s/MB`);
        await root(`docker exec ${PG} dropdb -U shop bench_restore`);

        const [drill, drillMs] = await timed(() => server.script("systemctl start onebox-shop-e2e-restore-drill.service", 600_000));
        if (drill.code !== 0) {
            throw new Error(`restore drill failed:\n${await root(`cat ${BACKUP_STATE}/last-drill.log; journalctl -u onebox-shop-e2e-restore-drill.service --no-pager -n 30`)}`);
        }
        record("restore drill (throwaway container)", seconds(drillMs));

        // The same with client-side encryption (age).
        const ageDir = fs.mkdtempSync(path.join(os.tmpdir(), "onebox-bench-age-"));
        try {
            const idFile = path.join(ageDir, "identity.txt");
            sh("age-keygen", ["-o", idFile]);
            options = { ...options, ageRecipient: sh("age-keygen", ["-y", idFile]).trim() };
            const [, reconfMs] = await timed(() => runSteps(server, steps(options), secrets, state));
            record("backup setting change (backup step only)", seconds(reconfMs));
            await new Promise((r) => setTimeout(r, 1100));
            const [, encMs] = await timed(() => root("systemctl start onebox-shop-e2e-backup.service"));
            record("backup, age-encrypted", seconds(encMs));
            record("  encrypted backup time per MB", `${(encMs / 1000 / mb).toFixed(3)} s/MB`);
            const [r, decMs] = await timed(() =>
                server.execWithStdin("/usr/local/lib/onebox/backup/restore.sh --key latest --into-scratch bench_restore --yes", fs.readFileSync(idFile, "utf8"), 600_000),
            );
            if (r.code !== 0) {
                throw new Error(`encrypted restore failed: ${r.stderr.slice(-2000)}`);
            }
            record("restore of the encrypted dump", seconds(decMs));
        } finally {
            fs.rmSync(ageDir, { recursive: true, force: true });
        }
        record("whole bench", seconds(Date.now() - total0));
    } finally {
        cleanup();
    }
    printTable();
}

main().catch((e: unknown) => {
    printTable();
    console.error(e instanceof Error ? e.message : String(e));
    process.exitCode = 1;
});
