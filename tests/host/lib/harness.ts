/**
 * Real-host harness: a fresh Debian 13 server container (tests/host/fixture),
 * first boot as a cloud would run it, then the program's own step list
 * (buildSteps) executed over real SSH exactly as HostProvisioner runs it: the
 * same rendered stdin, the same constant command, the same content-hash
 * triggers deciding what re-runs.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { validateConfig } from "../../../components/config/load";
import type { StackConfig } from "../../../components/config/schema";
import { renderFirstBoot } from "../../../components/hosts/first-boot";
import { DEPLOY_USER } from "../../../components/hosts/host";
import { loadHostScripts, UPLOAD_IMAGES_SCRIPT } from "../../../components/provisioning/host-scripts";
import { buildSteps, remoteCommand, renderStepScript, sha256, type Step, type StepName } from "../../../components/provisioning/steps";
import { runProcess, ssh, sshOk, type RunResult, type SshTarget } from "./ssh";

export const ROOT = path.resolve(__dirname, "../../..");
const FIXTURE = path.join(ROOT, "tests/host/fixture");

export function sh(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): string {
    const r = spawnSync(cmd, args, { encoding: "utf8", env: opts.env ?? process.env, timeout: opts.timeoutMs ?? 600_000 });
    if (r.status !== 0) {
        throw new Error(`${cmd} ${args.join(" ")} exited ${String(r.status)}\n${r.stdout}\n${r.stderr}`);
    }
    return r.stdout;
}

/** Key material of one test server: the deploy identity and the server's host key. */
export interface Keys {
    dir: string;
    deployKey: string;
    deployPub: string;
    hostKey: string;
    hostPub: string;
    knownHosts: string;
}

export function makeKeys(dir: string, port: number): Keys {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const deployKey = path.join(dir, "deploy_ed25519");
    const hostKey = path.join(dir, "host_ed25519");
    for (const k of [deployKey, hostKey]) {
        if (!fs.existsSync(k)) {
            sh("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", path.basename(k), "-f", k]);
        }
    }
    const hostPub = fs.readFileSync(`${hostKey}.pub`, "utf8").trim().split(" ").slice(0, 2).join(" ");
    const knownHosts = path.join(dir, "known_hosts");
    fs.writeFileSync(knownHosts, `[127.0.0.1]:${port} ${hostPub}\n`);
    return { dir, deployKey, deployPub: fs.readFileSync(`${deployKey}.pub`, "utf8").trim(), hostKey, hostPub, knownHosts };
}

export interface ServerPorts {
    ssh: number;
    http: number;
    https: number;
}

export class TestServer {
    readonly root: SshTarget;
    readonly deploy: SshTarget;

    constructor(
        readonly name: string,
        readonly ports: ServerPorts,
        readonly keys: Keys,
    ) {
        const base = { host: "127.0.0.1", port: ports.ssh, identityFile: keys.deployKey, knownHostsFile: keys.knownHosts };
        this.root = { ...base, user: "root" };
        this.deploy = { ...base, user: DEPLOY_USER };
    }

    /**
     * Starts (or restarts) the fixture container; the data disk is a real block device
     * (a sparse file: `dataDiskSize` is its ceiling, not space taken up front).
     */
    start(dataDiskSize = "2G"): void {
        sh("bash", [path.join(FIXTURE, "start-server.sh"), this.name, String(this.ports.ssh), `${this.keys.deployKey}.pub`, this.keys.hostKey,
            "-p", `127.0.0.1:${this.ports.http}:80`, "-p", `127.0.0.1:${this.ports.https}:443`], {
            env: { ...process.env, ONEBOX_DATA_DISK: "block", ONEBOX_DATA_DISK_SIZE: dataDiskSize, ONEBOX_BOOT_TIMEOUT: "90" },
        });
    }

    /** `docker restart` of the whole server: a reboot with disks kept. Returns ms until SSH answers again. */
    async reboot(): Promise<number> {
        sh("docker", ["restart", "-t", "20", this.name]);
        // The fixture's readiness check logs in as root, which the hardening now refuses: wait as the deploy user.
        return waitFor("SSH after reboot", async () => (await ssh(this.deploy, "true", undefined, 15_000)).code === 0, 120_000, 1000);
    }

