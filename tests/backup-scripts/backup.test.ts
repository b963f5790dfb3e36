/**
 * Real tests of the backup job's host scripts (scripts/host/backup/*.sh).
 *
 * Nothing is mocked except the Docker CLI: there is no Docker engine here, so
 * tests/backup-scripts/docker-shim.sh stands in for `docker exec/run/rm/inspect`
 * and turns a "container" into a real PostgreSQL cluster (initdb + pg_ctl) on a
 * free 127.0.0.1 port. Everything else is real:
 *  - PostgreSQL (the Debian packages' initdb/pg_ctl/pg_dump/pg_restore/psql);
 *  - an S3 endpoint: s3rver on 127.0.0.1 (path-style; note that s3rver 3 checks
 *    the access key id but not SigV4 signatures, so "wrong credentials" means
 *    a wrong access key id here);
 *  - rclone, age, curl, flock, tar;
 *  - a local HTTP server that records the alert and heartbeat calls.
 * rclone, curl and age are reached through argv-recorder.sh and docker through
 * the shim, both of which log every command line, so the last test can check
 * that no secret was ever on one (R3).
 *
 * The scripts are copied into a temporary "install" directory first, as on the
 * host (/usr/local/lib/onebox/backup/), so lib.sh is found next to them.
 *
 * Needs (skips otherwise): PostgreSQL server binaries under
 * /usr/lib/postgresql/<v>/bin, rclone, age + age-keygen, curl, and s3rver
 * (S3RVER_BIN, /opt/s3rver/node_modules/.bin/s3rver or s3rver on PATH).
 * CI: apt-get install -y postgresql rclone age curl shellcheck
 *     npm install --prefix /opt/s3rver s3rver@3
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { S3_PRESETS, S3_PROVIDERS } from "../../components/storage/s3-providers";

const REPO = path.resolve(__dirname, "..", "..");
const SCRIPTS_SRC = path.join(REPO, "scripts", "host", "backup");
const HERE = __dirname;
const SCRIPT_NAMES = ["lib.sh", "backup.sh", "restore.sh", "restore-drill.sh", "backup-status.sh"];

const BUCKET = "onebox-test-backups";
const ACCESS_KEY = "S3RVER";
const SECRET_KEY = "S3RVER";
const ALERT_TOKEN = "alerttoken-5f1c9e";
const HEARTBEAT_TOKEN = "hbtoken-77ad03";
const APP_CONTAINER = "onebox-postgres";
const APP_IMAGE = "postgres:15-test";
const SCRIPT_TIMEOUT_MS = 120_000;

// ---------------------------------------------------------------------------
// the suite's clock
// ---------------------------------------------------------------------------
// Every script run gets BACKUP_NOW, the time the scripts believe it is (it then
// advances with the real clock): ONEBOX_TEST_NOW when set (scripts/test-calendar.sh
// runs the suite "on" chosen dates that way), else the real time. Tests that need
// a weekday or a Sunday pin their own instant; nothing else may depend on the date.
const SUITE_START_MS = Date.now();
const SUITE_NOW_MS = process.env.ONEBOX_TEST_NOW ? Date.parse(process.env.ONEBOX_TEST_NOW) : SUITE_START_MS;
if (Number.isNaN(SUITE_NOW_MS)) throw new Error(`ONEBOX_TEST_NOW=${process.env.ONEBOX_TEST_NOW} is not a date`);
/** The suite clock in ms (advances with the real clock). */
const clockMs = (): number => SUITE_NOW_MS + (Date.now() - SUITE_START_MS);
const isoSeconds = (ms: number): string => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");

// ---------------------------------------------------------------------------
// tool discovery (decides skip)
// ---------------------------------------------------------------------------
function which(cmd: string): string | undefined {
    const r = spawnSync("sh", ["-c", `command -v ${cmd}`], { encoding: "utf8" });
    const out = r.stdout.trim();
    return r.status === 0 && out ? out : undefined;
}

function findPgBin(): string | undefined {
    const override = process.env.ONEBOX_TEST_PG_BIN;
    if (override) return fs.existsSync(path.join(override, "initdb")) ? override : undefined;
    const root = "/usr/lib/postgresql";
    if (!fs.existsSync(root)) return undefined;
    const versions = fs
        .readdirSync(root)
        .filter((v) => /^\d+$/.test(v))
        .sort((a, b) => Number(b) - Number(a));
    for (const v of versions) {
        const bin = path.join(root, v, "bin");
        if (["initdb", "pg_ctl", "postgres", "pg_dump", "pg_restore", "psql"].every((t) => fs.existsSync(path.join(bin, t)))) {
            return bin;
        }
    }
    return undefined;
}

function findS3rver(): string | undefined {
    const candidates = [process.env.S3RVER_BIN, "/opt/s3rver/node_modules/.bin/s3rver", which("s3rver")];
    return candidates.find((c): c is string => Boolean(c) && fs.existsSync(c as string));
}

const PG_BIN = findPgBin();
const S3RVER = findS3rver();
const SHELLCHECK = which("shellcheck");
const missing = [
    PG_BIN ? "" : "PostgreSQL server binaries (apt-get install postgresql)",
    which("rclone") ? "" : "rclone (apt-get install rclone)",
    which("age") && which("age-keygen") ? "" : "age (apt-get install age)",
    which("curl") ? "" : "curl (apt-get install curl)",
    which("flock") ? "" : "flock (util-linux)",
    S3RVER ? "" : "s3rver (npm install --prefix /opt/s3rver s3rver@3)",
].filter(Boolean);
// The full test run (scripts/test.sh, CI) installs every tool: there a missing
// tool is a failure, not a skip.
if (missing.length > 0 && process.env.ONEBOX_REQUIRE_TOOLS === "1") {
    throw new Error(`ONEBOX_REQUIRE_TOOLS=1 but missing: ${missing.join("; ")}`);
}
const SKIP = missing.length > 0 ? `missing: ${missing.join("; ")}` : false;

// ---------------------------------------------------------------------------
// fixture state
// ---------------------------------------------------------------------------
let root = "";
let installDir = "";
let binDir = "";
let shimState = "";
let scriptTmp = "";
let argvLog = "";
let s3Port = 0;
let httpPort = 0;
let s3Proc: ChildProcess | undefined;
let httpServer: http.Server | undefined;
/**
 * An HTTP proxy in front of s3rver, so that the provider presets' addressing is
 * real: the scripts talk to http://s3.onebox.test through HTTP_PROXY, virtual-hosted
 * presets send Host: <bucket>.s3.onebox.test, path-style ones /<bucket>/<key>.
 * The proxy records every request, turns virtual-hosted requests into path-style
 * ones for s3rver (which checks no signature) and can refuse deletes, as a
 * credential without s3:DeleteObject would.
 */
const S3_HOST = "s3.onebox.test";
let proxyPort = 0;
let proxyServer: http.Server | undefined;
const proxied: { method: string; host: string; path: string }[] = [];
let proxyDeniesDeletes = false;
const requests: { method: string; url: string; body: string }[] = [];
/** stdout+stderr of every script run, checked for secrets at the end (R3). */
const outputs: string[] = [];
/** the age private key generated by the B2 test */
let ageSecret = "AGE-SECRET-KEY-not-generated";

interface RunResult {
    code: number | null;
    stdout: string;
    stderr: string;
}

function freePort(): Promise<number> {
    return new Promise((resolve, reject) => {
        const srv = net.createServer();
        srv.once("error", reject);
        srv.listen(0, "127.0.0.1", () => {
            const addr = srv.address();
            const port = typeof addr === "object" && addr ? addr.port : 0;
            srv.close(() => resolve(port));
        });
    });
}

function canConnect(port: number): Promise<boolean> {
    return new Promise((resolve) => {
        const sock = net.connect({ host: "127.0.0.1", port });
        sock.once("connect", () => {
            sock.destroy();
            resolve(true);
        });
        sock.once("error", () => resolve(false));
    });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
        if (await check()) return;
        await sleep(200);
    }
    throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** Environment for the scripts: shim first on PATH, no CA/proxy variables, no inherited settings. */
function scriptEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) {
        // rclone refuses to start with AWS_CA_BUNDLE set; proxies must not see loopback traffic;
        // settings come only from the env file under test.
        if (/^(AWS_CA_BUNDLE|https?_proxy|all_proxy|HTTPS?_PROXY|ALL_PROXY|BACKUP_.*|DRILL_.*|RCLONE_.*|ONEBOX_.*)$/.test(k)) continue;
        env[k] = v;
    }
    return {
        ...env,
        PATH: `${binDir}:${process.env.PATH ?? "/usr/bin:/bin"}`,
        DOCKER_SHIM_STATE: shimState,
        DOCKER_SHIM_PG_BIN: PG_BIN ?? "",
        ARGV_LOG: argvLog,
        TMPDIR: scriptTmp,
        NO_PROXY: "127.0.0.1,localhost",
        ...extra,
    };
}

function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number } = {}): Promise<RunResult> {
    return new Promise((resolve, reject) => {
        const child = spawn(cmd, args, { env: opts.env ?? scriptEnv(), stdio: ["pipe", "pipe", "pipe"] });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
        child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
        const timer = setTimeout(() => {
            child.kill("SIGKILL");
            reject(new Error(`${cmd} ${args.join(" ")} timed out\nstdout:\n${stdout}\nstderr:\n${stderr}`));
        }, opts.timeoutMs ?? SCRIPT_TIMEOUT_MS);
        child.on("error", reject);
        child.on("close", (code) => {
            clearTimeout(timer);
            resolve({ code, stdout, stderr });
        });
        child.stdin.end(opts.input ?? "");
    });
}