    stop(): void {
        spawnSync("bash", [path.join(FIXTURE, "stop-server.sh"), this.name], { stdio: "ignore" });
    }

    pid(): string {
        return sh("docker", ["inspect", "-f", "{{.State.Pid}}", this.name]).trim();
    }

    /** Runs a command as root over SSH (as the deploy user through sudo once first boot is done). */
    async exec(command: string, timeoutMs?: number): Promise<RunResult> {
        return ssh(this.deploy, `sudo -n bash -c ${JSON.stringify(command)}`, undefined, timeoutMs);
    }

    /**
     * Runs `body` as a bash script as root, sent on stdin: no quoting of the
     * script for the remote shell, `$`, quotes and here-documents stay as written.
     */
    async script(body: string, timeoutMs?: number): Promise<RunResult> {
        return ssh(this.deploy, "sudo -n bash -s", body, timeoutMs);
    }

    /** Like exec() with `stdin` fed to the command (e.g. an age identity for restore.sh). */
    async execWithStdin(command: string, stdin: string, timeoutMs?: number): Promise<RunResult> {
        return ssh(this.deploy, `sudo -n bash -c ${JSON.stringify(command)}`, stdin, timeoutMs);
    }

    /** The server container's address on the outer Docker network ("outside the server"). */
    ip(): string {
        return sh("docker", ["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", this.name]).trim().split(/\s+/)[0];
    }

    async execOk(command: string, timeoutMs?: number): Promise<string> {
        const r = await this.exec(command, timeoutMs);
        if (r.code !== 0) {
            throw new Error(`server: ${command} exited ${r.code}\n${r.stdout.slice(-3000)}\n${r.stderr.slice(-3000)}`);
        }
        return r.stdout;
    }

    /**
     * What a cloud's user data does at first boot (the fixture has no
     * cloud-init): the program's own first-boot script, run once as root.
     */
    async firstBoot(dataDevice: string, dataPath: string): Promise<number> {
        const script = renderFirstBoot({
            hostPrivateKey: fs.readFileSync(this.keys.hostKey, "utf8"),
            hostPublicKey: this.keys.hostPub,
            deployUser: DEPLOY_USER,
            authorizedKeys: [this.keys.deployPub],
            dataVolume: { device: dataDevice, path: dataPath },
        });
        const r = await ssh(this.root, "bash -s", script, 120_000);
        if (r.code !== 0) {
            throw new Error(`first boot failed (${r.code})\n${r.stdout}\n${r.stderr}`);
        }
        return r.ms;
    }
}

/** s3rver running inside the server's network namespace (the server reaches it on its own 127.0.0.1). */
export class S3InServer {
    private proc?: ChildProcess;
    readonly dir: string;

    constructor(
        private readonly server: TestServer,
        readonly bucket: string,
        readonly port = 4568,
        /** Serve HTTPS with this certificate and key (files on this machine): pgBackRest speaks S3 over TLS only. */
        private readonly tls?: { cert: string; key: string },
    ) {
        this.dir = fs.mkdtempSync(path.join(os.tmpdir(), "onebox-s3-"));
    }

    static binary(): string {
        const candidates = [process.env.S3RVER_BIN, "/opt/s3rver/node_modules/.bin/s3rver"].filter((c): c is string => Boolean(c));
        const found = candidates.find((c) => fs.existsSync(c));
        if (!found) {
            throw new Error("s3rver not found: npm install --prefix /opt/s3rver s3rver@3.7.1 (scripts/test.sh does this)");
        }
        return found;
    }

    async start(): Promise<void> {
        this.stop();
        const env = { ...process.env };
        delete env.AWS_CA_BUNDLE;
        const tlsArgs = this.tls ? ["--cert", this.tls.cert, "--key", this.tls.key] : [];
        this.proc = spawn("nsenter", ["-t", this.server.pid(), "-n", S3InServer.binary(), "-d", this.dir, "-a", "127.0.0.1", "-p", String(this.port), ...tlsArgs, "--configure-bucket", this.bucket, "--silent"], {
            stdio: "ignore",
            env,
        });
        for (let i = 0; i < 60; i++) {
            const r = await this.server.exec(`curl -sk -o /dev/null -w '%{http_code}' ${this.tls ? "https" : "http"}://127.0.0.1:${this.port}/${this.bucket}`);
            if (r.code === 0 && /^[2-4]\d\d$/.test(r.stdout.trim())) {
                return;
            }
            await new Promise((res) => setTimeout(res, 500));
        }
        throw new Error("s3rver did not answer inside the server");
    }

    stop(): void {
        this.proc?.kill("SIGTERM");
        this.proc = undefined;
    }

    /** Stops s3rver and removes its data directory. */
    dispose(): void {
        this.stop();
        fs.rmSync(this.dir, { recursive: true, force: true });
    }

    /** Object keys and sizes under a prefix, read straight from s3rver's directory. */
    objects(prefix = ""): { key: string; size: number }[] {
        const base = path.join(this.dir, this.bucket);
        const out: { key: string; size: number }[] = [];
        const walk = (d: string) => {
            if (!fs.existsSync(d)) {
                return;
            }
            for (const e of fs.readdirSync(d, { withFileTypes: true })) {
                const p = path.join(d, e.name);
                if (e.isDirectory()) {
                    walk(p);
                } else if (e.name.endsWith("._S3rver_object")) {
                    const key = path.relative(base, p).replace(/\._S3rver_object$/, "");
                    if (key.startsWith(prefix)) {
                        out.push({ key, size: fs.statSync(p).size });
                    }
                }
            }
        };
        walk(base);
        return out.sort((a, b) => a.key.localeCompare(b.key));
    }
}

/** Pulumi's view of what ran: the last trigger hash of each step. */
export type TriggerState = Partial<Record<StepName, string>>;

export interface StepRun {
    name: StepName;
    ran: boolean;
    ms: number;
    stdout: string;
    /** Its warnings (deploy.sh writes them to stderr). */
    stderr: string;
}

/** Thrown when a step fails, with its output (what `pulumi up` would show). */
export class StepError extends Error {
    constructor(
        readonly step: StepName,
        readonly result: RunResult,
    ) {
        super(`step ${step} failed (exit ${result.code})\n--- stdout\n${result.stdout.slice(-6000)}\n--- stderr\n${result.stderr.slice(-6000)}`);
    }
}

/**
 * Runs the steps in order, skipping a step whose trigger is unchanged (R5),
 * the way the command resources behave on `pulumi up`: the trigger is the
 * hash of the rendered stdin, and the deploy step also carries the secrets
 * step's hash.
 */
export interface RunHooks {
    /** Called right before a step that is going to run (its trigger changed) starts. */
    beforeStep?: (name: StepName) => void;
}

export async function runSteps(server: TestServer, steps: Step[], secrets: Record<string, string>, state: TriggerState, hooks: RunHooks = {}): Promise<StepRun[]> {
    const runs: StepRun[] = [];
    const hashes: TriggerState = {};
    for (const step of steps) {
        let trigger: string;
        let exec: () => Promise<RunResult>;
        const upload = step.upload;
        if (upload) {
            trigger = sha256(JSON.stringify(upload.images));
            exec = () =>
                runProcess("bash", [path.join(ROOT, UPLOAD_IMAGES_SCRIPT)], {
                    env: {
                        ...process.env,
                        ONEBOX_SSH_HOST: server.deploy.host,
                        ONEBOX_SSH_PORT: String(server.deploy.port),
                        ONEBOX_SSH_USER: server.deploy.user,
                        ONEBOX_SSH_PRIVATE_KEY: fs.readFileSync(server.keys.deployKey, "utf8"),
                        ONEBOX_SSH_HOST_KEY: server.keys.hostPub,
                        ONEBOX_IMAGES: upload.images.join(" "),
                    },
                    timeoutMs: 600_000,
                });
        } else {
            const script = renderStepScript(step, secrets);
            const hash = sha256(script);
            hashes[step.name] = hash;
            trigger = step.name === "deploy" && hashes.secrets ? sha256(`${hash}:${hashes.secrets}`) : hash;
            exec = () => ssh(server.deploy, remoteCommand(server.deploy.user), script, 900_000);
        }
        if (state[step.name] === trigger) {
            runs.push({ name: step.name, ran: false, ms: 0, stdout: "", stderr: "" });
            continue;
        }
        hooks.beforeStep?.(step.name);
        const result = await exec();
        if (result.code !== 0) {
            throw new StepError(step.name, result);
        }
        state[step.name] = trigger;
        runs.push({ name: step.name, ran: true, ms: result.ms, stdout: result.stdout, stderr: result.stderr });
    }
    return runs;
}