/** docker (shim) call from the test itself, e.g. psql in the app "container". */
function dockerSync(args: string[], input?: string): string {
    const r = spawnSync(path.join(binDir, "docker"), args, { env: scriptEnv({ ARGV_LOG: "" }), input, encoding: "utf8" });
    if (r.status !== 0) throw new Error(`docker ${args.join(" ")} failed: ${r.stderr}`);
    return r.stdout;
}

function sql(db: string, statement: string): string {
    return dockerSync(["exec", "-i", APP_CONTAINER, "psql", "-X", "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", "-tA"], statement).trim();
}

function rowCounts(db: string): Record<string, number> {
    const out = sql(
        db,
        "SELECT 'users', count(*) FROM users UNION ALL SELECT 'orders', count(*) FROM orders " +
            "UNION ALL SELECT 'empty_audit', count(*) FROM empty_audit UNION ALL SELECT 'billing.invoices', count(*) FROM billing.invoices;",
    );
    return Object.fromEntries(out.split("\n").map((l) => [l.split("|")[0], Number(l.split("|")[1])]));
}

/** Direct S3 client (real rclone, its own remote "t"); never recorded in ARGV_LOG. */
function s3Env(): NodeJS.ProcessEnv {
    const env = scriptEnv({ ARGV_LOG: "" });
    env.PATH = process.env.PATH;
    return {
        ...env,
        RCLONE_CONFIG: "/dev/null",
        RCLONE_CONFIG_T_TYPE: "s3",
        RCLONE_CONFIG_T_PROVIDER: "Other",
        RCLONE_CONFIG_T_ENDPOINT: `http://127.0.0.1:${s3Port}`,
        RCLONE_CONFIG_T_ACCESS_KEY_ID: ACCESS_KEY,
        RCLONE_CONFIG_T_SECRET_ACCESS_KEY: SECRET_KEY,
        RCLONE_CONFIG_T_FORCE_PATH_STYLE: "true",
    };
}

/** key -> size of every object under a prefix. */
function listObjects(prefix: string): Map<string, number> {
    const r = spawnSync("rclone", ["lsjson", "-R", "--files-only", `t:${BUCKET}/${prefix}`], { env: s3Env(), encoding: "utf8" });
    if (r.status !== 0) throw new Error(`rclone lsjson failed: ${r.stderr}`);
    const entries = JSON.parse(r.stdout || "[]") as { Path: string; Size: number }[];
    return new Map(entries.map((e) => [`${prefix}/${e.Path}`, e.Size]));
}

function putObject(key: string, body: string): void {
    const r = spawnSync("rclone", ["rcat", `t:${BUCKET}/${key}`], { env: s3Env(), input: body, encoding: "utf8" });
    if (r.status !== 0) throw new Error(`rclone rcat ${key} failed: ${r.stderr}`);
}

/** The object-name stamp (YYYYMMDDTHHMMSSZ) of an instant. */
function stampAt(ms: number): string {
    return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z").replace(/[-:]/g, "");
}

/** Settings that route a case through the recording proxy with a provider preset. */
function viaProxy(provider: string): Record<string, string> {
    return {
        BACKUP_S3_PROVIDER: provider,
        BACKUP_S3_ENDPOINT: `http://${S3_HOST}`,
        BACKUP_S3_REGION: S3_PRESETS[provider as keyof typeof S3_PRESETS].regionExample,
        BACKUP_S3_FORCE_PATH_STYLE: String(S3_PRESETS[provider as keyof typeof S3_PRESETS].pathStyle),
    };
}

function readObject(key: string): Buffer {
    const r = spawnSync("rclone", ["cat", `t:${BUCKET}/${key}`], { env: s3Env(), maxBuffer: 64 * 1024 * 1024 });
    if (r.status !== 0) throw new Error(`rclone cat ${key} failed: ${r.stderr.toString()}`);
    return r.stdout;
}

// ---------------------------------------------------------------------------
// one isolated "host" per test: own prefix, state dir, status file, env file
// ---------------------------------------------------------------------------
interface Case {
    name: string;
    dir: string;
    stateDir: string;
    statusFile: string;
    staleMarker: string;
    lastSuccess: string;
    prefix: string;
    envFile: string;
}

function shellQuote(v: string): string {
    return `'${v.replace(/'/g, `'\\''`)}'`;
}

function writeEnvFile(file: string, vars: Record<string, string>, mode = 0o600): void {
    const body = Object.entries(vars)
        // `export` on purpose: the scripts must keep the settings out of their
        // children's environment even then (as with systemd's EnvironmentFile=).
        .map(([k, v]) => `export ${k}=${shellQuote(v)}`)
        .join("\n");
    fs.writeFileSync(file, `# written by backup.test.ts\n${body}\n`, { mode });
    fs.chmodSync(file, mode);
}

function newCase(name: string, vars: Record<string, string> = {}, mode = 0o600): Case {
    const dir = path.join(root, "cases", name);
    fs.mkdirSync(dir, { recursive: true });
    const c: Case = {
        name,
        dir,
        stateDir: path.join(dir, "state"),
        statusFile: path.join(dir, "status", "backup.json"),
        staleMarker: path.join(dir, "status", "backup.stale"),
        lastSuccess: path.join(dir, "state", "LAST_SUCCESS"),
        prefix: `cases/${name}/prod`,
        envFile: path.join(dir, "backup.env"),
    };
    writeEnvFile(
        c.envFile,
        {
            BACKUP_S3_BUCKET: BUCKET,
            BACKUP_S3_REGION: "us-east-1",
            BACKUP_S3_ENDPOINT: `http://127.0.0.1:${s3Port}`,
            BACKUP_S3_PREFIX: c.prefix,
            BACKUP_S3_ACCESS_KEY_ID: ACCESS_KEY,
            BACKUP_S3_SECRET_ACCESS_KEY: SECRET_KEY,
            BACKUP_S3_FORCE_PATH_STYLE: "true",
            BACKUP_DB_CONTAINER: APP_CONTAINER,
            BACKUP_DB_NAME: "app",
            BACKUP_DB_USER: "postgres",
            BACKUP_STATE_DIR: c.stateDir,
            BACKUP_STATUS_FILE: c.statusFile,
            BACKUP_ALERT_URL: `http://127.0.0.1:${httpPort}/hook/${name}/alert/${ALERT_TOKEN}`,
            BACKUP_HEARTBEAT_URL: `http://127.0.0.1:${httpPort}/hook/${name}/heartbeat/${HEARTBEAT_TOKEN}`,
            // one try each: keeps the failure cases fast (defaults are 3 and 10)
            BACKUP_RCLONE_RETRIES: "1",
            BACKUP_RCLONE_LOW_LEVEL_RETRIES: "1",
            BACKUP_LOCK_WAIT_SECONDS: "5",
            DRILL_READY_TIMEOUT_SECONDS: "60",
            ...vars,
        },
        mode,
    );
    return c;
}

async function script(c: Case, name: string, args: string[] = [], extra: Record<string, string> = {}, input?: string): Promise<RunResult> {
    const env = scriptEnv({ ONEBOX_BACKUP_ENV: c.envFile, BACKUP_NOW: isoSeconds(clockMs()), ...extra });
    const r = await run(path.join(installDir, name), args, { env, input });
    outputs.push(r.stdout, r.stderr);
    return r;
}

function hooks(c: Case, kind: "alert" | "heartbeat") {
    return requests.filter((r) => r.url.startsWith(`/hook/${c.name}/${kind}/`));
}

function readJson(file: string): Record<string, unknown> {
    return JSON.parse(fs.readFileSync(file, "utf8")) as Record<string, unknown>;
}

function mode(file: string): number {
    return fs.statSync(file).mode & 0o777;
}