/**
 * Runs one host step's rendered script again, ignoring its trigger (what an
 * operator re-running the step by hand does). Throws StepError on failure.
 */
export async function runStepScript(server: TestServer, step: Step, secrets: Record<string, string>): Promise<StepRun> {
    if (step.upload) {
        throw new Error(`step ${step.name} runs locally; it has no host script`);
    }
    const result = await ssh(server.deploy, remoteCommand(server.deploy.user), renderStepScript(step, secrets), 900_000);
    if (result.code !== 0) {
        throw new StepError(step.name, result);
    }
    return { name: step.name, ran: true, ms: result.ms, stdout: result.stdout, stderr: result.stderr };
}

/**
 * A tiny HTTP receiver inside the server's network namespace (the server
 * reaches it on its own 127.0.0.1), recording every request: stands in for
 * the backups' alert URL.
 */
export class HookSink {
    private proc?: ChildProcess;
    readonly file: string;

    constructor(
        private readonly server: TestServer,
        readonly port = 4599,
        /** Record GET requests too (a heartbeat is a GET; the readiness probe below is one as well, to "/"). */
        readonly recordGets = false,
    ) {
        this.file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "onebox-hook-")), "requests.jsonl");
    }

    get url(): string {
        return `http://127.0.0.1:${this.port}/alert`;
    }

    async start(): Promise<void> {
        this.stop();
        fs.writeFileSync(this.file, "");
        const code = [
            'const fs = require("fs");',
            "const [port, file, gets] = process.argv.slice(1);",
            'require("http").createServer((req, res) => { let body = ""; req.on("data", (d) => (body += d)); req.on("end", () => {',
            "  if (req.method !== \"GET\" || (gets === \"1\" && req.url !== \"/\")) fs.appendFileSync(file, JSON.stringify({ method: req.method, url: req.url, body }) + \"\\n\");",
            '  res.end("ok"); }); }).listen(Number(port), "127.0.0.1");',
        ].join("\n");
        this.proc = spawn("nsenter", ["-t", this.server.pid(), "-n", process.execPath, "-e", code, String(this.port), this.file, this.recordGets ? "1" : "0"], { stdio: "ignore" });
        await waitFor("the hook receiver inside the server", async () => {
            const r = await this.server.exec(`curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:${this.port}/`);
            return r.stdout.trim() === "200";
        }, 30_000, 300);
    }

    /** Requests received so far (method, url, body). */
    requests(): { method: string; url: string; body: string }[] {
        return fs
            .readFileSync(this.file, "utf8")
            .split("\n")
            .filter((l) => l.trim() !== "")
            .map((l) => JSON.parse(l) as { method: string; url: string; body: string });
    }

    stop(): void {
        this.proc?.kill("SIGTERM");
        this.proc = undefined;
    }

    /** Stops the receiver and removes its record. */
    dispose(): void {
        this.stop();
        fs.rmSync(path.dirname(this.file), { recursive: true, force: true });
    }
}

/** The end-to-end stack: both routing styles, internal TLS, uploaded images, backups to s3rver. */
export interface E2eOptions {
    apiImage?: string;
    /** backups.encryptionPublicKey (age recipient). */
    ageRecipient?: string;
    /** backups.alertUrl. */
    alertUrl?: string;
    /** database.allowedCidrs: publish PostgreSQL (over TLS) to these networks. */
    databaseAllowedCidrs?: string[];
    /** services.web.env: a plain setting that changes the web service (a release that replaces it). */
    webEnv?: Record<string, string>;
    /** services.api.secretsAsEnv: secrets the API opts into as environment variables (H11). */
    apiSecretsAsEnv?: string[];
    /** services.api.databaseEnv: the database variables as the API's code names them. */
    apiDatabaseEnv?: Record<string, unknown>;
    /** database.version and database.image (default 17, onebox-test/postgres:17). */
    database?: { version: number; image: string };
    /** backups.pointInTime (needs an image with pgbackrest: onebox-test/postgres-pitr:17). */
    pointInTime?: boolean;
}

/**
 * The server runs real systemd timers with the real clock: a nightly backup or a
 * weekly drill firing in the middle of the suite would add objects and change
 * results by the hour the suite runs at. So the suite schedules both twelve hours
 * (and the drill three days) away from the moment this module loads, far outside
 * any run of the suite; the tests start the services by hand. Computed once, so
 * every configuration of one run is the same (no step re-runs for it).
 */
const loadedAt = new Date();
const CLEAR_HOUR = (loadedAt.getUTCHours() + 12) % 24;
export const SUITE_BACKUP_SCHEDULE = `17 ${CLEAR_HOUR} * * *`;
export const SUITE_DRILL_SCHEDULE = `47 ${CLEAR_HOUR} * * ${(loadedAt.getUTCDay() + 3) % 7}`;

/** `host` of a stack on the fixture server: an existing server with its data disk, reached over SSH. */
export function fixtureHost(hostPub: string): Record<string, unknown> {
    return {
        provider: "existing",
        address: "127.0.0.1",
        // sshd's port on the server; the harness reaches it through the published ports.ssh.
        port: 22,
        user: DEPLOY_USER,
        hostKey: hostPub,
        // SSH arrives through Docker's port publishing, from the bridge gateway.
        sshAllowedCidrs: ["172.16.0.0/12"],
        dataPath: "/mnt/data",
        dataDevice: "/dev/sdb",
        swapMb: 0,
    };
}

export function e2eRawConfig(_ports: ServerPorts, hostPub: string, opts: E2eOptions = {}): Record<string, unknown> {
    return {
        app: { name: "shop", environment: "e2e" },
        host: fixtureHost(hostPub),
        dns: { provider: "none", zone: "example.test" },
        tls: { mode: "internal" },
        proxy: { image: "onebox-test/caddy:latest" },
        services: {
            api: {
                image: opts.apiImage ?? "onebox-test/api:1",
                port: 8000,
                health: { path: "/health", intervalSeconds: 2, startPeriodSeconds: 5 },
                database: true,
                secrets: ["APP_SECRET"],
                ...(opts.apiSecretsAsEnv ? { secretsAsEnv: opts.apiSecretsAsEnv } : {}),
                ...(opts.apiDatabaseEnv ? { databaseEnv: opts.apiDatabaseEnv } : {}),
                volumes: [{ name: "uploads", mountPath: "/data/uploads" }],
                memoryMb: 128,
            },
            web: {
                image: "onebox-test/web:1",
                port: 3000,
                health: { path: "/health", intervalSeconds: 2, startPeriodSeconds: 5 },
                memoryMb: 96,
                // A static frontend: no outbound internet, only its internal networks (H13).
                egress: false,
                ...(opts.webEnv ? { env: opts.webEnv } : {}),
            },
        },
        routes: [
            { host: "app.example.test", service: "web" },
            { host: "api.example.test", service: "api" },
            { host: "example.test", path: "/api", service: "api" },
            { host: "example.test", service: "web" },
        ],
        database: { version: opts.database?.version ?? 17, image: opts.database?.image ?? "onebox-test/postgres:17", name: "shop", user: "shop", memoryMb: 192, allowedCidrs: opts.databaseAllowedCidrs ?? [] },
        backups: {
            bucket: "onebox-e2e",
            create: false,
            region: "us-east-1",
            retentionDays: 7,
            maxAgeHours: 26,
            ...(opts.ageRecipient ? { encryptionPublicKey: opts.ageRecipient } : {}),
            // The suite's alert receiver listens on this machine, reached from the server over
            // Docker's private bridge, without a certificate: the documented private-relay opt-in.
            ...(opts.alertUrl ? { alertUrl: opts.alertUrl, allowPlainHttpHooks: true } : {}),
            schedule: SUITE_BACKUP_SCHEDULE,
            ...(opts.pointInTime ? { pointInTime: true } : {}),
            drill: { tables: ["items"], schedule: SUITE_DRILL_SCHEDULE },
        },
        deploy: { imageSource: "upload", keepReleases: 3, healthTimeoutSeconds: 90 },
        generatedSecrets: ["APP_SECRET"],
        sshPrivateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nharness\n-----END OPENSSH PRIVATE KEY-----\n",
        secrets: {
            // Names must exist for validation; the harness passes s3rver's real key below.
            BACKUP_S3_ACCESS_KEY_ID: "harness-supplied-id-7Hq2Lm",
            BACKUP_S3_SECRET_ACCESS_KEY: "harness-supplied-key-9Xw4Rt",
        },
    };
}