function expectOk(r: RunResult, what: string): void {
    assert.equal(r.code, 0, `${what} exited ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
}

function expectFail(r: RunResult, what: string): void {
    assert.notEqual(r.code, 0, `${what} should have failed\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
}

/** Runs backup.sh and returns the dump key recorded in LAST_SUCCESS. */
/** The UTC timestamp in an object key, asserted to lie in the expected minute (YYYYMMDDTHHMM). */
function stampOf(key: string, minute: string): string {
    const m = /-(\d{8}T\d{6}Z)\.(?:dump|tar\.gz)(?:\.age)?$/.exec(key);
    assert.ok(m, `no timestamp in ${key}`);
    assert.ok(m[1].startsWith(minute), `${key} is not in ${minute}`);
    return m[1];
}

async function backupOk(c: Case, extra: Record<string, string> = {}): Promise<string> {
    const r = await script(c, "backup.sh", [], extra);
    expectOk(r, "backup.sh");
    const line = fs.readFileSync(c.lastSuccess, "utf8").trim();
    return line.split(" ")[1];
}

function cloneDb(name: string): void {
    sql("postgres", `DROP DATABASE IF EXISTS ${name}; CREATE DATABASE ${name} TEMPLATE app;`);
}

const SEED_SQL = `
CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL);
INSERT INTO users SELECT g, 'user' || g || '@example.test' FROM generate_series(1, 3) g;
CREATE TABLE orders (id serial PRIMARY KEY, user_id int REFERENCES users(id), total numeric(10,2));
INSERT INTO orders (user_id, total) SELECT 1 + g % 3, g * 10 FROM generate_series(1, 5) g;
CREATE TABLE empty_audit (id int, note text);
CREATE SCHEMA billing;
CREATE TABLE billing.invoices (id int PRIMARY KEY, amount int);
INSERT INTO billing.invoices VALUES (1, 100), (2, 250);
`;
const SEEDED = { users: 3, orders: 5, empty_audit: 0, "billing.invoices": 2 };

// ---------------------------------------------------------------------------
void describe("backup host scripts against real PostgreSQL, s3rver, rclone and age", { skip: SKIP }, () => {
    before(async () => {
        root = fs.mkdtempSync(path.join(os.tmpdir(), "onebox-backup-test-"));
        fs.chmodSync(root, 0o755); // the postgres user must traverse into the shim's clusters
        installDir = path.join(root, "install");
        binDir = path.join(root, "bin");
        shimState = path.join(root, "docker-shim");
        scriptTmp = path.join(root, "tmp");
        argvLog = path.join(root, "argv.log");
        for (const d of [installDir, binDir, shimState, scriptTmp]) fs.mkdirSync(d, { recursive: true, mode: 0o755 });
        fs.chmodSync(shimState, 0o755);
        for (const n of SCRIPT_NAMES) fs.copyFileSync(path.join(SCRIPTS_SRC, n), path.join(installDir, n));
        for (const n of SCRIPT_NAMES) fs.chmodSync(path.join(installDir, n), 0o755);
        fs.symlinkSync(path.join(HERE, "docker-shim.sh"), path.join(binDir, "docker"));
        for (const t of ["rclone", "curl", "age"]) fs.symlinkSync(path.join(HERE, "argv-recorder.sh"), path.join(binDir, t));
        fs.writeFileSync(argvLog, "");

        // alert / heartbeat recorder
        httpServer = http.createServer((req, res) => {
            let body = "";
            req.on("data", (d: Buffer) => (body += d.toString()));
            req.on("end", () => {
                requests.push({ method: req.method ?? "", url: req.url ?? "", body });
                res.writeHead(200, { "Content-Type": "text/plain" });
                res.end("ok\n");
            });
        });
        await new Promise<void>((resolve) => httpServer!.listen(0, "127.0.0.1", resolve));
        httpPort = (httpServer.address() as net.AddressInfo).port;

        // S3
        s3Port = await freePort();
        const s3Dir = path.join(root, "s3");
        fs.mkdirSync(s3Dir);
        s3Proc = spawn(S3RVER!, ["-d", s3Dir, "-a", "127.0.0.1", "-p", String(s3Port), "--configure-bucket", BUCKET, "--silent"], {
            stdio: ["ignore", "ignore", "pipe"],
            env: scriptEnv({ ARGV_LOG: "" }),
        });
        await waitFor("s3rver", () => canConnect(s3Port), 20_000);

        // the recording proxy in front of s3rver
        proxyServer = http.createServer((req, res) => {
            const url = new URL(req.url ?? "/", `http://${req.headers.host ?? S3_HOST}`);
            proxied.push({ method: req.method ?? "", host: url.hostname, path: url.pathname });
            let target = url.pathname + url.search;
            if (url.hostname !== S3_HOST) {
                if (!url.hostname.endsWith(`.${S3_HOST}`)) {
                    res.writeHead(502).end();
                    return;
                }
                target = `/${url.hostname.slice(0, -S3_HOST.length - 1)}${target}`;
            }
            if (proxyDeniesDeletes && req.method === "DELETE") {
                res.writeHead(403, { "Content-Type": "application/xml" });
                res.end('<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>');
                return;
            }
            const upstream = http.request(
                { host: "127.0.0.1", port: s3Port, method: req.method, path: target, headers: { ...req.headers, host: `127.0.0.1:${s3Port}` } },
                (up) => {
                    res.writeHead(up.statusCode ?? 502, up.headers);
                    up.pipe(res);
                },
            );
            upstream.on("error", () => res.writeHead(502).end());
            req.pipe(upstream);
        });
        await new Promise<void>((resolve) => proxyServer!.listen(0, "127.0.0.1", resolve));
        proxyPort = (proxyServer.address() as net.AddressInfo).port;

        // the application's PostgreSQL "container"
        const appEnv = path.join(root, "app-db.env");
        fs.writeFileSync(appEnv, "POSTGRES_PASSWORD=app-db-password\nPOSTGRES_DB=app\n", { mode: 0o600 });
        dockerSync(["run", "-d", "--name", APP_CONTAINER, "--env-file", appEnv, APP_IMAGE]);
        await waitFor(
            "the application database",
            () => spawnSync(path.join(binDir, "docker"), ["exec", APP_CONTAINER, "pg_isready", "-q", "-h", "127.0.0.1"], { env: scriptEnv({ ARGV_LOG: "" }) }).status === 0,
            60_000,
        );
        sql("app", SEED_SQL);
        assert.deepEqual(rowCounts("app"), SEEDED);
    });

    after(async () => {
        if (shimState && fs.existsSync(path.join(shimState, "containers"))) {
            for (const name of fs.readdirSync(path.join(shimState, "containers"))) {
                spawnSync(path.join(binDir, "docker"), ["rm", "-f", name], { env: scriptEnv({ ARGV_LOG: "" }) });
            }
        }
        if (s3Proc && s3Proc.exitCode === null) {
            const exited = new Promise((r) => s3Proc!.once("exit", r));
            s3Proc.kill("SIGTERM");
            await Promise.race([exited, sleep(5000)]);
            if (s3Proc.exitCode === null) s3Proc.kill("SIGKILL");
        }
        if (httpServer) await new Promise((r) => httpServer!.close(r));
        if (proxyServer) {
            proxyServer.closeAllConnections();
            await new Promise((r) => proxyServer!.close(r));
        }
        if (root) fs.rmSync(root, { recursive: true, force: true });
    });

    void it("B1/B3: backup uploads a verified dump to daily/ with the local size, writes LAST_SUCCESS, status ok, heartbeat", async () => {
        const c = newCase("basic");
        // A Wednesday: on the weekly day (Sunday) a weekly copy is made too (tested below).
        const wednesday = "2026-11-25T03:30:00Z";
        const r = await script(c, "backup.sh", [], { BACKUP_NOW: wednesday });
        expectOk(r, "backup.sh");
        assert.match(r.stdout, /dump verified with pg_restore --list: 4 table\(s\)/);

        const line = fs.readFileSync(c.lastSuccess, "utf8");
        const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) (\S+)\n$/.exec(line);
        assert.ok(m, `LAST_SUCCESS format: ${line}`);
        const key = m[2];
        assert.match(key, new RegExp(`^${c.prefix}/daily/app-20261125T0330\\d{2}Z\\.dump$`));
        // LAST_SUCCESS is written by the scripts' clock, which started at the pinned instant.
        const written = Date.parse(m[1]) - Date.parse(wednesday);
        assert.ok(written >= 0 && written < SCRIPT_TIMEOUT_MS, `LAST_SUCCESS ${m[1]} vs ${wednesday}`);

        const objects = listObjects(c.prefix);
        assert.deepEqual([...objects.keys()], [key]);
        const body = readObject(key);
        assert.equal(objects.get(key), body.length);
        assert.equal(body.subarray(0, 5).toString(), "PGDMP");
        // the uploaded bytes are a complete archive listing the seeded tables
        const list = spawnSync(path.join(PG_BIN!, "pg_restore"), ["--list"], { input: body, encoding: "utf8" });
        assert.equal(list.status, 0, list.stderr);
        for (const t of ["users", "orders", "empty_audit", "invoices"]) assert.match(list.stdout, new RegExp(` TABLE \\S+ ${t} `));

        const status = readJson(c.statusFile);
        assert.equal(status.status, "ok");
        assert.equal(status.lastKey, key);
        assert.equal(status.maxAgeSeconds, 26 * 3600);
        assert.ok(typeof status.ageSeconds === "number" && status.ageSeconds >= 0 && status.ageSeconds < 120);
        assert.equal(mode(c.statusFile), 0o644);
        assert.equal(fs.existsSync(c.staleMarker), false);
        assert.equal(mode(c.stateDir), 0o700);

        assert.equal(hooks(c, "heartbeat").length, 1);
        assert.equal(hooks(c, "heartbeat")[0].method, "GET");
        assert.equal(hooks(c, "alert").length, 0);
        assert.deepEqual(fs.readdirSync(scriptTmp), [], "private temp dirs are removed");
        assert.match(fs.readFileSync(path.join(c.stateDir, "last-run.log"), "utf8"), /backup finished/);
    });

    void it("B1: a valid archive of an empty database is accepted (with a warning)", async () => {
        sql("postgres", "DROP DATABASE IF EXISTS app_empty; CREATE DATABASE app_empty;");
        const c = newCase("empty-db", { BACKUP_DB_NAME: "app_empty" });
        const r = await script(c, "backup.sh");
        expectOk(r, "backup.sh");
        assert.match(r.stderr, /valid archive but contains no table/);
        assert.match(fs.readFileSync(c.lastSuccess, "utf8"), /daily\/app_empty-\d{8}T\d{6}Z\.dump/);
    });

    void it("B4: restore --into-scratch recreates the seeded row counts; --key picks an older dump; latest is the newest", async () => {
        cloneDb("app_r");
        const c = newCase("restore", { BACKUP_DB_NAME: "app_r" });
        const first = await backupOk(c, { BACKUP_NOW: "2024-06-03T01:00:00Z" });
        sql("app_r", "INSERT INTO users VALUES (4, 'late@example.test'); INSERT INTO orders (user_id, total) VALUES (4, 1);");
        const second = await backupOk(c, { BACKUP_NOW: "2024-06-04T01:00:00Z" });
        assert.notEqual(first, second);

        let r = await script(c, "restore.sh", ["--into-scratch", "scratch_latest"]);
        expectOk(r, "restore.sh latest");
        assert.match(r.stdout, new RegExp(`restore summary: ${second} -> database scratch_latest: 4 table\\(s\\)`));
        assert.deepEqual(rowCounts("scratch_latest"), rowCounts("app_r"));
        assert.deepEqual(rowCounts("scratch_latest"), { ...SEEDED, users: 4, orders: 6 });

        r = await script(c, "restore.sh", ["--key", first.replace(`${c.prefix}/`, ""), "--into-scratch", "scratch_first"]);
        expectOk(r, "restore.sh --key");
        assert.deepEqual(rowCounts("scratch_first"), SEEDED);

        // an existing scratch database is only replaced with --yes; the live name is refused
        r = await script(c, "restore.sh", ["--into-scratch", "scratch_first"]);
        expectFail(r, "restore into existing scratch");
        assert.match(r.stderr, /already exists: add --yes/);
        r = await script(c, "restore.sh", ["--into-scratch", "app_r", "--yes"]);
        expectFail(r, "restore into the live name as scratch");
        assert.match(r.stderr, /may not be the live database/);
        r = await script(c, "restore.sh", ["--key", first, "--into-scratch", "scratch_first", "--yes"]);
        expectOk(r, "restore.sh --yes over existing scratch");
        assert.deepEqual(rowCounts("scratch_first"), SEEDED);
    });

    void it("B4: restore --into-live needs --yes, takes a 0600 safety dump, then restores the backup", async () => {
        cloneDb("app_live");
        const c = newCase("live", { BACKUP_DB_NAME: "app_live" });
        await backupOk(c);
        sql("app_live", "DELETE FROM orders; DELETE FROM users WHERE id = 1;");

        let r = await script(c, "restore.sh", ["--into-live"]);
        expectFail(r, "restore --into-live without --yes");
        assert.match(r.stderr, /add --yes/);
        assert.equal(rowCounts("app_live").orders, 0, "nothing changed without --yes");

        r = await script(c, "restore.sh", ["--into-live", "--yes"]);
        expectOk(r, "restore --into-live --yes");
        assert.deepEqual(rowCounts("app_live"), SEEDED);
        const safety = fs.readdirSync(c.stateDir).filter((f) => /^safety-\d{8}T\d{6}Z\.dump$/.test(f));
        assert.equal(safety.length, 1);
        const safetyFile = path.join(c.stateDir, safety[0]);
        assert.equal(mode(safetyFile), 0o600);
        // the safety dump holds the pre-restore state (no orders)
        sql("postgres", "DROP DATABASE IF EXISTS safety_check; CREATE DATABASE safety_check;");
        const restore = spawnSync(path.join(binDir, "docker"), ["exec", "-i", APP_CONTAINER, "pg_restore", "-U", "postgres", "-d", "safety_check", "--no-owner"], {
            env: scriptEnv({ ARGV_LOG: "" }),
            input: fs.readFileSync(safetyFile),
        });
        assert.equal(restore.status, 0, restore.stderr.toString());
        assert.equal(rowCounts("safety_check").orders, 0);
        assert.equal(rowCounts("safety_check").users, 2);
    });

    void it("B2: encrypted backup uploads age ciphertext (dump and BACKUP_DIRS); restore reads the identity from stdin; drill skips", async () => {
        const keyFile = path.join(root, "age-identity.txt");
        const kg = spawnSync("age-keygen", ["-o", keyFile], { encoding: "utf8" });
        assert.equal(kg.status, 0, kg.stderr);
        const identity = fs.readFileSync(keyFile, "utf8");
        ageSecret = /^AGE-SECRET-KEY-1\S+$/m.exec(identity)![0];
        const recipient = spawnSync("age-keygen", ["-y", keyFile], { encoding: "utf8" }).stdout.trim();
        assert.match(recipient, /^age1/);

        const uploads = path.join(root, "enc-data", "uploads");
        fs.mkdirSync(uploads, { recursive: true });
        fs.writeFileSync(path.join(uploads, "secret-photo.jpg"), "JPEGDATA".repeat(100));
        cloneDb("app_enc");
        const c = newCase("encrypted", { BACKUP_DB_NAME: "app_enc", BACKUP_AGE_RECIPIENT: recipient, BACKUP_DIRS: uploads });
        const key = await backupOk(c);
        assert.match(key, /\.dump\.age$/);

        const objects = listObjects(c.prefix);
        const filesKey = [...objects.keys()].find((k) => k.startsWith(`${c.prefix}/files/`));
        assert.ok(filesKey && /\/files\/uploads-\d{8}T\d{6}Z\.tar\.gz\.age$/.test(filesKey), `files object: ${[...objects.keys()].join(", ")}`);
        for (const k of [key, filesKey]) {
            const body = readObject(k);
            assert.equal(body.subarray(0, 21).toString(), "age-encryption.org/v1", `${k} is age ciphertext`);
            assert.ok(!body.includes("PGDMP") && !body.includes("JPEGDATA"), `${k} holds no plaintext`);
            assert.equal(objects.get(k), body.length);
        }

        // no identity on stdin: refused with a clear message
        let r = await script(c, "restore.sh", ["--into-scratch", "enc_none"], {}, "");
        expectFail(r, "restore of an encrypted dump without identity");
        assert.match(r.stderr, /give the age identity on stdin/);

        r = await script(c, "restore.sh", ["--into-scratch", "enc_scratch"], {}, identity);
        expectOk(r, "restore with identity on stdin");
        assert.match(r.stdout, /dump decrypted/);
        assert.deepEqual(rowCounts("enc_scratch"), SEEDED);
        assert.deepEqual(fs.readdirSync(scriptTmp), [], "the identity's temp dir is removed");

        // drill: the private key is not on the host -> skipped, exit 0
        r = await script(c, "restore-drill.sh");
        expectOk(r, "drill of an encrypted dump");
        const drill = readJson(path.join(c.stateDir, "drill.json"));
        assert.equal(drill.skipped, "encrypted");
        assert.equal(drill.ok, null);
        assert.equal(drill.key, key);
        assert.equal((readJson(c.statusFile).drill as Record<string, unknown>).skipped, "encrypted");
        assert.equal(hooks(c, "alert").length, 0);

        // opt-in identity file (places the key on the host): refused unless 0600, then the drill runs
        const hostKey = path.join(c.dir, "drill-identity.txt");
        fs.writeFileSync(hostKey, identity, { mode: 0o644 });
        fs.chmodSync(hostKey, 0o644);
        fs.appendFileSync(c.envFile, `DRILL_AGE_IDENTITY_FILE=${shellQuote(hostKey)}\nDRILL_TABLES='users billing.invoices'\n`);
        r = await script(c, "restore-drill.sh");
        expectFail(r, "drill with a 0644 identity file");
        assert.match(r.stderr, /DRILL_AGE_IDENTITY_FILE .* has mode 644/);
        fs.chmodSync(hostKey, 0o600);
        r = await script(c, "restore-drill.sh");
        expectOk(r, "drill with DRILL_AGE_IDENTITY_FILE");
        assert.equal(readJson(path.join(c.stateDir, "drill.json")).ok, true);
    });

    void it("B3/B5: failing upload (wrong access key) exits non-zero, leaves LAST_SUCCESS byte-for-byte, calls the alert; the status says failed until a success", async () => {
        const c = newCase("bad-credentials");
        await backupOk(c);
        const before = fs.readFileSync(c.lastSuccess);
        const beforeObjects = listObjects(c.prefix);
        fs.appendFileSync(c.envFile, "BACKUP_S3_ACCESS_KEY_ID='NOT-A-KEY'\n");
        const hbBefore = hooks(c, "heartbeat").length;

        // An hour later: a new object name, while the previous success is still recent.
        const r = await script(c, "backup.sh", [], { BACKUP_NOW: isoSeconds(clockMs() + 3600_000) });
        expectFail(r, "backup with a wrong access key");
        assert.match(r.stderr, /backup FAILED at step 'upload'/);
        assert.ok(fs.readFileSync(c.lastSuccess).equals(before), "LAST_SUCCESS unchanged");
        assert.deepEqual(listObjects(c.prefix), beforeObjects, "nothing new in the bucket");
        const alerts = hooks(c, "alert");
        assert.equal(alerts.length, 1);
        assert.equal(alerts[0].method, "POST");
        const body = JSON.parse(alerts[0].body) as Record<string, unknown>;
        assert.equal(body.event, "onebox-backup-failed");
        assert.equal(body.step, "upload");
        assert.equal(typeof body.exitCode, "number");
        assert.notEqual(body.exitCode, 0);
        assert.equal(hooks(c, "heartbeat").length, hbBefore, "no heartbeat on failure");
        // B5: the previous success is recent, yet the status is not ok: the last run failed.
        const failed = readJson(c.statusFile);
        assert.equal(failed.status, "failed");
        assert.match(String(failed.reason), /the last backup run failed at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(step upload\)/);
        assert.equal((failed.lastFailure as Record<string, unknown>).step, "upload");
        assert.ok(fs.existsSync(c.staleMarker), "the marker that makes the proxy answer 503");
        assert.equal((await script(c, "backup-status.sh")).code, 0);
        assert.equal(readJson(c.statusFile).status, "failed", "the status timer keeps it failed");
        assert.deepEqual(fs.readdirSync(scriptTmp), []);

        // The key fixed: the next success clears it.
        fs.appendFileSync(c.envFile, `BACKUP_S3_ACCESS_KEY_ID='${ACCESS_KEY}'\n`);
        expectOk(await script(c, "backup.sh", [], { BACKUP_NOW: isoSeconds(clockMs() + 2 * 3600_000) }), "backup with the key fixed");
        const ok = readJson(c.statusFile);
        assert.equal(ok.status, "ok");
        assert.equal(ok.reason, null);
        assert.equal(ok.lastFailure, null);
        assert.equal(fs.existsSync(c.staleMarker), false);
    });

    void it("B3: S3 endpoint down -> non-zero, LAST_SUCCESS unchanged, alert; an unreachable alert URL does not make it worse", async () => {
        const deadPort = await freePort();
        const c = newCase("s3-down");
        await backupOk(c);
        const before = fs.readFileSync(c.lastSuccess);
        fs.appendFileSync(c.envFile, `BACKUP_S3_ENDPOINT='http://127.0.0.1:${deadPort}'\n`);
        let r = await script(c, "backup.sh");
        expectFail(r, "backup with S3 down");
        const firstCode = r.code;
        assert.ok(fs.readFileSync(c.lastSuccess).equals(before));
        assert.equal(hooks(c, "alert").length, 1);
        assert.equal((JSON.parse(hooks(c, "alert")[0].body) as Record<string, unknown>).step, "upload");

        // alert endpoint down as well: same exit code, a warning, bounded time
        fs.appendFileSync(c.envFile, `BACKUP_ALERT_URL='http://127.0.0.1:${deadPort}/alert'\n`);
        const logged = fs.readFileSync(argvLog, "utf8").length;
        r = await script(c, "backup.sh");
        assert.equal(r.code, firstCode, "same exit code whether or not the alert is delivered");
        assert.match(r.stderr, /could not deliver the alert/);
        // Bounded by construction (not by timing this machine): the alert call carries
        // a connect timeout, a per-try limit and a limit on all retries together.
        const curls = fs.readFileSync(argvLog, "utf8").slice(logged).split("\n").filter((l) => l.startsWith("curl "));
        assert.equal(curls.length, 1, curls.join("\n"));
        assert.match(curls[0], /--connect-timeout \d+ /);
        assert.match(curls[0], /--max-time \d+ /);
        assert.match(curls[0], /--retry-max-time \d+ /);
        assert.ok(fs.readFileSync(c.lastSuccess).equals(before));
    });

    void it("B1: the upload check (lib.sh verify_remote_size) rejects a size mismatch and a missing object", async () => {
        const c = newCase("verify-upload");
        const key = await backupOk(c);
        const size = listObjects(c.prefix).get(key)!;
        const probe = path.join(c.dir, "probe.bin");
        const check = async (bytes: number, k: string) => {
            fs.writeFileSync(probe, Buffer.alloc(bytes, 1));
            return run("bash", ["-c", 'set -euo pipefail; source "$1/lib.sh"; load_env; verify_remote_size "$2" "$3"', "verify", installDir, probe, k], {
                env: scriptEnv({ ONEBOX_BACKUP_ENV: c.envFile }),
            });
        };
        expectOk(await check(size, key), "same size");
        let r = await check(size + 1, key);
        expectFail(r, "size mismatch");
        assert.match(r.stderr, new RegExp(`has ${size} bytes, local file has ${size + 1}`));
        r = await check(size, `${c.prefix}/daily/never-uploaded.dump`);
        expectFail(r, "missing object");
        assert.match(r.stderr, /is not in the bucket/);
    });

    void it("B1/B3: a failing pg_dump (missing database) fails at step dump, uploads nothing, alerts", async () => {
        const c = newCase("dump-fails", { BACKUP_DB_NAME: "no_such_db" });
        const r = await script(c, "backup.sh");
        expectFail(r, "backup of a missing database");
        assert.match(r.stderr, /backup FAILED at step 'dump'/);
        assert.equal(fs.existsSync(c.lastSuccess), false);
        assert.equal(listObjects(c.prefix).size, 0);
        assert.equal((JSON.parse(hooks(c, "alert")[0].body) as Record<string, unknown>).step, "dump");
        assert.equal(readJson(c.statusFile).status, "never");
        assert.ok(fs.existsSync(c.staleMarker));
    });

    void it("B5: with point-in-time recovery, WAL waiting in the spool longer than PITR_MAX_LAG_SECONDS makes the status failed", async () => {
        const spool = path.join(root, "cases", "pitr-lag-spool");
        fs.mkdirSync(spool, { recursive: true });
        const c = newCase("pitr-lag", { PITR_SPOOL_DIR: spool, PITR_MAX_LAG_SECONDS: "300" });
        fs.mkdirSync(c.stateDir, { recursive: true });
        fs.writeFileSync(c.lastSuccess, `${isoSeconds(clockMs() - 3600_000)} ${c.prefix}/daily/app-20240101T000000Z.dump\n`);
        const status = async () => {
            expectOk(await script(c, "backup-status.sh"), "backup-status.sh");
            return readJson(c.statusFile);
        };
        const segment = path.join(spool, "000000010000000000000007");
        const at = (ms: number) => fs.utimesSync(segment, ms / 1000, ms / 1000);
        assert.equal((await status()).status, "ok", "an empty spool");
        fs.writeFileSync(segment, "wal");
        at(clockMs() - 60_000);
        assert.equal((await status()).status, "ok", "a segment one minute old is on its way");
        fs.writeFileSync(path.join(spool, ".000000010000000000000008.part"), "half");
        at(clockMs() - 10 * 60_000);
        const s = await status();
        assert.equal(s.status, "failed");
        assert.match(String(s.reason), /WAL archiving is behind: a segment has waited more than 300 seconds/);
        assert.ok(fs.existsSync(c.staleMarker), "the proxy answers 503");
        fs.rmSync(segment);
        assert.equal((await status()).status, "ok", "pushed: ok again (a file being written does not count)");
        assert.equal(fs.existsSync(c.staleMarker), false);
    });

    void it("B3: status is never/stale/ok from LAST_SUCCESS; backup.stale exists unless ok; no secret in the public file", async () => {
        const c = newCase("status", { BACKUP_MAX_AGE_HOURS: "26" });
        const status = async () => {
            const r = await script(c, "backup-status.sh");
            expectOk(r, "backup-status.sh");
            return readJson(c.statusFile);
        };
        let s = await status();
        assert.equal(s.status, "never");
        assert.equal(s.lastSuccess, null);
        assert.ok(fs.existsSync(c.staleMarker));

        const key = `${c.prefix}/daily/app-20240101T000000Z.dump`;
        fs.writeFileSync(c.lastSuccess, `${isoSeconds(clockMs() - 30 * 3600_000)} ${key}\n`);
        s = await status();
        assert.equal(s.status, "stale");
        assert.ok((s.ageSeconds as number) >= 30 * 3600 - 5);
        assert.equal(s.maxAgeSeconds, 26 * 3600);
        assert.equal(s.lastKey, key);
        assert.ok(fs.existsSync(c.staleMarker), "stale marker created");

        fs.writeFileSync(c.lastSuccess, `${isoSeconds(clockMs() - 3600_000)} ${key}\n`);
        s = await status();
        assert.equal(s.status, "ok");
        assert.equal(fs.existsSync(c.staleMarker), false, "stale marker removed");
        assert.equal(mode(c.statusFile), 0o644);

        fs.writeFileSync(c.lastSuccess, "garbage\n");
        s = await status();
        assert.equal(s.status, "stale");
        assert.ok(fs.existsSync(c.staleMarker));

        const text = fs.readFileSync(c.statusFile, "utf8");
        for (const secret of [ACCESS_KEY, SECRET_KEY, BUCKET, ALERT_TOKEN, HEARTBEAT_TOKEN, "127.0.0.1"]) {
            assert.ok(!text.includes(secret), `status file must not contain ${secret}`);
        }
    });

    void it("B4: drill restores the latest dump into a throwaway --network none container and passes; fails on an empty DRILL_TABLES table", async () => {
        cloneDb("app_drill");
        const c = newCase("drill", { BACKUP_DB_NAME: "app_drill", DRILL_TABLES: "users orders billing.invoices" });
        const key = await backupOk(c);
        // a drill container left behind by a killed earlier run
        const staleEnv = path.join(c.dir, "stale.env");
        fs.writeFileSync(staleEnv, "POSTGRES_PASSWORD=stale\n", { mode: 0o600 });
        dockerSync(["run", "-d", "--rm", "--name", "onebox-drill-stale", "--label", "onebox.role=backup-drill", "--env-file", staleEnv, APP_IMAGE]);
        const argvStart = fs.readFileSync(argvLog, "utf8").length;

        let r = await script(c, "restore-drill.sh");
        expectOk(r, "drill");
        assert.match(r.stderr, /removing drill container onebox-drill-stale left by an earlier run/);
        let drill = readJson(path.join(c.stateDir, "drill.json"));
        assert.equal(drill.ok, true);
        assert.equal(drill.key, key);
        assert.equal(drill.userTables, 4);
        assert.deepEqual(drill.tablesChecked, [
            { table: "users", rows: 3 },
            { table: "orders", rows: 5 },
            { table: "billing.invoices", rows: 2 },
        ]);
        assert.equal(typeof drill.durationSeconds, "number");
        assert.deepEqual((readJson(c.statusFile).drill as Record<string, unknown>).ok, true);

        // what the drill asked Docker for: default image = the app container's, no network, removed
        const calls = fs.readFileSync(argvLog, "utf8").slice(argvStart).split("\n");
        assert.ok(calls.some((l) => l.startsWith(`docker inspect --format {{.Config.Image}} ${APP_CONTAINER}`)));
        const runCall = calls.find((l) => l.startsWith("docker run "));
        assert.ok(runCall, "docker run was called");
        assert.match(runCall, /^docker run -d --rm --name onebox-drill-\S+ --network none .*--env-file \S+ postgres:15-test$/);
        const drillName = /--name (\S+)/.exec(runCall)![1];
        assert.ok(calls.some((l) => l === `docker rm -f ${drillName}`));
        assert.deepEqual(fs.readdirSync(path.join(shimState, "containers")), [APP_CONTAINER], "throwaway container removed");

        // empty and missing tables fail the drill
        fs.appendFileSync(c.envFile, "DRILL_TABLES='users empty_audit no_such_table'\n");
        r = await script(c, "restore-drill.sh");
        expectFail(r, "drill with an empty table");
        assert.match(r.stderr, /table empty_audit is empty/);
        assert.match(r.stderr, /table no_such_table is missing/);
        drill = readJson(path.join(c.stateDir, "drill.json"));
        assert.equal(drill.ok, false);
        assert.deepEqual(drill.tablesChecked, [
            { table: "users", rows: 3 },
            { table: "empty_audit", rows: 0 },
            { table: "no_such_table", rows: null },
        ]);
        const alerts = hooks(c, "alert");
        assert.equal(alerts.length, 1);
        assert.equal((JSON.parse(alerts[0].body) as Record<string, unknown>).job, "restore-drill");
        // B5: a failed drill makes the status (and so the endpoint) fail, whatever the backup's age.
        const afterDrill = readJson(c.statusFile);
        assert.equal((afterDrill.drill as Record<string, unknown>).ok, false);
        assert.equal(afterDrill.status, "drill-failed");
        assert.equal(afterDrill.reason, "the last restore drill failed");
        assert.ok(fs.existsSync(c.staleMarker));
        assert.deepEqual(fs.readdirSync(path.join(shimState, "containers")), [APP_CONTAINER], "removed after a failure too");
        assert.deepEqual(fs.readdirSync(scriptTmp), []);
    });

    void it("H10/R3: an env file readable by group or others is refused before it is read", async () => {
        for (const m of [0o644, 0o640, 0o604]) {
            const c = newCase(`env-mode-${m.toString(8)}`, {}, m);
            const r = await script(c, "backup.sh");
            expectFail(r, `backup with env mode ${m.toString(8)}`);
            assert.match(r.stderr, new RegExp(`has mode ${m.toString(8)}.*chmod 600`));
            assert.equal(fs.existsSync(c.stateDir), false, "nothing written");
            assert.equal(listObjects(c.prefix).size, 0, "nothing uploaded");
            for (const s of ["backup-status.sh", "restore.sh", "restore-drill.sh"]) {
                expectFail(await script(c, s), `${s} with env mode ${m.toString(8)}`);
            }
        }
        const missingEnv = await run(path.join(installDir, "backup.sh"), [], { env: scriptEnv({ ONEBOX_BACKUP_ENV: path.join(root, "nope.env") }) });
        expectFail(missingEnv, "backup without env file");
        assert.match(missingEnv.stderr, /does not exist/);
    });

    void it("B2/H10: settings are validated with every problem listed (a private age key is refused)", async () => {
        const c = newCase("bad-settings", { BACKUP_S3_BUCKET: "Bad_Bucket", BACKUP_WEEKLY_DAY: "9", BACKUP_AGE_RECIPIENT: "AGE-SECRET-KEY-1XYZ", BACKUP_DIRS: "relative/dir" });
        const r = await script(c, "backup.sh");
        expectFail(r, "backup with bad settings");
        assert.match(r.stderr, /BACKUP_S3_BUCKET must be/);
        assert.match(r.stderr, /BACKUP_WEEKLY_DAY must be/);
        assert.match(r.stderr, /BACKUP_AGE_RECIPIENT must be an age public key/);
        assert.match(r.stderr, /BACKUP_DIRS entry 'relative\/dir'/);
        assert.match(r.stderr, /invalid settings: 4 problem/);
    });

    void it("B1: BACKUP_DIRS are archived to files/ and verified; a missing directory fails the run", async () => {
        const data = path.join(root, "dirs-data");
        const uploads = path.join(data, "uploads");
        const media = path.join(data, "srv", "media");
        fs.mkdirSync(path.join(uploads, "2024"), { recursive: true });
        fs.mkdirSync(media, { recursive: true });
        fs.writeFileSync(path.join(uploads, "2024", "a.txt"), "hello uploads\n");
        fs.writeFileSync(path.join(media, "b.bin"), Buffer.alloc(4096, 7));
        const c = newCase("dirs", { BACKUP_DIRS: `${uploads} ${media}` });
        const dumpKey = await backupOk(c, { BACKUP_NOW: "2024-06-05T02:00:00Z" });
        // One timestamp names every object of a run; the scripts' clock started at 02:00:00.
        const ts = stampOf(dumpKey, "20240605T0200");
        const objects = listObjects(c.prefix);
        const expected = [`${c.prefix}/files/uploads-${ts}.tar.gz`, `${c.prefix}/files/media-${ts}.tar.gz`];
        for (const k of expected) {
            assert.ok(objects.has(k), `${k} in ${[...objects.keys()].join(", ")}`);
            const body = readObject(k);
            assert.equal(objects.get(k), body.length);
            const listing = spawnSync("tar", ["-tzf", "-"], { input: body, encoding: "utf8" });
            assert.equal(listing.status, 0);
            assert.match(listing.stdout, k.includes("uploads") ? /\.\/2024\/a\.txt/ : /\.\/b\.bin/);
        }
        assert.equal(dumpKey, `${c.prefix}/daily/app-${ts}.dump`);
        assert.ok(objects.has(dumpKey));

        const before = fs.readFileSync(c.lastSuccess);
        fs.appendFileSync(c.envFile, `BACKUP_DIRS=${shellQuote(`${uploads} ${path.join(data, "gone")}`)}\n`);
        const r = await script(c, "backup.sh", [], { BACKUP_NOW: "2024-06-06T02:00:00Z" });
        expectFail(r, "backup with a missing directory");
        assert.match(r.stderr, /step 'files:.*gone'/);
        assert.ok(fs.readFileSync(c.lastSuccess).equals(before));
        assert.equal((JSON.parse(hooks(c, "alert")[0].body) as Record<string, unknown>).step, `files:${path.join(data, "gone")}`);
    });

    void it("B1/S3: weekly copy: on BACKUP_WEEKLY_DAY the dump is also server-side copied to weekly/ (BACKUP_NOW injects the day)", async () => {
        const c = newCase("weekly");
        // 2024-06-02 is a Sunday (ISO 7, the default weekly day); 2024-06-03 a Monday
        const sunday = await backupOk(c, { BACKUP_NOW: "2024-06-02T03:30:00Z" });
        const monday = await backupOk(c, { BACKUP_NOW: "2024-06-03T03:30:00Z" });
        const objects = listObjects(c.prefix);
        const weekly = [...objects.keys()].filter((k) => k.startsWith(`${c.prefix}/weekly/`));
        assert.deepEqual(weekly, [`${c.prefix}/weekly/app-${stampOf(sunday, "20240602T0330")}.dump`]);
        assert.equal(objects.get(weekly[0]), objects.get(sunday));
        assert.ok(readObject(weekly[0]).equals(readObject(sunday)));
        assert.ok(objects.has(monday));

        fs.appendFileSync(c.envFile, "BACKUP_WEEKLY_DAY='1'\n");
        const monday2 = await backupOk(c, { BACKUP_NOW: "2024-06-10T03:30:00Z" });
        assert.ok(listObjects(c.prefix).has(`${c.prefix}/weekly/app-${stampOf(monday2, "20240610T0330")}.dump`));
        fs.appendFileSync(c.envFile, "BACKUP_WEEKLY_DAY='0'\n");
        await backupOk(c, { BACKUP_NOW: "2024-06-17T03:30:00Z" });
        assert.equal([...listObjects(c.prefix).keys()].filter((k) => k.startsWith(`${c.prefix}/weekly/`)).length, 2, "0 disables weekly copies");
    });

    void it("B3: flock: a second run waits at most BACKUP_LOCK_WAIT_SECONDS, then fails with an alert", async () => {
        const c = newCase("lock", { BACKUP_LOCK_WAIT_SECONDS: "1" });
        fs.mkdirSync(c.stateDir, { recursive: true, mode: 0o700 });
        const lockFile = path.join(c.stateDir, ".lock");
        const holder = spawn("flock", ["--no-fork", lockFile, "sleep", "30"], { stdio: "ignore" });
        try {
            await waitFor("the lock holder", () => spawnSync("flock", ["-n", lockFile, "true"]).status !== 0, 10_000);
            const r = await script(c, "backup.sh");
            expectFail(r, "overlapping backup");
            assert.match(r.stderr, /another backup\/restore\/drill run still holds/);
            assert.equal((JSON.parse(hooks(c, "alert")[0].body) as Record<string, unknown>).step, "lock");
            assert.equal(fs.existsSync(c.lastSuccess), false);
        } finally {
            const exited = new Promise((r) => holder.once("exit", r));
            holder.kill("SIGTERM");
            await Promise.race([exited, sleep(5000)]);
        }
    });

    void it("B1/B4: directories-only configuration (no database): archives uploaded, drill skipped", async () => {
        const dir = path.join(root, "only-files", "uploads");
        fs.mkdirSync(dir, { recursive: true });
        fs.writeFileSync(path.join(dir, "x.txt"), "x");
        const c = newCase("files-only", { BACKUP_DB_CONTAINER: "", BACKUP_DB_NAME: "", BACKUP_DIRS: dir });
        const key = await backupOk(c);
        assert.match(key, /\/files\/uploads-\d{8}T\d{6}Z\.tar\.gz$/);
        assert.deepEqual([...listObjects(c.prefix).keys()], [key]);
        const r = await script(c, "restore-drill.sh");
        expectOk(r, "drill without database");
        assert.equal(readJson(path.join(c.stateDir, "drill.json")).skipped, "no-database");
    });

    void it("restore.sh --volume: verifies without --yes, puts the newest (or a given) archive back into the same directory with owners and modes, keeps the old contents aside", async () => {
        const data = path.join(root, "volume-restore");
        const uploads = path.join(data, "shared", "uploads");
        fs.mkdirSync(path.join(uploads, "2026"), { recursive: true });
        fs.writeFileSync(path.join(uploads, "2026", "a.txt"), "first\n");
        const c = newCase("volume-restore", { BACKUP_DB_CONTAINER: "", BACKUP_DB_NAME: "", BACKUP_DIRS: uploads });
        const first = await backupOk(c, { BACKUP_NOW: "2026-11-20T02:00:00Z" });
        fs.writeFileSync(path.join(uploads, "2026", "a.txt"), "second\n");
        fs.writeFileSync(path.join(uploads, ".hidden"), "dot file\n", { mode: 0o640 });
        fs.chmodSync(path.join(uploads, ".hidden"), 0o640);
        fs.chownSync(path.join(uploads, ".hidden"), 1234, 4321);
        const second = await backupOk(c, { BACKUP_NOW: "2026-11-21T02:00:00Z" });
        assert.notEqual(first, second);
        const inode = fs.statSync(uploads).ino;

        fs.rmSync(path.join(uploads, "2026"), { recursive: true });
        fs.rmSync(path.join(uploads, ".hidden"));
        fs.writeFileSync(path.join(uploads, "after.txt"), "written after the backup\n");

        let r = await script(c, "restore.sh", ["--volume", "uploads"]);
        expectOk(r, "restore.sh --volume (verify)");
        assert.match(r.stderr + r.stdout, /nothing restored/);
        assert.deepEqual(fs.readdirSync(uploads), ["after.txt"], "without --yes nothing changes");

        r = await script(c, "restore.sh", ["--volume", "uploads", "--yes"], { BACKUP_NOW: "2026-11-22T09:00:00Z" });
        expectOk(r, "restore.sh --volume --yes");
        assert.equal(fs.readFileSync(path.join(uploads, "2026", "a.txt"), "utf8"), "second\n", "the newest archive");
        const hidden = fs.statSync(path.join(uploads, ".hidden"));
        assert.deepEqual([hidden.uid, hidden.gid, hidden.mode & 0o777], [1234, 4321, 0o640], "owner and mode as archived");
        assert.equal(fs.existsSync(path.join(uploads, "after.txt")), false);
        assert.equal(fs.statSync(uploads).ino, inode, "the directory itself stays (bind mounts keep seeing it)");
        // Named by the scripts' clock, which starts at BACKUP_NOW (09:00) and runs on.
        const beside = fs.readdirSync(path.join(data, "shared")).sort();
        assert.equal(beside.length, 2, `only the volume and the kept contents, no staging directory: ${beside.join(", ")}`);
        assert.match(beside[0], /^\.uploads\.before-restore-20261122T090\d{3}Z$/);
        assert.equal(beside[1], "uploads");
        assert.deepEqual(fs.readdirSync(path.join(data, "shared", beside[0])), ["after.txt"], "the replaced contents are kept aside");

        r = await script(c, "restore.sh", ["--volume", "uploads", "--key", first.replace(`${c.prefix}/`, ""), "--yes"], { BACKUP_NOW: "2026-11-22T09:05:00Z" });
        expectOk(r, "restore.sh --volume --key");
        assert.equal(fs.readFileSync(path.join(uploads, "2026", "a.txt"), "utf8"), "first\n", "the archive given by --key");
        assert.equal(fs.existsSync(path.join(uploads, ".hidden")), false);

        r = await script(c, "restore.sh", ["--volume", "media", "--yes"]);
        expectFail(r, "restore.sh --volume of an unknown volume");
        assert.match(r.stderr, /no backed-up volume is named media/);
        r = await script(c, "restore.sh", ["--volume", "uploads", "--key", first.replace(`${c.prefix}/`, "").replace("uploads-", "media-"), "--yes"]);
        expectFail(r, "restore.sh --volume with another volume's archive");
        assert.match(r.stderr, /is not an archive of volume uploads/);
        r = await script(c, "restore.sh", ["--volume", "uploads", "--into-live", "--yes"]);
        expectFail(r, "restore.sh --volume --into-live");
        assert.match(r.stderr, /for the database/);
        assert.equal(fs.readFileSync(path.join(uploads, "2026", "a.txt"), "utf8"), "first\n", "refused runs change nothing");
    });

    void it("Any S3: every provider preset's rclone profile and addressing uploads, verifies, copies weekly, prunes and restores against the local S3", async () => {
        // A Sunday (ISO 7, the default weekly day): the server-side weekly copy runs too.
        const sunday = "2026-11-22T03:30:00Z";
        const proxy = { HTTP_PROXY: `http://127.0.0.1:${proxyPort}` };
        for (const provider of S3_PROVIDERS) {
            const preset = S3_PRESETS[provider];
            const c = newCase(`preset-${provider}`, { ...viaProxy(provider), BACKUP_PRUNE: "host" });
            const old = `${c.prefix}/daily/app-${stampAt(Date.parse(sunday) - 30 * 86_400_000)}.dump`;
            putObject(old, "a dump from last month\n");
            const from = proxied.length;
            const key = await backupOk(c, { BACKUP_NOW: sunday, ...proxy });
            const seen = proxied.slice(from);
            assert.ok(seen.length > 0, `${provider}: the scripts went through the proxy`);
            const host = preset.pathStyle ? S3_HOST : `${BUCKET}.${S3_HOST}`;
            assert.deepEqual([...new Set(seen.map((r) => r.host))], [host], `${provider}: ${preset.pathStyle ? "path-style" : "virtual-hosted"} addressing`);
            for (const r of seen) {
                assert.equal(r.path.startsWith(`/${BUCKET}`), preset.pathStyle, `${provider}: ${r.method} ${r.path}`);
            }
            const methods = new Set(seen.map((r) => r.method));
            for (const m of ["PUT", "GET", "DELETE"]) assert.ok(methods.has(m), `${provider}: no ${m} in ${[...methods].join(" ")}`);

            const objects = listObjects(c.prefix);
            const stamp = stampOf(key, "20261122T0330");
            assert.deepEqual([...objects.keys()].sort(), [`${c.prefix}/daily/app-${stamp}.dump`, `${c.prefix}/weekly/app-${stamp}.dump`], `${provider}: upload, weekly copy, prune`);
            assert.equal(objects.get(`${c.prefix}/weekly/app-${stamp}.dump`), objects.get(key));

            const r = await script(c, "restore.sh", ["--key", "latest"], proxy);
            expectOk(r, `${provider}: restore.sh (download and verify)`);
            assert.match(r.stdout, new RegExp(`verified ${key}: 4 table`));
        }
    });

    void it("Any S3: the host prune deletes only under the prefix, only what is older than the retention, daily, weekly and files separately", async () => {
        // A Wednesday: no weekly copy, so weekly/ holds only what is seeded here.
        const now = Date.parse("2026-11-25T03:30:00Z");
        const day = 86_400_000;
        const c = newCase("prune", { BACKUP_PRUNE: "host", BACKUP_RETENTION_DAYS: "7", BACKUP_WEEKLY_RETENTION_WEEKS: "4" });
        const at = (sub: string, base: string, ageMs: number, ext = "dump") => `${c.prefix}/${sub}/${base}-${stampAt(now - ageMs)}.${ext}`;
        const doomed = [
            at("daily", "app", 8 * day),
            at("daily", "app", 7 * day + 3600_000),
            at("daily", "app", 40 * day, "dump.age"),
            at("weekly", "app", 29 * day),
            at("files", "uploads", 8 * day, "tar.gz"),
            at("files", "photos", 21 * day, "tar.gz"),
        ];
        const kept = [
            at("daily", "app", 6 * day),
            at("daily", "app", 7 * day - 3600_000),
            // older than the daily retention, inside the weekly one
            at("weekly", "app", 10 * day),
            at("weekly", "app", 27 * day),
            at("files", "uploads", 1 * day, "tar.gz"),
            // the newest archive of a volume stays whatever its age
            at("files", "photos", 20 * day, "tar.gz"),
            // not named by the job, below the subdirectory, in another subdirectory
            `${c.prefix}/daily/notes-from-the-operator.txt`,
            `${c.prefix}/daily/manual/app-${stampAt(now - 30 * day)}.dump`,
            `${c.prefix}/archive/app-${stampAt(now - 30 * day)}.dump`,
        ];
        const outside = [
            // a sibling prefix that merely starts with the same characters, another stack, the bucket root
            `${c.prefix}2/daily/app-${stampAt(now - 30 * day)}.dump`,
            `cases/prune/staging/daily/app-${stampAt(now - 30 * day)}.dump`,
            `daily/app-${stampAt(now - 30 * day)}.dump`,
        ];
        for (const k of [...doomed, ...kept, ...outside]) putObject(k, `${k}\n`);

        const r = await script(c, "backup.sh", [], { BACKUP_NOW: "2026-11-25T03:30:00Z" });
        expectOk(r, "backup.sh with the host prune");
        assert.match(r.stdout, /prune daily\/: deleted 3, kept 3/);
        assert.match(r.stdout, /prune weekly\/: deleted 1, kept 2/);
        assert.match(r.stdout, /prune files\/: deleted 2, kept 2/);
        const key = fs.readFileSync(c.lastSuccess, "utf8").trim().split(" ")[1];
        const left = new Set(listObjects(c.prefix).keys());
        for (const k of [...kept, key]) assert.ok(left.has(k), `${k} was kept`);
        for (const k of doomed) assert.ok(!left.has(k), `${k} was pruned`);
        assert.equal(left.size, kept.length + 1);
        for (const k of outside) assert.equal(readObject(k).toString(), `${k}\n`, `${k} outside the prefix survives`);

        // weekly retention 0: no weekly copies are made and weekly/ is left alone
        fs.appendFileSync(c.envFile, "BACKUP_WEEKLY_RETENTION_WEEKS='0'\nBACKUP_RETENTION_DAYS='1'\n");
        expectOk(await script(c, "backup.sh", [], { BACKUP_NOW: "2026-11-26T03:30:00Z" }), "backup.sh, weekly retention 0");
        const after = new Set(listObjects(c.prefix).keys());
        for (const k of kept.filter((x) => x.includes("/weekly/"))) assert.ok(after.has(k), `${k} kept with weekly retention 0`);
        assert.ok(!after.has(kept[0]), "a one-day retention prunes the six-day-old dump");
    });

    void it("Any S3/B3: a prune the credentials may not do fails the run (alert, status failed) after the new dump is safe", async () => {
        const proxy = { HTTP_PROXY: `http://127.0.0.1:${proxyPort}` };
        const c = newCase("prune-denied", { ...viaProxy("other"), BACKUP_PRUNE: "host" });
        const old = `${c.prefix}/daily/app-${stampAt(clockMs() - 30 * 86_400_000)}.dump`;
        putObject(old, "old\n");
        proxyDeniesDeletes = true;
        try {
            const r = await script(c, "backup.sh", [], proxy);
            expectFail(r, "backup.sh whose prune is refused");
            assert.match(r.stderr, /backup FAILED at step 'prune'/);
        } finally {
            proxyDeniesDeletes = false;
        }
        const key = fs.readFileSync(c.lastSuccess, "utf8").trim().split(" ")[1];
        assert.ok(listObjects(c.prefix).has(key), "the new dump was uploaded and recorded");
        assert.ok(listObjects(c.prefix).has(old), "nothing was deleted");
        assert.equal((JSON.parse(hooks(c, "alert")[0].body) as Record<string, unknown>).step, "prune");
        assert.equal(readJson(c.statusFile).status, "failed");
        assert.ok(fs.existsSync(c.staleMarker));
    });

    void it("backups.local: the newest BACKUP_LOCAL_KEEP dumps stay on the data volume (0700/0600, the uploaded bytes); restore --file reads one", async () => {
        cloneDb("app_local");
        const localDir = path.join(root, "data-volume", "backups");
        fs.mkdirSync(localDir, { recursive: true });
        fs.writeFileSync(path.join(localDir, "operator-notes.txt"), "keep me\n");
        const c = newCase("local", { BACKUP_DB_NAME: "app_local", BACKUP_LOCAL_KEEP: "2", BACKUP_LOCAL_DIR: localDir });
        const keys: string[] = [];
        for (const when of ["2026-11-23T03:30:00Z", "2026-11-24T03:30:00Z", "2026-11-25T03:30:00Z"]) {
            keys.push(await backupOk(c, { BACKUP_NOW: when }));
            sql("app_local", "INSERT INTO users SELECT max(id) + 1, 'n' || max(id) || '@example.test' FROM users;");
        }
        const names = fs.readdirSync(localDir).sort();
        assert.deepEqual(names, [path.basename(keys[1]), path.basename(keys[2]), "operator-notes.txt"].sort());
        assert.equal(fs.statSync(localDir).mode & 0o777, 0o700);
        for (const k of keys.slice(1)) {
            const local = path.join(localDir, path.basename(k));
            assert.equal(mode(local), 0o600);
            assert.ok(fs.readFileSync(local).equals(readObject(k)), `${local} holds the uploaded bytes`);
        }
        const r = await script(c, "restore.sh", ["--file", path.join(localDir, path.basename(keys[1])), "--into-scratch", "scratch_local"]);
        expectOk(r, "restore.sh --file");
        assert.deepEqual(rowCounts("scratch_local"), { ...SEEDED, users: 4 });
    });

    void it("Any S3: the new settings are validated (provider, endpoint, prune confined to a prefix, local copies)", async () => {
        const c = newCase("bad-any-s3", {
            BACKUP_S3_PROVIDER: "wasabi",
            BACKUP_PRUNE: "always",
            BACKUP_RETENTION_DAYS: "0",
            BACKUP_LOCAL_KEEP: "3",
            BACKUP_LOCAL_DIR: "relative",
        });
        let r = await script(c, "backup.sh", ["--check-settings"]);
        expectFail(r, "bad provider settings");
        assert.match(r.stderr, /BACKUP_S3_PROVIDER must be one of/);
        assert.match(r.stderr, /BACKUP_PRUNE must be none/);
        assert.match(r.stderr, /BACKUP_RETENTION_DAYS must be a positive integer/);
        assert.match(r.stderr, /BACKUP_LOCAL_DIR must be an absolute path/);
        assert.match(r.stderr, /invalid settings: 4 problem/);

        const d = newCase("bad-any-s3-2", { BACKUP_S3_PROVIDER: "r2", BACKUP_S3_ENDPOINT: "", BACKUP_S3_PREFIX: "", BACKUP_PRUNE: "host" });
        r = await script(d, "backup.sh", ["--check-settings"]);
        expectFail(r, "r2 without endpoint, prune without prefix");
        assert.match(r.stderr, /BACKUP_S3_ENDPOINT is required with BACKUP_S3_PROVIDER=r2/);
        assert.match(r.stderr, /BACKUP_PRUNE=host needs a BACKUP_S3_PREFIX/);
    });

    void it("R3: no secret ever appeared on a recorded command line or child environment (docker, rclone, curl, age), in the logs or in state files", () => {
        const log = fs.readFileSync(argvLog, "utf8");
        assert.ok(log.includes("rclone ") && log.includes("curl ") && log.includes("docker exec") && log.includes("age "), "the recorders saw the calls");
        assert.ok(!log.includes("env-leak"), log.split("\n").filter((l) => l.startsWith("env-leak")).join("\n"));
        const secrets = [SECRET_KEY, ACCESS_KEY, ALERT_TOKEN, HEARTBEAT_TOKEN, ageSecret, "app-db-password"];
        for (const secret of [...secrets, "AGE-SECRET-KEY-", "POSTGRES_PASSWORD"]) {
            assert.ok(!log.includes(secret), `'${secret}' appeared on a command line`);
        }
        const logs = outputs.join("\n");
        assert.ok(logs.length > 0);
        for (const secret of secrets) assert.ok(!logs.includes(secret), `'${secret}' appeared in a script's output`);
        // state and status files (LAST_SUCCESS, last-run.log, drill.json, backup.json)
        for (const c of fs.readdirSync(path.join(root, "cases"))) {
            for (const sub of ["state", "status"]) {
                const dir = path.join(root, "cases", c, sub);
                if (!fs.existsSync(dir)) continue;
                for (const f of fs.readdirSync(dir).filter((n) => !n.endsWith(".dump"))) {
                    const text = fs.readFileSync(path.join(dir, f), "utf8");
                    for (const secret of secrets) assert.ok(!text.includes(secret), `'${secret}' in ${c}/${sub}/${f}`);
                }
            }
        }
    });
});

void describe("shellcheck", { skip: SHELLCHECK ? false : "shellcheck is not installed (apt-get install shellcheck)" }, () => {
    void it("every backup script and test helper is ShellCheck clean (shellcheck -x)", () => {
        const files = [
            ...SCRIPT_NAMES.map((n) => path.join(SCRIPTS_SRC, n)),
            path.join(HERE, "docker-shim.sh"),
            path.join(HERE, "argv-recorder.sh"),
        ];
        const r = spawnSync(SHELLCHECK!, ["-x", ...files], { cwd: SCRIPTS_SRC, encoding: "utf8" });
        assert.equal(r.status, 0, r.stdout + r.stderr);
    });
});