export function e2eConfig(raw: Record<string, unknown>): StackConfig {
    return validateConfig(raw).config;
}

/** The step list for the test server, backups pointed at s3rver inside it. */
export function e2eSteps(config: StackConfig, s3Port: number, backup?: { endpoint: string; caFile?: string }): Step[] {
    return buildSteps(config, {
        dataPath: "/mnt/data",
        dataDevice: "/dev/sdb",
        sshUser: DEPLOY_USER,
        sshPort: 22,
        scripts: loadHostScripts(),
        dockerAptSource: "auto",
        backup: backup ?? { endpoint: `http://127.0.0.1:${s3Port}` },
    });
}

/** Secret values as Pulumi would pass them (generated ones random, per run). */
export function e2eSecrets(): Record<string, string> {
    const rand = (n: number) => createHash("sha256").update(`${Math.random()}${Date.now()}`).digest("hex").slice(0, n);
    return {
        APP_SECRET: rand(48),
        POSTGRES_PASSWORD: rand(32),
        BACKUP_S3_ACCESS_KEY_ID: "S3RVER",
        BACKUP_S3_SECRET_ACCESS_KEY: "S3RVER",
    };
}

/** curl through the published HTTPS port with the hostname resolved to it. */
export function curlArgs(host: string, port: number, urlPath: string, extra: string[] = []): string[] {
    return ["-sk", "--max-time", "10", "--resolve", `${host}:${port}:127.0.0.1`, ...extra, `https://${host}:${port}${urlPath}`];
}

export async function curl(host: string, port: number, urlPath: string, extra: string[] = []): Promise<RunResult> {
    return runProcess("curl", curlArgs(host, port, urlPath, extra), { timeoutMs: 15_000 });
}

/** Waits (bounded) until `check` resolves true. */
export async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 60_000, everyMs = 1000): Promise<number> {
    const start = Date.now();
    for (let i = 0; Date.now() - start < timeoutMs && i < 10_000; i++) {
        if (await check()) {
            return Date.now() - start;
        }
        await new Promise((r) => setTimeout(r, everyMs));
    }
    throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

export { ssh, sshOk };

/** A CA and a server certificate for `ip`, made with openssl as DatabaseTls makes them in Pulumi. */
export function databaseCertificates(dir: string, ip: string): { cert: string; key: string; ca: string } {
    const ext = path.join(dir, "server.ext");
    fs.writeFileSync(ext, `subjectAltName=IP:${ip}\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n`);
    const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    sh("openssl", ["req", "-x509", ...ec, "-keyout", `${dir}/ca.key`, "-out", `${dir}/ca.pem`, "-days", "2", "-subj", "/CN=db-only CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    sh("openssl", ["req", ...ec, "-keyout", `${dir}/server.key`, "-out", `${dir}/server.csr`, "-subj", "/CN=db-only database"]);
    sh("openssl", ["x509", "-req", "-in", `${dir}/server.csr`, "-CA", `${dir}/ca.pem`, "-CAkey", `${dir}/ca.key`, "-CAcreateserial", "-out", `${dir}/server.pem`, "-days", "2", "-extfile", ext]);
    return { cert: fs.readFileSync(`${dir}/server.pem`, "utf8"), key: fs.readFileSync(`${dir}/server.key`, "utf8"), ca: `${dir}/ca.pem` };
}
