/**
 * End to end on a real (container) server: a fresh Debian 13 systemd server,
 * the program's first-boot script, then the program's own step list over SSH
 * as the deploy user (tests/host/lib/harness.ts). One server for the whole
 * file; the tests run in order and build on each other (hardening, HTTPS,
 * backups, then changes and faults: no-op re-run, redeploy under load, a
 * broken release, a crashed container, a reboot).
 *
 *   npm run test:host
 *
 * Needs root, a running dockerd, the onebox-test/* images
 * (tests/host/fixture/stack-images.sh, server-image.sh) and s3rver. Talks only
 * to 127.0.0.1 and the containers it creates; every wait is bounded.
 */
import { after, before, test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";
import {
    e2eConfig,
    e2eRawConfig,
    e2eSecrets,
    e2eSteps,
    HookSink,
    makeKeys,
    ROOT,
    runStepScript,
    runSteps,
    S3InServer,
    sh,
    StepError,
    TestServer,
    waitFor,
    type E2eOptions,
    type Keys,
    type StepRun,
    type TriggerState,
} from "./lib/harness";
import { h3Problems, headerProblems, httpRequest, httpsRequest, sshdEffective, SSHD_DROPIN, tcpConnect, ufwRuleLines } from "./lib/checks";
import { LoadLoop, type LoadResult } from "./lib/load";
import { ssh, type RunResult } from "./lib/ssh";
import type { Step, StepName } from "../../components/provisioning/steps";

const NAME = "onebox-e2e-h7k2";
const PORTS = { ssh: 2311, http: 18311, https: 18411 };
const BUCKET = "onebox-e2e";
const PREFIX = "shop/e2e";
const PROJECT = "shop-e2e";
const PG = `${PROJECT}-postgres`;
const API = `${PROJECT}-api-1`;
const BACKUP_LIB = "/usr/local/lib/onebox/backup";
const BACKUP_STATE = "/var/lib/onebox/shop-e2e/backup";
const BOOTSTRAP = "/usr/local/lib/onebox/bootstrap.sh";
const CURRENT = "/srv/onebox/shop-e2e/current";

/** Every route of the stack: host, path, which service must answer, and how to tell. */
const ROUTES: { host: string; path: string; service: "api" | "web"; expect: RegExp }[] = [
    { host: "app.example.test", path: "/", service: "web", expect: /web version \d/ },
    { host: "app.example.test", path: "/health", service: "web", expect: /^ok\n?$/ },
    { host: "api.example.test", path: "/health", service: "api", expect: /"status":"ok"/ },
    { host: "api.example.test", path: "/api/items", service: "api", expect: /^\[/ },
    { host: "example.test", path: "/api/items", service: "api", expect: /^\[/ },
    { host: "example.test", path: "/", service: "web", expect: /web version \d/ },
    // "/" goes to web: its /health is web's plain "ok", not the API's JSON.
    { host: "example.test", path: "/health", service: "web", expect: /^ok\n?$/ },
];

let keysDir = "";
let keys: Keys;
let server: TestServer;
let s3: S3InServer;
let hook: HookSink;
let secrets: Record<string, string>;
let options: E2eOptions = {};
const state: TriggerState = {};
let provisionRuns: StepRun[] = [];
const timings: Record<string, number> = {};
/** Rows the tests wrote through the API (they must survive everything). */
const written: string[] = [];

function stepsFor(o: E2eOptions): Step[] {
    return e2eSteps(e2eConfig(e2eRawConfig(PORTS, keys.hostPub, o)), s3.port);
}

function stepOf(name: StepName, o: E2eOptions = options): Step {
    const step = stepsFor(o).find((s) => s.name === name);
    assert.ok(step, `no step ${name}`);
    return step;
}

/** bootstrap.sh as the bootstrap step installs it (assembled with its modules). */
function shippedBootstrapScript(): string {
    const file = stepOf("bootstrap").files.find((f) => f.path === BOOTSTRAP);
    assert.ok(file, `the bootstrap step installs no ${BOOTSTRAP}`);
    return file.content;
}

/** Runs the steps of configuration `o` like `pulumi up`; returns the names of the steps that ran. */
async function up(o: E2eOptions, hooks: Parameters<typeof runSteps>[4] = {}): Promise<{ ran: StepName[]; runs: StepRun[] }> {
    const runs = await runSteps(server, stepsFor(o), secrets, state, hooks);
    return { ran: runs.filter((r) => r.ran).map((r) => r.name), runs };
}

/** A root shell script on the server (sent on stdin); throws with its output when it fails. */
async function root(body: string, timeoutMs?: number): Promise<string> {
    const r = await tryRoot(body, timeoutMs);
    if (r.code !== 0) {
        throw new Error(`server script exited ${r.code}: ${body.slice(0, 300)}\n--- stdout\n${r.stdout.slice(-3000)}\n--- stderr\n${r.stderr.slice(-3000)}`);
    }
    return r.stdout;
}

/** Like root() but returns the result whatever the exit status. */
function tryRoot(body: string, timeoutMs?: number): Promise<RunResult> {
    return server.script(body, timeoutMs);
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function note(t: TestContext, what: string, ms: number): void {
    timings[what] = ms;
    t.diagnostic(`${what}: ${(ms / 1000).toFixed(1)} s`);
}

async function psql(db: string, sql: string): Promise<string> {
    return (await root(`docker exec ${PG} psql -X -U shop -d ${db} -tA -v ON_ERROR_STOP=1 -c ${JSON.stringify(sql)}`)).trim();
}

async function apiVersion(): Promise<string> {
    const r = await httpsRequest("api.example.test", PORTS.https, "/health");
    assert.equal(r.status, 200, r.body);
    return String((JSON.parse(r.body) as { version: string }).version);
}

/** Container id and start time of every container of the stack. */
async function containerSnapshot(): Promise<string> {
    return root(`docker ps -q --filter label=com.docker.compose.project=${PROJECT} | sort | xargs docker inspect -f '{{.Name}} {{.Id}} {{.State.StartedAt}} {{.RestartCount}}'`);
}

/** Path, mode, size and mtime of every file the steps manage, plus the current release. */
async function hostFileSnapshot(): Promise<string> {
    return root(
        "{ find /etc/onebox /usr/local/lib/onebox /srv/onebox /etc/ssh/sshd_config.d /etc/docker /etc/ufw /etc/fail2ban/jail.d " +
            "/etc/systemd/system /etc/apt/apt.conf.d /etc/sysctl.d /etc/fstab -type f -printf '%p %m %U %s %T@\\n' | LC_ALL=C sort; readlink /srv/onebox/shop-e2e/current; }",
    );
}

/** /healthz/backup: the HTTP status and the status document (null when the body is not JSON). */
async function backupStatus(): Promise<{ http: number; json: Record<string, unknown> | null; body: string }> {
    const r = await httpsRequest("api.example.test", PORTS.https, "/healthz/backup");
    let json: Record<string, unknown> | null = null;
    try {
        json = JSON.parse(r.body) as Record<string, unknown>;
    } catch {
        json = null;
    }
    return { http: r.status, json, body: r.body };
}

async function allRoutesAnswer(): Promise<string[]> {
    const problems: string[] = [];
    for (const r of ROUTES) {
        try {
            const a = await httpsRequest(r.host, PORTS.https, r.path);
            if (a.status !== 200 || !r.expect.test(a.body)) {
                problems.push(`https://${r.host}${r.path}: ${a.status} ${a.body.slice(0, 80)}`);
            }
        } catch (e) {
            problems.push(`https://${r.host}${r.path}: ${(e as Error).message}`);
        }
    }
    return problems;
}

function loadSummary(r: LoadResult): string {
    return `${r.requests} requests in ${(r.ms / 1000).toFixed(1)} s, ${r.failed} failed, versions ${JSON.stringify(r.versions)}, max latency ${r.maxLatencyMs} ms`;
}

// Nothing may be left behind, also when the run is interrupted.
process.on("exit", () => {
    hook?.stop();
    s3?.stop();
    if (server) {
        spawnSync("bash", [path.join(ROOT, "tests/host/fixture/stop-server.sh"), NAME], { stdio: "ignore" });
    }
});

before(async () => {
    keysDir = fs.mkdtempSync(path.join(os.tmpdir(), "onebox-e2e-keys-"));
    keys = makeKeys(keysDir, PORTS.ssh);
    server = new TestServer(NAME, PORTS, keys);
    server.stop();
    let t0 = Date.now();
    server.start();
    timings["server container start"] = Date.now() - t0;
    timings["first boot"] = await server.firstBoot("/dev/sdb", "/mnt/data");
    s3 = new S3InServer(server, BUCKET);
    await s3.start();
    hook = new HookSink(server);
    await hook.start();
    secrets = e2eSecrets();
    options = { apiImage: "onebox-test/api:1" };
    t0 = Date.now();
    provisionRuns = (await up(options)).runs;
    timings["all steps"] = Date.now() - t0;
    for (const r of provisionRuns) {
        timings[`step ${r.name}`] = r.ms;
    }
}, { timeout: 900_000 });

after(() => {
    hook?.dispose();
    s3?.dispose();
    server?.stop();
    if (keysDir) {
        fs.rmSync(keysDir, { recursive: true, force: true });
    }
});

test("provisioning: first boot and every step once, in order, as the deploy user", (t) => {
    for (const [k, v] of Object.entries(timings)) {
        t.diagnostic(`${k}: ${(v / 1000).toFixed(1)} s`);
    }
    assert.deepEqual(
        provisionRuns.map((r) => [r.name, r.ran]),
        [["wait-ready", true], ["bootstrap", true], ["secrets", true], ["images", true], ["deploy", true], ["backup", true], ["jobs", true]],
    );
    assert.match(provisionRuns.find((r) => r.name === "deploy")?.stdout ?? "", /release [0-9a-f]{12} is live/);
});

test("H1: cloud-init is waited for before any package work; apt waits for the dpkg lock instead of failing", { timeout: 600_000 }, async (t) => {
    // What the provisioning run printed (this server has no cloud-init).
    const boot = provisionRuns.find((r) => r.name === "bootstrap")?.stdout ?? "";
    assert.match(boot, /== H1 cloud-init\n\[bootstrap\] ok: no cloud-init on this host; nothing to wait for/);
    assert.ok(boot.indexOf("== H1 cloud-init") < boot.indexOf("== packages"), "the cloud-init check comes before package work");
    assert.match(provisionRuns.find((r) => r.name === "wait-ready")?.stdout ?? "", /no cloud-init on this host/);

    // The script: apt-get is only ever called through apt_get, which sets the dpkg lock timeout.
    const script = shippedBootstrapScript();
    const calls = script
        .split("\n")
        .filter((l) => !/^\s*#/.test(l))
        .map((l) => l.replace(/"[^"]*"/g, '""').replace(/'[^']*'/g, "''"))
        .filter((l) => /(^|[\s;&|(])apt-get\s/.test(l));
    assert.deepEqual(calls, ['  apt-get -q -y -o "" \\'], "one raw apt-get call: the apt_get wrapper");
    assert.match(script, /apt_get\(\) \{\n {2}apt-get -q -y -o "DPkg::Lock::Timeout=\$\{APT_LOCK_TIMEOUT\}"/);

    // For real: a cloud-init that is still busy for 3 s, another apt holding the dpkg lock until
    // the bootstrap's apt-get is seen waiting for it, and a package to install. The bootstrap must
    // wait for both and succeed. (No fixed durations: a loaded machine changes no outcome.)
    try {
        await root(
            [
                "cat >/usr/local/bin/cloud-init <<'EOF'",
                "#!/bin/sh",
                "# onebox e2e stand-in: cloud-init still running for 3 s",
                'case " $* " in *" --wait "*) sleep 3; date +%s.%N >/run/onebox-e2e-cloud-init-done ;; esac',
                "echo 'status: done'",
                "EOF",
                "chmod 0755 /usr/local/bin/cloud-init",
                "DEBIAN_FRONTEND=noninteractive apt-get remove -y -q jq >/dev/null",
                "rm -f /run/onebox-e2e-lock-held /run/onebox-e2e-lock-release /run/onebox-e2e-lock-released",
                "cat >/run/onebox-e2e-lock.py <<'EOF'",
                "# Holds the dpkg frontend lock (the fcntl lock apt and dpkg take) until the test says so (at most 300 s).",
                "import fcntl, os, time",
                "f = open('/var/lib/dpkg/lock-frontend', 'w')",
                "fcntl.lockf(f, fcntl.LOCK_EX)",
                "open('/run/onebox-e2e-lock-held', 'w').write(str(time.time()))",
                "for _ in range(3000):",
                "    if os.path.exists('/run/onebox-e2e-lock-release'): break",
                "    time.sleep(0.1)",
                "open('/run/onebox-e2e-lock-released', 'w').write(str(time.time()))",
                "EOF",
                "systemd-run --quiet --unit onebox-e2e-dpkg-lock --collect python3 /run/onebox-e2e-lock.py",
            ].join("\n"),
        );
        await waitFor("the dpkg lock holder", async () => (await tryRoot("test -s /run/onebox-e2e-lock-held")).code === 0, 20_000, 200);
        const waitReady = await runStepScript(server, stepOf("wait-ready"), secrets);
        assert.match(waitReady.stdout, /waiting for cloud-init to finish \(at most 900 s\)\ncloud-init: done/);
        const bootstrap = runStepScript(server, stepOf("bootstrap"), secrets);
        bootstrap.catch(() => undefined); // awaited below; no unhandled rejection while the test waits
        // The bootstrap's apt-get for jq runs while the lock is still held: it is waiting, not failing.
        await waitFor("the bootstrap's apt-get waiting for the dpkg lock", async () => (await tryRoot("pgrep -f '[a]pt-get .*install.* jq'")).code === 0, 240_000, 250);
        assert.equal((await tryRoot("test -e /run/onebox-e2e-lock-released")).code, 1, "the lock is still held while apt-get waits");
        await root("touch /run/onebox-e2e-lock-release");
        const run = await bootstrap;
        note(t, "bootstrap with cloud-init busy and the dpkg lock held", run.ms);
        const out = run.stdout;
        assert.match(out, /waiting \(at most 900 s\) for cloud-init to finish\n\[bootstrap\] ok: cloud-init finished/);
        assert.ok(out.indexOf("ok: cloud-init finished") < out.indexOf("installing jq"), "cloud-init first, then packages");
        assert.match(out, /changed: installed packages: jq/);
        const released = Number(await root("cat /run/onebox-e2e-lock-released"));
        const installed = Number(await root("date -d \"$(grep ' install jq:' /var/log/dpkg.log | tail -n 1 | cut -d' ' -f1,2)\" +%s"));
        t.diagnostic(`jq installed ${(installed - released).toFixed(1)} s after the lock was released`);
        assert.ok(installed >= Math.floor(released), "jq was installed only after the lock was released (apt waited)");
    } finally {
        await tryRoot("touch /run/onebox-e2e-lock-release; rm -f /usr/local/bin/cloud-init /run/onebox-e2e-cloud-init-done /run/onebox-e2e-lock.py; systemctl stop onebox-e2e-dpkg-lock 2>/dev/null || true");
    }
});

test("H2: Docker and compose v2 are Debian packages from the signed archive, not a piped script", async () => {
    const status = await root("dpkg-query -W -f='${Package} ${db:Status-Status}\\n' docker.io docker-compose");
    assert.deepEqual(status.trim().split("\n").sort(), ["docker-compose installed", "docker.io installed"]);
    assert.match(await root("dpkg -S /usr/sbin/dockerd"), /^docker\.io: /);
    assert.match(await root("docker compose version"), /^Docker Compose version v?2\./);
    // The installed version comes from deb.debian.org's trixie archive (not a local .deb, not a third-party repo).
    const policy = await root("apt-cache policy docker.io docker-compose");
    for (const pkg of ["docker.io", "docker-compose"]) {
        const block = policy.split(/^(?=\S)/m).find((b) => b.startsWith(`${pkg}:`)) ?? "";
        const installed = /Installed: (\S+)/.exec(block)?.[1];
        assert.ok(installed && installed !== "(none)", `${pkg} installed`);
        const table = block.slice(block.indexOf(`*** ${installed}`));
        const origin = table.split("\n")[1] ?? "";
        assert.match(origin, /^\s+\d+ http:\/\/deb\.debian\.org\/debian(-security)? trixie(-security|-updates)?\/main amd64 Packages$/, `${pkg} comes from ${origin}`);
    }
    // Every apt source is signed-by the Debian archive keyring; nothing is marked trusted.
    const sources = await root("cat /etc/apt/sources.list.d/* /etc/apt/sources.list 2>/dev/null || true");
    assert.doesNotMatch(sources, /trusted\s*=\s*yes/i);
    assert.doesNotMatch(sources, /download\.docker\.com|get\.docker\.com/);
    assert.equal((sources.match(/^Types:/gm) ?? []).length, (sources.match(/^Signed-By: \/usr\/share\/keyrings\/debian-archive-keyring\.gpg$/gm) ?? []).length);
    assert.doesNotMatch(await root("apt-config dump"), /AllowInsecureRepositories "(true|1)"|AllowUnauthenticated "(true|1)"/);
    // The release file apt trusted is signed by that keyring, and the package list it installed from is in it.
    const inRelease = "/var/lib/apt/lists/deb.debian.org_debian_dists_trixie_InRelease";
    await root(`out="$(mktemp -u)"; sqv --keyring /usr/share/keyrings/debian-archive-keyring.gpg --message --output "$out" ${inRelease} >/dev/null; rm -f "$out"`);
    const listHash = (await root("sha256sum /var/lib/apt/lists/deb.debian.org_debian_dists_trixie_main_binary-amd64_Packages")).split(" ")[0];
    assert.match(await root(`cat ${inRelease}`), new RegExp(`${listHash}\\s+\\d+ main/binary-amd64/Packages\\n`));
    // No piped installer anywhere in the bootstrap.
    const script = shippedBootstrapScript();
    assert.doesNotMatch(script, /\|\s*(sudo\s+)?(ba|da)?sh\b|get\.docker\.com/);
});

test("H3: sshd -T is hardened, the drop-in wins over a later cloud-init drop-in, root cannot log in", async () => {
    assert.deepEqual(await h3Problems(server), []);
    const v = await sshdEffective(server);
    assert.equal(v.passwordauthentication, "no");
    assert.equal(v.permitrootlogin, "no");
    assert.ok(Number(v.maxauthtries) <= 4);
    assert.equal(v.x11forwarding, "no");
    // A cloud-init drop-in that turns passwords and root back on loses against ours (it sorts later).
    try {
        await root("printf 'PasswordAuthentication yes\\nPermitRootLogin yes\\nX11Forwarding yes\\n' >/etc/ssh/sshd_config.d/50-cloud-init.conf");
        assert.deepEqual(await h3Problems(server), []);
    } finally {
        await root("rm -f /etc/ssh/sshd_config.d/50-cloud-init.conf");
    }
    // A fresh connection as root (with the key that root's authorized_keys still holds) is refused.
    const r = await ssh(server.root, "true", undefined, 20_000);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /Permission denied/);
    // While the deploy user logs in with its key.
    assert.equal((await tryRoot("id -un")).stdout.trim(), "root");
});

test("H4: ufw is active, denies incoming by default, allows exactly SSH from the admin range and 80/443; an unlisted published port is unreachable", { timeout: 120_000 }, async () => {
    const status = await root("ufw status verbose");
    assert.match(status, /^Status: active$/m);
    assert.match(status, /^Default: deny \(incoming\), allow \(outgoing\), deny \(routed\)$/m);
    assert.deepEqual(ufwRuleLines(status), [
        "22/tcp ALLOW IN 172.16.0.0/12",
        "80/tcp ALLOW IN Anywhere",
        "443/tcp ALLOW IN Anywhere",
        "80/tcp (v6) ALLOW IN Anywhere (v6)",
        "443/tcp (v6) ALLOW IN Anywhere (v6)",
    ]);
    const ip = server.ip();
    try {
        // Another container on the server publishes 8089 on all addresses (docker bypasses plain ufw rules).
        await root("docker rm -f onebox-e2e-extra >/dev/null 2>&1; docker run -d --name onebox-e2e-extra -p 8089:3000 onebox-test/web:1 >/dev/null");
        const extraIp = (await root("docker inspect -f '{{.NetworkSettings.IPAddress}}' onebox-e2e-extra")).trim();
        await waitFor("the extra container to serve", async () => (await tryRoot(`curl -fsS --max-time 2 http://${extraIp}:3000/health`)).code === 0, 30_000, 500);
        // From outside the server (this machine, to the server's address): 443 answers, 8089 does not.
        const https443 = await httpsRequest("app.example.test", 443, "/health", { address: ip });
        assert.equal(https443.status, 200);
        assert.equal(await tcpConnect(ip, 8089, 4000), "timeout", "the unlisted published port 8089 is dropped (DOCKER-USER)");
        // SSH is open to the admin range (this machine's bridge address is in 172.16.0.0/12).
        assert.equal(await tcpConnect(ip, 22, 4000), "connected");
    } finally {
        await tryRoot("docker rm -f onebox-e2e-extra >/dev/null 2>&1");
    }
});

test("F1 origin lockdown on the server itself: 80/443 only from the listed ranges (ufw + DOCKER-USER); listing this machine admits it again", { timeout: 300_000 }, async () => {
    // What renderBootstrapEnv writes under host.originLockdown (unit-tested): no public web ports,
    // 80/443 restricted to Cloudflare's ranges. Here the bootstrap runs for real with such settings.
    const env = "/etc/onebox/shop-e2e/bootstrap.env";
    const original = await root(`base64 -w0 ${env}`);
    const text = Buffer.from(original.trim(), "base64").toString("utf8");
    const gateway = sh("docker", ["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.Gateway}} {{end}}", NAME]).trim().split(/\s+/)[0];
    assert.match(gateway, /^\d+\.\d+\.\d+\.\d+$/, "this machine's address as the server sees it");
    const bootstrapWith = async (web: string[]) => {
        const changed = text
            .replace(/^ONEBOX_PUBLIC_TCP_PORTS=.*$/m, "ONEBOX_PUBLIC_TCP_PORTS=''")
            .replace(/^ONEBOX_RESTRICTED_PORTS=.*$/m, `ONEBOX_RESTRICTED_PORTS='${["80", "443"].flatMap((p) => web.map((c) => `${p}:${c}`)).join(" ")}'`);
        assert.notEqual(changed, text);
        await root(`printf '%s' '${Buffer.from(changed).toString("base64")}' | base64 -d > ${env} && ${BOOTSTRAP} >/dev/null`, 240_000);
    };
    const ip = server.ip();
    try {
        // Cloudflare-like ranges that do not include this machine: HTTPS and HTTP are dropped.
        await bootstrapWith(["198.51.100.0/24", "2001:db8::/32"]);
        // ufw lists IPv4 rules before IPv6 ones; no web port is open to "Anywhere" any more.
        assert.deepEqual(ufwRuleLines(await root("ufw status verbose")).filter((l) => /^(80|443)\//.test(l)), [
            "80/tcp ALLOW IN 198.51.100.0/24",
            "443/tcp ALLOW IN 198.51.100.0/24",
            "80/tcp ALLOW IN 2001:db8::/32",
            "443/tcp ALLOW IN 2001:db8::/32",
        ]);
        assert.equal(await tcpConnect(ip, 443, 4000), "timeout", "443 is dropped for a source outside the ranges");
        assert.equal(await tcpConnect(ip, 80, 4000), "timeout", "80 is dropped for a source outside the ranges");
        // This machine's address listed: HTTPS answers again.
        await bootstrapWith(["198.51.100.0/24", `${gateway}/32`]);
        assert.equal((await httpsRequest("app.example.test", 443, "/health", { address: ip })).status, 200);
    } finally {
        await root(`printf '%s' '${original.trim()}' | base64 -d > ${env} && ${BOOTSTRAP} >/dev/null`, 240_000);
    }
    assert.equal((await httpsRequest("app.example.test", 443, "/health", { address: ip })).status, 200, "open to everyone again");
});

test("H5: fail2ban runs an sshd jail on the systemd journal", async () => {
    assert.equal((await root("systemctl is-active fail2ban; systemctl is-enabled fail2ban")).trim(), "active\nenabled");
    const jail = await root("fail2ban-client status sshd");
    assert.match(jail, /Status for the jail: sshd/);
    assert.match(jail, /Journal matches:\s+_SYSTEMD_UNIT=ssh\.service/);
    assert.ok(Number((await root("fail2ban-client get sshd maxretry")).trim()) <= 5);
});

test("H6: unattended-upgrades is enabled for security updates only", async () => {
    const dump = await root("apt-config dump");
    assert.match(dump, /^APT::Periodic::Unattended-Upgrade "1";$/m);
    assert.match(dump, /^APT::Periodic::Update-Package-Lists "1";$/m);
    assert.equal((await root("systemctl is-enabled unattended-upgrades apt-daily-upgrade.timer; systemctl is-active apt-daily-upgrade.timer")).trim(), "enabled\nenabled\nactive");
    const dry = await root("unattended-upgrades --dry-run -v 2>&1", 120_000);
    const origins = /Allowed origins are: (.*)/.exec(dry)?.[1] ?? "";
    assert.match(origins, /origin=Debian,codename=trixie-security,label=Debian-Security/);
    for (const o of origins.split(", ")) {
        assert.match(o, /security/, `origin ${o} is security-only`);
    }
});

test("H7: Docker daemon with log rotation, live-restore and no-new-privileges", async () => {
    const daemon = JSON.parse(await root("cat /etc/docker/daemon.json")) as Record<string, unknown>;
    assert.equal(daemon["log-driver"], "json-file");
    assert.deepEqual(daemon["log-opts"], { "max-size": "10m", "max-file": "3" });
    assert.equal(daemon["live-restore"], true);
    assert.equal(daemon["no-new-privileges"], true);
    const info = JSON.parse(await root("docker info --format '{{json .}}'")) as { LoggingDriver: string; LiveRestoreEnabled: boolean; SecurityOptions: string[] };
    assert.equal(info.LoggingDriver, "json-file");
    assert.equal(info.LiveRestoreEnabled, true);
    assert.ok(info.SecurityOptions.includes("name=no-new-privileges"), info.SecurityOptions.join(" "));
    // In effect for a container started without any option: no new privileges, rotated logs.
    assert.match(await root("docker run --rm onebox-test/web:1 grep NoNewPrivs /proc/self/status"), /NoNewPrivs:\s+1/);
    assert.match(await root(`docker inspect -f '{{json .HostConfig.LogConfig}}' ${API}`), /"max-file":"3".*"max-size":"10m"|"max-size":"10m".*"max-file":"3"/);
});

test("H8: only the proxy publishes ports; PostgreSQL is on an internal network and unreachable from outside", { timeout: 120_000 }, async () => {
    const ps = (await root(`docker ps --filter label=com.docker.compose.project=${PROJECT} --format '{{.Label "com.docker.compose.service"}}\t{{.Ports}}'`))
        .trim()
        .split("\n")
        .map((l) => l.split("\t"));
    const publishing = ps.filter(([, ports]) => (ports ?? "").includes("->")).map(([s]) => s);
    assert.deepEqual(publishing, ["proxy"]);
    assert.deepEqual(ps.map(([s]) => s).sort(), ["api", "postgres", "proxy", "web"]);
    const proxyPorts = ps.find(([s]) => s === "proxy")?.[1] ?? "";
    assert.deepEqual([...proxyPorts.matchAll(/:(\d+)->/g)].map((m) => m[1]).sort(), ["443", "80"]);
    const nets = JSON.parse(await root(`docker inspect -f '{{json .NetworkSettings.Networks}}' ${PG}`)) as Record<string, { IPAddress: string }>;
    assert.deepEqual(Object.keys(nets), [`${PROJECT}_database`]);
    assert.equal((await root(`docker network inspect -f '{{.Internal}}' ${PROJECT}_database`)).trim(), "true");
    const pgIp = nets[`${PROJECT}_database`].IPAddress;
    // From outside the server: 5432 on the server's address is closed.
    assert.notEqual(await tcpConnect(server.ip(), 5432, 4000), "connected");
    // On the server: only a container on the database network reaches PostgreSQL (H13), one on the
    // app services' shared network or the proxy's does not.
    const probe = (network: string) =>
        tryRoot(`docker run --rm --network ${network} onebox-test/web:1 python3 -c "import socket; socket.create_connection(('${pgIp}', 5432), 3)"`, 60_000);
    assert.equal((await probe(`${PROJECT}_database`)).code, 0, "positive control: the database network reaches it");
    assert.notEqual((await probe(`${PROJECT}_internal`)).code, 0, "the app services' shared network does not");
    assert.notEqual((await probe(`${PROJECT}_edge`)).code, 0, "the edge network does not");
    // H13 in the running stack: the API (database: true) connects, the frontend cannot.
    const connect = (container: string) => tryRoot(`docker exec ${container} python3 -c "import socket; socket.create_connection(('${PG}', 5432), 3)"`, 60_000);
    assert.equal((await connect(API)).code, 0, "the API reaches PostgreSQL");
    assert.notEqual((await connect(`${PROJECT}-web-1`)).code, 0, "the frontend does not");
    assert.notEqual((await probe("bridge")).code, 0, "the default bridge does not");
});

test("H13: egress only for services with it; a service on internal networks only reaches neither the outside nor the host's own addresses, but does reach the API", { timeout: 300_000 }, async () => {
    const WEB = `${PROJECT}-web-1`;
    const connect = async (container: string, host: string, port: number) =>
        (await tryRoot(`docker exec ${container} python3 -c "import socket; socket.create_connection(('${host}', ${port}), 3)"`, 60_000)).code === 0;
    // "Outside": a listener in a container of this machine's engine, beyond the server (never the internet).
    const outside = `${NAME}-outside`;
    spawnSync("docker", ["rm", "-f", outside], { stdio: "ignore" });
    try {
        sh("docker", ["run", "-d", "--name", outside, "onebox-test/python:latest", "python3", "-m", "http.server", "8080"]);
        const outsideIp = sh("docker", ["inspect", "-f", "{{.NetworkSettings.IPAddress}}", outside]).trim();
        assert.match(outsideIp, /^\d+\.\d+\.\d+\.\d+$/);
        await waitFor("the outside listener", async () => (await tcpConnect(outsideIp, 8080, 2000)) === "connected", 30_000, 500);
        assert.equal(await connect(API, outsideIp, 8080), true, "the API (egress: true) reaches the outside listener");
        assert.equal(await connect(WEB, outsideIp, 8080), false, "the frontend (egress: false) does not");

        // The host's own addresses: sshd listens on all of them and ufw admits SSH from 172.16.0.0/12,
        // which covers Docker's subnets on the server. The API's egress connection is let in ...
        const serverIp = server.ip();
        assert.equal(await connect(API, serverIp, 22), true, "positive control: a container on the egress bridge reaches the host's sshd");
        // ... one from an internal network's bridge (obi-*) is dropped, to any of the host's addresses.
        const gateway = (await root(`docker network inspect -f '{{range .IPAM.Config}}{{.Gateway}}{{end}}' ${PROJECT}_internal`)).trim();
        assert.match(gateway, /^\d+\.\d+\.\d+\.\d+$/);
        assert.match((await root(`docker network inspect -f '{{index .Options "com.docker.network.bridge.name"}}' ${PROJECT}_internal`)).trim(), /^obi-[0-9a-f]{11}$/);
        assert.equal(await connect(WEB, serverIp, 22), false, "the frontend does not reach sshd on the server's address");
        assert.equal(await connect(WEB, gateway, 22), false, "nor on its internal network's gateway address");
        // It is the firewall rule that stops it: without the rule the gateway address answers.
        const HOOK = "-A ufw-before-input -i obi-+ -j onebox-internal-input";
        assert.equal((await root("iptables -S ufw-before-input")).split("\n").filter((l) => l === HOOK).length, 1);
        await root("iptables -D ufw-before-input -i obi-+ -j onebox-internal-input");
        try {
            assert.equal(await connect(WEB, gateway, 22), true, "negative control: without the rule the host answers an internal network");
        } finally {
            // ufw reload puts it back exactly once (it flushes its before-input chain on every load).
            await root("ufw reload >/dev/null");
        }
        assert.equal((await root("iptables -S ufw-before-input")).split("\n").filter((l) => l === HOOK).length, 1, "one rule after ufw reload");
        assert.equal(await connect(WEB, gateway, 22), false, "dropped again after ufw reload");

        // App services still reach each other by name (the frontend calls the API server-side).
        assert.equal(await connect(WEB, "api", 8000), true, "the frontend reaches the API by name");
    } finally {
        spawnSync("docker", ["rm", "-f", outside], { stdio: "ignore" });
    }
});

test("H9: every service has a health check and a restart policy; the app containers run as uid 10001", async () => {
    const compose = parseYaml(await root(`cat ${CURRENT}/compose.yaml`)) as { services: Record<string, { healthcheck?: unknown; restart?: string; user?: string }> };
    for (const [name, svc] of Object.entries(compose.services)) {
        assert.ok(svc.healthcheck, `${name} has a healthcheck`);
        assert.equal(svc.restart, "unless-stopped", `${name} restart policy`);
    }
    const running = await root(`docker ps --filter label=com.docker.compose.project=${PROJECT} -q | xargs docker inspect -f '{{index .Config.Labels "com.docker.compose.service"}} {{.HostConfig.RestartPolicy.Name}} {{.State.Health.Status}}'`);
    assert.deepEqual(running.trim().split("\n").sort(), ["api unless-stopped healthy", "postgres unless-stopped healthy", "proxy unless-stopped healthy", "web unless-stopped healthy"]);
    for (const svc of ["api", "web"]) {
        assert.equal(compose.services[svc].user, "10001:10001");
        assert.equal((await root(`docker exec ${PROJECT}-${svc}-1 id -u`)).trim(), "10001");
    }
    // PostgreSQL's server process (the container's main process) runs as the postgres user, not root.
    assert.equal((await root(`ps -o uid= -p "$(docker inspect -f '{{.State.Pid}}' ${PG})"`)).trim(), "999");
});

test("H10: env files are 0600 root in directories no other user can read", async () => {
    const envs = await root("stat -c '%n %a %U' /etc/onebox/shop-e2e/env/*.env /etc/onebox/shop-e2e/backup.env /etc/onebox/shop-e2e/bootstrap.env");
    assert.deepEqual(envs.trim().split("\n").sort(), [
        "/etc/onebox/shop-e2e/backup.env 600 root",
        "/etc/onebox/shop-e2e/bootstrap.env 600 root",
        "/etc/onebox/shop-e2e/env/api.env 600 root",
        "/etc/onebox/shop-e2e/env/web.env 600 root",
    ]);
    assert.equal((await root("stat -c '%a %U' /etc/onebox /etc/onebox/shop-e2e /etc/onebox/shop-e2e/env")).trim(), "700 root\n700 root\n700 root");
    // Nothing under /etc/onebox but the public data-volume note is readable by others.
    const readable = (await root("find /etc/onebox -perm /o=rwx -printf '%p\\n'")).trim();
    assert.equal(readable, "/etc/onebox/data-volume.env");
    // And its parent keeps it from other users anyway.
    assert.notEqual((await tryRoot("sudo -u nobody cat /etc/onebox/data-volume.env")).code, 0);
});

/** Every container of the stack: compose service name and `docker inspect` JSON. */
async function inspectStack(): Promise<{ service: string; text: string; json: Record<string, unknown> }[]> {
    const ids = (await root(`docker ps -q --filter label=com.docker.compose.project=${PROJECT}`)).trim().split("\n").filter(Boolean);
    assert.ok(ids.length >= 4, `the stack's containers: ${ids.join(" ")}`);
    const out: { service: string; text: string; json: Record<string, unknown> }[] = [];
    for (const id of ids) {
        const text = await root(`docker inspect ${id}`);
        const json = (JSON.parse(text) as Record<string, unknown>[])[0];
        out.push({ service: String((json.Config as { Labels: Record<string, string> }).Labels["com.docker.compose.service"]), text, json });
    }
    return out.sort((a, b) => a.service.localeCompare(b.service));
}

/** The secret values the stack's containers could carry (H11). */
function secretValues(): [string, string][] {
    return [
        ["APP_SECRET", secrets.APP_SECRET],
        ["POSTGRES_PASSWORD", secrets.POSTGRES_PASSWORD],
        ["POSTGRES_PASSWORD (URL-encoded)", encodeURIComponent(secrets.POSTGRES_PASSWORD)],
    ];
}

test("H11: docker inspect of every service shows no secret value; each secret is a file only the service's user reads, named by <NAME>_FILE", { timeout: 120_000 }, async () => {
    const stack = await inspectStack();
    assert.deepEqual(stack.map((c) => c.service), ["api", "postgres", "proxy", "web"]);
    for (const c of stack) {
        for (const [name, value] of secretValues()) {
            assert.ok(!c.text.includes(value), `docker inspect of ${c.service} shows ${name}`);
        }
        // The process environment too (what a crash reporter would dump).
        const environ = await root(`tr '\\0' '\\n' </proc/$(docker inspect -f '{{.State.Pid}}' ${c.json.Id as string})/environ`);
        for (const [name, value] of secretValues()) {
            assert.ok(!environ.includes(value), `the environment of ${c.service}'s process holds ${name}`);
        }
    }
    const apiEnv = (stack.find((c) => c.service === "api")?.json.Config as { Env: string[] }).Env;
    assert.ok(apiEnv.includes("APP_SECRET_FILE=/run/secrets/APP_SECRET"), apiEnv.join(" "));
    assert.ok(apiEnv.includes(`DATABASE_URL=postgresql://shop@${PG}:5432/shop`), "the URL without the password");
    assert.ok(apiEnv.includes("DATABASE_PASSWORD_FILE=/run/secrets/database-password"));
    // The app reads it: the file holds the value, owned by the service's uid, 0400.
    assert.equal(await root(`docker exec ${API} sh -c 'cat "$APP_SECRET_FILE"'`), secrets.APP_SECRET);
    assert.equal((await root(`docker exec ${API} stat -c '%a %u' /run/secrets/APP_SECRET /run/secrets/database-password`)).trim(), "400 10001\n400 10001");
    assert.equal((await root("stat -c '%a %u' /etc/onebox/shop-e2e/secrets/api/APP_SECRET")).trim(), "400 10001");
    // The env file holds nothing but its comment; web, which has no secret, has no secrets mount.
    assert.doesNotMatch(await root("cat /etc/onebox/shop-e2e/env/api.env"), /=/);
    assert.notEqual((await tryRoot(`docker exec ${PROJECT}-web-1 ls /run/secrets`)).code, 0);
});

test("H11: secretsAsEnv opts one secret into the API's environment (and only there); back to files without it", { timeout: 400_000 }, async () => {
    const optIn = { ...options, apiSecretsAsEnv: ["APP_SECRET"] };
    assert.deepEqual((await up(optIn)).ran, ["secrets", "deploy"]);
    try {
        const stack = await inspectStack();
        const api = stack.find((c) => c.service === "api");
        const env = (api?.json.Config as { Env: string[] }).Env;
        assert.ok(env.includes(`APP_SECRET=${secrets.APP_SECRET}`), "positive control: the opted-in secret is visible to docker inspect");
        assert.ok(!env.some((e) => e.startsWith("APP_SECRET_FILE=")));
        assert.ok(!(api?.text ?? "").includes(secrets.POSTGRES_PASSWORD), "the database password stays a file");
        for (const c of stack.filter((x) => x.service !== "api")) {
            assert.ok(!c.text.includes(secrets.APP_SECRET), `${c.service} did not opt in`);
        }
        assert.equal((await tryRoot(`docker exec ${API} test -e /run/secrets/APP_SECRET`)).code, 1, "no file for an opted-in secret");
    } finally {
        assert.deepEqual((await up(options)).ran, ["secrets", "deploy"]);
    }
    for (const c of await inspectStack()) {
        assert.ok(!c.text.includes(secrets.APP_SECRET), `${c.service} after opting out again`);
    }
});

test("databaseEnv: an async SQLAlchemy app's contract (postgresql+asyncpg URL, password as a variable) connects unchanged; back to the file without it", { timeout: 400_000 }, async () => {
    // The test API reads DATABASE_HOST/PORT/NAME/USER and, without a password file, DATABASE_PASSWORD:
    // with this contract it can only write through the password the variable carries.
    const contract = { scheme: "postgresql+asyncpg", passwordFile: null, password: "DATABASE_PASSWORD" };
    assert.deepEqual((await up({ ...options, apiDatabaseEnv: contract })).ran, ["secrets", "deploy"]);
    try {
        const api = (await inspectStack()).find((c) => c.service === "api");
        const env = (api?.json.Config as { Env: string[] }).Env;
        assert.ok(env.includes(`DATABASE_PASSWORD=${secrets.POSTGRES_PASSWORD}`), "the opted-in password variable");
        assert.ok(!env.some((e) => e.startsWith("DATABASE_PASSWORD_FILE=")), "no password file variable");
        const url = env.find((e) => e.startsWith("DATABASE_URL="))?.slice("DATABASE_URL=".length) ?? "";
        assert.match(url, /^postgresql\+asyncpg:\/\/shop@[a-z0-9-]+:5432\/shop$/, "the driver's scheme, no password in the URL");
        assert.equal((await tryRoot(`docker exec ${API} test -e /run/secrets/database-password`)).code, 1, "no password file mounted");
        const name = `dbenv-${Date.now()}`;
        const post = await httpsRequest("api.example.test", PORTS.https, "/api/items", { method: "POST", body: JSON.stringify({ name }) });
        assert.equal(post.status, 201, post.body);
        written.push(name);
        // The URL itself (driver stripped, as SQLAlchemy hands it to its driver) with the variable's password reaches the database.
        const probe = [
            "import os, urllib.parse, psycopg2",
            "u = urllib.parse.urlsplit(os.environ['DATABASE_URL'])",
            "c = psycopg2.connect(host=u.hostname, port=u.port, dbname=u.path[1:], user=u.username, password=os.environ['DATABASE_PASSWORD'])",
            "cur = c.cursor(); cur.execute('SELECT current_user, current_database()'); print(*cur.fetchone())",
        ].join("; ");
        assert.equal((await root(`docker exec ${API} python3 -c ${JSON.stringify(probe)}`)).trim(), "shop shop");
    } finally {
        assert.deepEqual((await up(options)).ran, ["secrets", "deploy"]);
    }
    const env = ((await inspectStack()).find((c) => c.service === "api")?.json.Config as { Env: string[] }).Env;
    assert.ok(!env.some((e) => e.includes(secrets.POSTGRES_PASSWORD)), "the password is a file again");
    assert.ok(env.some((e) => e.startsWith("DATABASE_PASSWORD_FILE=")));
});

test("H12: every container has a read-only root filesystem (writes only to its tmpfs and volumes) and a pids limit", { timeout: 180_000 }, async () => {
    const stack = await inspectStack();
    for (const c of stack) {
        const host = c.json.HostConfig as { ReadonlyRootfs: boolean; PidsLimit: number | null; Tmpfs: Record<string, string> | null };
        assert.equal(host.ReadonlyRootfs, true, `${c.service} ReadonlyRootfs`);
        assert.equal(host.PidsLimit, 256, `${c.service} PidsLimit`);
        assert.ok(Object.keys(host.Tmpfs ?? {}).includes("/tmp"), `${c.service} /tmp`);
        const id = c.json.Id as string;
        const root_ = await tryRoot(`docker exec ${id} sh -c 'echo x >/onebox-probe'`);
        assert.notEqual(root_.code, 0, `${c.service} wrote to its root filesystem`);
        assert.match(root_.stderr, /Read-only file system/, c.service);
        assert.equal((await tryRoot(`docker exec ${id} sh -c 'echo x >/tmp/onebox-probe && rm /tmp/onebox-probe'`)).code, 0, `${c.service} /tmp is writable`);
    }
    // Volumes stay writable: the API's uploads, PostgreSQL's data (the API wrote rows above).
    assert.equal((await tryRoot(`docker exec ${API} sh -c 'echo x >/data/uploads/.probe && rm /data/uploads/.probe'`)).code, 0);
    // The pids limit holds: threads stop well short of 1000, at the limit.
    const threads = await root(
        [
            `docker exec -i ${PROJECT}-web-1 python3 - <<'PY'`,
            "import threading, time",
            "n = 0",
            "try:",
            "    while n < 1000:",
            "        threading.Thread(target=time.sleep, args=(3,), daemon=True).start()",
            "        n += 1",
            "except RuntimeError as e:",
            "    print('stopped', n, e)",
            "else:",
            "    print('unlimited', n)",
            "PY",
        ].join("\n"),
        60_000,
    );
    const m = /^stopped (\d+) /m.exec(threads);
    assert.ok(m, threads);
    assert.ok(Number(m[1]) < 256, threads);
});

test("H12: the proxy runs as a non-root user with no effective capability and only NET_BIND_SERVICE in its bounding set, and serves 80/443", { timeout: 60_000 }, async () => {
    const proxy = `${PROJECT}-proxy-1`;
    const pid = (await root(`docker inspect -f '{{.State.Pid}}' ${proxy}`)).trim();
    assert.equal((await root(`ps -o uid= -p ${pid}`)).trim(), "10080");
    const status = await root(`cat /proc/${pid}/status`);
    assert.match(status, /^CapEff:\s+0000000000000000$/m);
    assert.match(status, /^CapBnd:\s+0000000000000400$/m, "NET_BIND_SERVICE (bit 10) only");
    assert.match(status, /^NoNewPrivs:\s+1$/m);
    assert.equal((await root(`docker inspect -f '{{json .HostConfig.CapAdd}}' ${proxy}`)).trim(), '["NET_BIND_SERVICE"]');
    assert.equal((await httpsRequest("api.example.test", PORTS.https, "/health")).status, 200);
    assert.equal((await httpRequest("api.example.test", PORTS.http, "/health")).status, 308);
    // What it writes (certificates, logs) is its own.
    assert.equal((await root("stat -c '%u' /mnt/data/shop-e2e/caddy/data /var/log/onebox/shop-e2e/caddy")).trim(), "10080\n10080");
});

test("bootstrap.sh --check: every H3-H7, H13 and H14 line passes, and every other module's check", async () => {
    const r = await tryRoot(`${BOOTSTRAP} --check`);
    assert.equal(r.code, 0, r.stdout);
    const lines = r.stdout.split("\n").filter((l) => /^(PASS|FAIL) /.test(l));
    assert.deepEqual(lines.filter((l) => l.startsWith("FAIL")), []);
    // H3-H7, H13 and H14 (SECURITY.md), and the modules without a property id: host, data volume, kernel
    // settings, packages (swap reports INFO only: the test server has none, swapMb 0).
    assert.deepEqual([...new Set(lines.map((l) => l.split(" ")[1]))].sort(), ["DATA", "H13", "H14", "H3", "H4", "H5", "H6", "H7", "HOST", "PKG", "SYSCTL"]);
    assert.match(r.stdout, /check: \d+ PASS, 0 FAIL/);
});

test("breaking a hardening line fails the checks: no sshd drop-in -> --check and the H3 helper fail; the bootstrap step restores it", { timeout: 180_000 }, async (t) => {
    try {
        await root(`rm -f ${SSHD_DROPIN}`);
        const check = await tryRoot(`${BOOTSTRAP} --check`);
        assert.equal(check.code, 1);
        assert.match(check.stdout, new RegExp(`^FAIL H3 ${SSHD_DROPIN} has the onebox hardening$`, "m"));
        assert.match(check.stdout, /^FAIL H3 sshd -T passwordauthentication yes \(want no\)$/m);
        const problems = await h3Problems(server);
        assert.ok(problems.some((p) => p.startsWith("sshd -T passwordauthentication yes")), problems.join("; "));
        assert.ok(problems.some((p) => p.includes(`${SSHD_DROPIN} is missing`)), problems.join("; "));
    } finally {
        const run = await runStepScript(server, stepOf("bootstrap"), secrets);
        note(t, "bootstrap re-run to repair", run.ms);
        assert.match(run.stdout, new RegExp(`changed: wrote ${SSHD_DROPIN}`));
    }
    assert.deepEqual(await h3Problems(server), []);
    assert.equal((await tryRoot(`${BOOTSTRAP} --check`)).code, 0);
});

test("HTTPS through the proxy: every route of both styles answers from the right service with security headers", async () => {
    for (const r of ROUTES) {
        const a = await httpsRequest(r.host, PORTS.https, r.path);
        assert.equal(a.status, 200, `https://${r.host}${r.path}: ${a.body.slice(0, 200)}`);
        assert.match(a.body, r.expect, `https://${r.host}${r.path} is served by ${r.service}`);
        assert.deepEqual(headerProblems(a), [], `https://${r.host}${r.path}`);
    }
    // Paths of the API prefix go to the API, even ones it does not know (its JSON 404, not the web's).
    const unknown = await httpsRequest("example.test", PORTS.https, "/api/nope");
    assert.equal(unknown.status, 404);
    assert.match(unknown.body, /"error":"not found"/);
    // An unknown hostname gets no site.
    await assert.rejects(httpsRequest("other.example.test", PORTS.https, "/"));
});

test("HTTP on port 80 redirects to HTTPS", async () => {
    for (const host of ["app.example.test", "api.example.test", "example.test"]) {
        const a = await httpRequest(host, PORTS.http, "/some/path?q=1");
        assert.equal(a.status, 308, host);
        assert.equal(a.headers.location, `https://${host}/some/path?q=1`);
    }
});

test("the API writes and reads the database; its data lives on the data volume (/dev/sdb at /mnt/data)", async () => {
    for (const hostPath of [["api.example.test", "/api/items"], ["example.test", "/api/items"]] as const) {
        const name = `e2e-${hostPath[0]}-${Date.now()}`;
        const post = await httpsRequest(hostPath[0], PORTS.https, hostPath[1], { method: "POST", body: JSON.stringify({ name }) });
        assert.equal(post.status, 201, post.body);
        written.push(name);
    }
    const list = JSON.parse((await httpsRequest("example.test", PORTS.https, "/api/items")).body) as { name: string }[];
    assert.deepEqual(list.map((i) => i.name), written);
    assert.equal(await psql("shop", "SELECT count(*) FROM items"), String(written.length));
    assert.equal((await root("findmnt -n -o SOURCE,FSTYPE /mnt/data")).trim().replace(/\s+/g, " "), "/dev/sdb ext4");
    assert.match(await root("grep ' /mnt/data ' /etc/fstab"), /^UUID=\S+ \/mnt\/data ext4 defaults,nofail 0 2$/m);
    assert.equal((await root("cat /mnt/data/shop-e2e/postgres/PG_VERSION")).trim(), "17");
    const mounts = JSON.parse(await root(`docker inspect -f '{{json .Mounts}}' ${PG}`)) as { Source: string; Destination: string }[];
    assert.ok(mounts.some((m) => m.Source === "/mnt/data/shop-e2e/postgres" && m.Destination === "/var/lib/postgresql/data"), JSON.stringify(mounts));
    // The table's file is on the data disk's filesystem.
    const relPath = await psql("shop", "SELECT pg_relation_filepath('items')");
    assert.equal((await root(`df --output=source /mnt/data/shop-e2e/postgres/${relPath} | tail -n 1`)).trim(), "/dev/sdb");
});

test("B1/B3: the backup service uploads a verified dump to daily/ with the same size, then writes LAST_SUCCESS; /healthz/backup is 200", { timeout: 180_000 }, async (t) => {
    assert.equal((await backupStatus()).http, 503, "no backup yet: the status endpoint says so");
    const t0 = Date.now();
    await root("systemctl start onebox-shop-e2e-backup.service", 170_000);
    note(t, "backup (systemctl start onebox-shop-e2e-backup.service)", Date.now() - t0);
    const last = (await root(`cat ${BACKUP_STATE}/LAST_SUCCESS`)).trim();
    const [when, key] = last.split(" ");
    assert.match(when, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    assert.match(key, new RegExp(`^${PREFIX}/daily/shop-\\d{8}T\\d{6}Z\\.dump$`));
    const objects = s3.objects(`${PREFIX}/daily/`);
    assert.deepEqual(objects.map((o) => o.key), [key]);
    const log = await root(`cat ${BACKUP_STATE}/last-run.log`);
    const uploaded = Number(new RegExp(`uploading ${key} \\((\\d+) bytes\\)`).exec(log)?.[1]);
    assert.equal(objects[0].size, uploaded, "the object has the dump's size");
    assert.match(log, new RegExp(`verified ${key}: ${uploaded} bytes in the bucket`));
    assert.ok(log.indexOf("dump verified with pg_restore --list") < log.indexOf(`uploading ${key}`), "the dump is checked before it is uploaded");
    assert.ok(log.indexOf(`verified ${key}`) < log.indexOf("backup finished"), "LAST_SUCCESS comes after the size check");
    const body = fs.readFileSync(path.join(s3.dir, BUCKET, `${key}._S3rver_object`));
    assert.equal(body.subarray(0, 5).toString(), "PGDMP");
    assert.equal(s3.objects(`${PREFIX}/files/`).length, 1, "the uploads volume is archived too");
    const status = await backupStatus();
    assert.equal(status.http, 200);
    assert.equal(status.json?.status, "ok");
    assert.equal(status.json?.lastKey, key);
    assert.equal(status.json?.lastSuccess, when);
    assert.doesNotMatch(status.body, new RegExp(BUCKET), "the public status names no bucket");
});

test("B4: the restore drill restores the latest dump into a throwaway database and passes; the status shows it", { timeout: 240_000 }, async (t) => {
    const t0 = Date.now();
    await root("systemctl start onebox-shop-e2e-restore-drill.service", 230_000);
    note(t, "restore drill", Date.now() - t0);
    const drill = JSON.parse(await root(`cat ${BACKUP_STATE}/drill.json`)) as { ok: boolean; key: string; tablesChecked: { table: string; rows: number }[]; error: unknown };
    assert.equal(drill.ok, true, JSON.stringify(drill));
    assert.equal(drill.error, null);
    assert.deepEqual(drill.tablesChecked, [{ table: "items", rows: written.length }]);
    assert.equal(drill.key, (await root(`cat ${BACKUP_STATE}/LAST_SUCCESS`)).trim().split(" ")[1]);
    const status = await backupStatus();
    assert.equal(status.http, 200);
    assert.equal((status.json?.drill as { ok: boolean } | undefined)?.ok, true);
    assert.equal((await root("docker ps -aq --filter label=onebox.role=backup-drill")).trim(), "", "the drill container is gone");
});

test("B2 + R5: adding an age recipient re-runs only the backup step; the dump is encrypted and restore.sh decrypts it with the identity on stdin", { timeout: 300_000 }, async (t) => {
    const ageDir = fs.mkdtempSync(path.join(os.tmpdir(), "onebox-e2e-age-"));
    try {
        const identityFile = path.join(ageDir, "identity.txt");
        sh("age-keygen", ["-o", identityFile]);
        const identity = fs.readFileSync(identityFile, "utf8");
        const recipient = sh("age-keygen", ["-y", identityFile]).trim();
        options = { ...options, ageRecipient: recipient, alertUrl: hook.url };
        const { ran } = await up(options);
        assert.deepEqual(ran, ["backup"], "a backup setting changes the backup step only");
        assert.match(await root("grep ^BACKUP_AGE_RECIPIENT= /etc/onebox/shop-e2e/backup.env"), new RegExp(recipient));

        await sleep(1100); // a new object name (timestamped to the second)
        let t0 = Date.now();
        await root("systemctl start onebox-shop-e2e-backup.service", 170_000);
        note(t, "encrypted backup", Date.now() - t0);
        const key = (await root(`cat ${BACKUP_STATE}/LAST_SUCCESS`)).trim().split(" ")[1];
        assert.match(key, /\.dump\.age$/);
        const body = fs.readFileSync(path.join(s3.dir, BUCKET, `${key}._S3rver_object`));
        assert.equal(body.subarray(0, 22).toString(), "age-encryption.org/v1\n");
        assert.ok(!body.includes(Buffer.from("PGDMP")), "no plaintext dump inside");

        // The drill cannot decrypt on the host (B2: the private key is not there) and says so.
        await root("systemctl start onebox-shop-e2e-restore-drill.service", 120_000);
        assert.equal((JSON.parse(await root(`cat ${BACKUP_STATE}/drill.json`)) as { skipped: string }).skipped, "encrypted");

        t0 = Date.now();
        const r = await server.execWithStdin(`${BACKUP_LIB}/restore.sh --key latest --into-scratch e2e_restore --yes`, identity, 170_000);
        note(t, "restore of the encrypted dump (restore.sh --into-scratch)", Date.now() - t0);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /dump decrypted/);
        assert.equal(await psql("e2e_restore", "SELECT count(*) FROM items"), await psql("shop", "SELECT count(*) FROM items"));
        assert.equal(await psql("e2e_restore", "SELECT string_agg(name, ',' ORDER BY id) FROM items"), written.join(","));
        // The identity did not stay on the server.
        assert.equal((await root("grep -rlF AGE-SECRET-KEY- /tmp /var/tmp /var/lib/onebox /etc/onebox /root 2>/dev/null || true")).trim(), "");
    } finally {
        await tryRoot(`docker exec ${PG} dropdb -U shop --if-exists e2e_restore`);
        fs.rmSync(ageDir, { recursive: true, force: true });
    }
});

test("B3/B5: a failing upload exits non-zero, leaves LAST_SUCCESS byte-identical, calls the alert URL and turns /healthz/backup into 503 (so does a failed drill) until they succeed again", { timeout: 900_000 }, async (t) => {
    const before = await root(`cat ${BACKUP_STATE}/LAST_SUCCESS | base64 -w0; echo; stat -c '%Y %s' ${BACKUP_STATE}/LAST_SUCCESS`);
    const alertsBefore = hook.requests().length;
    s3.stop();
    try {
        await sleep(1100);
        const t0 = Date.now();
        const r = await tryRoot("systemctl start onebox-shop-e2e-backup.service", 280_000);
        note(t, "failing backup", Date.now() - t0);
        assert.notEqual(r.code, 0, "the unit fails");
        assert.equal((await root("systemctl show -p Result --value onebox-shop-e2e-backup.service")).trim(), "exit-code");
        assert.equal(await root(`cat ${BACKUP_STATE}/LAST_SUCCESS | base64 -w0; echo; stat -c '%Y %s' ${BACKUP_STATE}/LAST_SUCCESS`), before);
        assert.match(await root(`cat ${BACKUP_STATE}/last-run.log`), /backup FAILED at step 'upload'/);
        const alerts = hook.requests().slice(alertsBefore);
        assert.equal(alerts.length, 1, JSON.stringify(alerts));
        assert.equal(alerts[0].method, "POST");
        assert.match(alerts[0].body, /"event":"onebox-backup-failed".*"step":"upload"/);
        // B5: the last success is recent, yet a monitor checking the HTTP status sees the failure, and why.
        const failed = await backupStatus();
        assert.equal(failed.http, 503, failed.body);
        assert.equal(failed.json?.status, "failed");
        assert.match(String(failed.json?.reason), /^the last backup run failed at \S+ \(step upload\)$/);
        // The restore drill cannot reach the bucket either: it fails, and says so.
        assert.notEqual((await tryRoot("systemctl start onebox-shop-e2e-restore-drill.service", 280_000)).code, 0);
        assert.equal((JSON.parse(await root(`cat ${BACKUP_STATE}/drill.json`)) as { ok: boolean | null }).ok, false);
    } finally {
        await s3.start();
    }
    // The next backup succeeds: the run is fine again, the failed drill still shows.
    await sleep(1100);
    await root("systemctl start onebox-shop-e2e-backup.service", 170_000);
    let status = await backupStatus();
    assert.equal(status.http, 503, status.body);
    assert.equal(status.json?.status, "drill-failed");
    assert.equal(status.json?.reason, "the last restore drill failed");
    // The next drill runs (the dump is encrypted, so it is skipped on the host by design: not a failure).
    await root("systemctl start onebox-shop-e2e-restore-drill.service", 200_000);
    status = await backupStatus();
    assert.equal(status.http, 200, status.body);
    assert.equal(status.json?.status, "ok");
    assert.equal(status.json?.reason, null);
});

test("B3: a stale last success turns /healthz/backup into 503; fresh again -> 200", { timeout: 120_000 }, async () => {
    const original = (await root(`base64 -w0 ${BACKUP_STATE}/LAST_SUCCESS`)).trim();
    const key = Buffer.from(original, "base64").toString("utf8").trim().split(" ")[1];
    try {
        const old = new Date(Date.now() - 30 * 3600_000).toISOString().replace(/\.\d+Z$/, "Z");
        await root(`printf '%s %s\\n' '${old}' '${key}' >${BACKUP_STATE}/LAST_SUCCESS && systemctl start onebox-shop-e2e-backup-status.service`);
        const stale = await backupStatus();
        assert.equal(stale.http, 503);
        assert.equal(stale.json?.status, "stale");
        assert.ok(Number(stale.json?.ageSeconds) >= 30 * 3600 - 60);
        assert.equal((await root("test -e /var/lib/onebox/shop-e2e/status/backup.stale && echo yes")).trim(), "yes");
    } finally {
        await root(`echo '${original}' | base64 -d >${BACKUP_STATE}/LAST_SUCCESS && systemctl start onebox-shop-e2e-backup-status.service`);
    }
    const fresh = await backupStatus();
    assert.equal(fresh.http, 200);
    assert.equal(fresh.json?.status, "ok");
});

test("R5 (a): the same configuration runs no step, and re-running every host step by hand changes nothing", { timeout: 300_000 }, async (t) => {
    const { ran } = await up(options);
    assert.deepEqual(ran, [], "all triggers unchanged");
    const containers = await containerSnapshot();
    const files = await hostFileSnapshot();
    const release = (await root(`readlink ${CURRENT}`)).trim();
    for (const step of stepsFor(options).filter((s) => !s.upload)) {
        const run = await runStepScript(server, step, secrets);
        t.diagnostic(`${step.name} by hand: ${(run.ms / 1000).toFixed(1)} s`);
        const out = run.stdout;
        assert.doesNotMatch(out, /^(updated|removed) /m, `${step.name} rewrote nothing`);
        if (step.name === "bootstrap") {
            assert.match(out, /done in \d+ s: no changes, the host already matches the settings/);
            assert.doesNotMatch(out, /changed: /);
        }
        if (step.name === "deploy") {
            assert.match(out, new RegExp(`deploying release ${release.split("/").pop()} \\(current: ${release.split("/").pop()}\\)`));
            assert.doesNotMatch(out, /canary/, "nothing to replace, so no canary");
        }
    }
    assert.equal(await containerSnapshot(), containers, "no container was recreated or restarted");
    assert.equal(await hostFileSnapshot(), files, "no managed file changed");
    assert.equal((await root(`readlink ${CURRENT}`)).trim(), release);
});

test("rotation: a new database password re-runs only secrets + deploy; PostgreSQL takes it, the API keeps writing, the old one is refused", { timeout: 300_000 }, async (t) => {
    // What passwordRotationDays does at a period boundary: the generated password changes.
    const old = secrets.POSTGRES_PASSWORD;
    const fresh = randomBytes(24).toString("hex");
    secrets = { ...secrets, POSTGRES_PASSWORD: fresh };
    const t0 = Date.now();
    const { ran } = await up(options);
    note(t, "database password rotation (secrets + deploy)", Date.now() - t0);
    assert.deepEqual(ran, ["secrets", "deploy"]);
    // A TCP login (scram-sha-256) with each password; the password travels on stdin, not in argv.
    const login = async (password: string) =>
        (await tryRoot(`printf '%s' '${password}' | docker exec -i ${PG} sh -c 'PGPASSWORD="$(cat)" psql -X -h 127.0.0.1 -U shop -d shop -tAc "SELECT 1"'`)).code;
    assert.equal(await login(fresh), 0, "the new password logs in");
    assert.notEqual(await login(old), 0, "the old password is refused");
    // The API runs with the new password: it writes and reads.
    const name = `e2e-rotated-${Date.now()}`;
    const post = await httpsRequest("api.example.test", PORTS.https, "/api/items", { method: "POST", body: JSON.stringify({ name }) });
    assert.equal(post.status, 201, post.body);
    written.push(name);
    const list = JSON.parse((await httpsRequest("example.test", PORTS.https, "/api/items")).body) as { name: string }[];
    assert.deepEqual(list.map((i) => i.name), written);
    // Nothing left to do: the same secrets run no step.
    assert.deepEqual((await up(options)).ran, []);
});

test("R8: a failing password statement leaves the password in no log: PostgreSQL's, any container's, the journal, the step output", { timeout: 400_000 }, async () => {
    const password = secrets.POSTGRES_PASSWORD;
    // Make the deploy's ALTER ROLE fail the way a concurrent change made it fail: a read-only session.
    await psql("postgres", "ALTER ROLE shop SET default_transaction_read_only = on");
    let error: unknown;
    try {
        await runStepScript(server, stepOf("deploy"), secrets);
    } catch (e) {
        error = e;
    } finally {
        await psql("postgres", "BEGIN READ WRITE; ALTER ROLE shop RESET default_transaction_read_only; COMMIT;");
    }
    assert.ok(error instanceof StepError, String(error));
    assert.match(error.result.stderr, /could not set the password of role shop: .*cannot execute ALTER ROLE in a read-only transaction/s);
    const pgLog = await root(`docker logs ${PG} 2>&1`);
    // Positive control: the statement did fail, and PostgreSQL logged the error.
    assert.match(pgLog, /ERROR: {2}cannot execute ALTER ROLE in a read-only transaction/);
    const places: [string, string][] = [
        ["PostgreSQL's log", pgLog],
        ["the step's stdout", error.result.stdout],
        ["the step's stderr", error.result.stderr],
        ["the journal", await root("journalctl --no-pager -o cat")],
    ];
    for (const id of (await root(`docker ps -aq --filter label=com.docker.compose.project=${PROJECT}`)).trim().split("\n").filter(Boolean)) {
        places.push([`docker logs ${id}`, await root(`docker logs ${id} 2>&1`)]);
    }
    for (const [where, text] of places) {
        assert.ok(!text.includes(password), `the password is in ${where}`);
    }
    // Not even its verifier: statement logging is off for that session.
    assert.doesNotMatch(pgLog, /SCRAM-SHA-256\$/);
    // The role is writable again: the same deploy passes and the API still logs in.
    const run = await runStepScript(server, stepOf("deploy"), secrets);
    assert.match(run.stdout, /release [0-9a-f]{12} is live/);
    assert.equal((await httpsRequest("api.example.test", PORTS.https, "/api/items")).status, 200);
});

test("R5 (b): a new API image re-runs only images + deploy, and the redeploy fails no request", { timeout: 300_000 }, async (t) => {
    assert.equal(await apiVersion(), "1");
    let loop: LoadLoop | undefined;
    const t0 = Date.now();
    let deployMs = 0;
    try {
        options = { ...options, apiImage: "onebox-test/api:2" };
        const { ran, runs } = await up(options, {
            beforeStep: (name) => {
                if (name === "deploy") {
                    loop = new LoadLoop({ port: PORTS.https, host: "api.example.test", path: "/health", concurrency: 4, pauseMs: 25, maxRequests: 2000, maxMs: 120_000 });
                }
            },
        });
        deployMs = runs.find((r) => r.name === "deploy")?.ms ?? 0;
        assert.deepEqual(ran, ["images", "deploy"]);
        assert.match(runs.find((r) => r.name === "deploy")?.stdout ?? "", /canary: the new api is healthy/);
    } finally {
        await sleep(1000);
    }
    assert.ok(loop, "the load loop ran during the deploy");
    const result = await loop.stop();
    note(t, "images + deploy of api:2", Date.now() - t0);
    note(t, "deploy step of api:2", deployMs);
    t.diagnostic(`load during the deploy: ${loadSummary(result)}`);
    assert.equal(result.failed, 0, JSON.stringify(result.failures));
    assert.ok(result.requests >= 100, `enough requests (${result.requests}) to mean something`);
    assert.deepEqual(result.versionOrder, ["1", "2"], "the version flipped from 1 to 2 once");
    assert.equal(await apiVersion(), "2");
});

test("R5 (c): a broken API image fails the deploy naming the api service; version 2 keeps serving throughout", { timeout: 300_000 }, async (t) => {
    const release = (await root(`readlink ${CURRENT}`)).trim();
    const good = options;
    const loop = new LoadLoop({ port: PORTS.https, host: "api.example.test", path: "/health", concurrency: 4, pauseMs: 25, maxRequests: 20_000, maxMs: 240_000 });
    const t0 = Date.now();
    let error: unknown;
    try {
        await up({ ...options, apiImage: "onebox-test/api:broken" });
    } catch (e) {
        error = e;
    }
    await sleep(1000);
    const result = await loop.stop();
    note(t, "failed deploy of api:broken (images + deploy)", Date.now() - t0);
    t.diagnostic(`load during the failed deploy: ${loadSummary(result)}`);
    assert.ok(error instanceof StepError, String(error));
    assert.equal(error.step, "deploy");
    assert.match(error.result.stderr, /release [0-9a-f]{12} failed: service api: the new container is running \(unhealthy\)/);
    assert.match(error.result.stderr, /the running api was not touched/);
    assert.match(error.result.stdout, /release [0-9a-f]{12} is serving again/);
    assert.equal(result.failed, 0, JSON.stringify(result.failures));
    assert.deepEqual(Object.keys(result.versions), ["2"], "only version 2 answered");
    assert.equal(await apiVersion(), "2");
    assert.equal((await root(`readlink ${CURRENT}`)).trim(), release);
    assert.equal((await root(`docker ps -aq --filter name=${PROJECT}-api-canary`)).trim(), "", "no canary left behind");

    // Back to the good configuration: the image list changed back (upload), the deploy trigger did not.
    const { ran } = await up(good);
    assert.deepEqual(ran, ["images"]);
    assert.equal(await apiVersion(), "2");
});

const LOCK = "/run/lock/onebox/shop-e2e.lock";

test("R7: two deploys started together: the second waits for the first (naming it), the newest request wins, no request fails", { timeout: 900_000 }, async (t) => {
    const releaseOf = (o: E2eOptions) => {
        const f = stepOf("deploy", o).files.find((x) => x.path.endsWith("/release.manifest"));
        assert.ok(f);
        return path.posix.dirname(f.path);
    };
    // First: a change to web (it is replaced); second, started while the first runs: the configuration as it is.
    const first = { ...options, webEnv: { DEPLOY_MARK: "first" } };
    const second = options;
    assert.notEqual(releaseOf(first), releaseOf(second));
    const loop = new LoadLoop({ port: PORTS.https, host: "app.example.test", path: "/health", concurrency: 3, pauseMs: 25, maxRequests: 20_000, maxMs: 600_000 });
    // Emptied first, so that only the first deploy's holder line can fill it (the check takes no lock itself).
    await root(`mkdir -p ${path.posix.dirname(LOCK)} && : >${LOCK}`);
    const t0 = Date.now();
    const a = runStepScript(server, stepOf("deploy", first), secrets);
    let b: Promise<StepRun> | undefined;
    try {
        // The second starts once the first holds the lock (it then names itself in the lock file).
        await waitFor("the first deploy to hold the stack lock", async () => /^onebox step deploy \(pid/.test((await tryRoot(`cat ${LOCK}`)).stdout), 120_000, 200);
        b = runStepScript(server, stepOf("deploy", second), secrets);
        const [ra, rb] = await Promise.all([a, b]);
        note(t, "two deploys, serialised", Date.now() - t0);
        assert.match(ra.stdout, new RegExp(`release ${path.posix.basename(releaseOf(first))} is live`));
        assert.match(rb.stdout, new RegExp(`release ${path.posix.basename(releaseOf(second))} is live`));
        // The second said whom it waited for; the first never waited.
        assert.match(rb.stdout, new RegExp(`waiting \\(at most \\d+ s\\) for the lock ${LOCK}, held by onebox step deploy \\(pid \\d+, user `));
        assert.doesNotMatch(ra.stdout, /waiting \(at most/);
    } finally {
        await Promise.allSettled([a, ...(b ? [b] : [])]);
    }
    const result = await loop.stop();
    t.diagnostic(`load during both deploys: ${loadSummary(result)}`);
    assert.equal(result.failed, 0, JSON.stringify(result.failures));
    assert.ok(result.requests >= 100, `enough requests (${result.requests})`);
    // The newest requested release is the one serving.
    assert.equal((await root(`readlink -f ${CURRENT}`)).trim(), releaseOf(second));
    const webEnv = (await root(`docker inspect -f '{{json .Config.Env}}' ${PROJECT}-web-1`)).trim();
    assert.doesNotMatch(webEnv, /DEPLOY_MARK/);
    assert.deepEqual(await allRoutesAnswer(), []);
    // Nothing of either run left behind: canaries, temporary proxy configs, half-made links.
    assert.equal((await root(`docker ps -aq --filter label=onebox.canary=${PROJECT}`)).trim(), "");
    assert.equal((await root("ls -A /srv/onebox/shop-e2e/proxy /srv/onebox/shop-e2e | grep -E 'Caddyfile\\.next|current\\.new|onebox-new' || true")).trim(), "");
});

test("R7: the wait message names the holder; a manual deploy.sh under a held lock fails cleanly after its bounded wait, changing nothing", { timeout: 300_000 }, async () => {
    const release = (await root(`readlink -f ${CURRENT}`)).trim();
    const containers = await containerSnapshot();
    // Someone else holds the lock (as a long deploy would), in a process group of its own.
    const pgid = (await root(`printf 'onebox step deploy (test holder)\\n' >${LOCK}; setsid flock ${LOCK} sleep 120 </dev/null >/dev/null 2>&1 & echo $!`)).trim();
    assert.match(pgid, /^\d+$/);
    try {
        await waitFor("the test holder to take the lock", async () => (await tryRoot(`flock --nonblock ${LOCK} true`)).code !== 0, 30_000, 200);
        const r = await tryRoot(`ONEBOX_LOCK_WAIT_SECONDS=3 /usr/local/lib/onebox/deploy.sh ${release}`, 120_000);
        assert.equal(r.code, 1, r.stdout + r.stderr);
        assert.match(r.stdout, new RegExp(`waiting \\(at most 3 s\\) for the lock ${LOCK}, held by onebox step deploy \\(test holder\\)`));
        assert.match(r.stderr, /error: .* is still held after 3 s by onebox step deploy \(test holder\); nothing was changed/);
        assert.doesNotMatch(r.stdout, /deploying release/);
    } finally {
        await tryRoot(`kill -- -${pgid}`);
    }
    assert.equal((await root(`readlink -f ${CURRENT}`)).trim(), release);
    assert.equal(await containerSnapshot(), containers, "no container was touched");
    // Free again: a manual deploy of the current release takes the lock and names itself while it runs.
    const r = await tryRoot(`/usr/local/lib/onebox/deploy.sh ${release}`, 300_000);
    assert.equal(r.code, 0, r.stderr);
    assert.match(await root(`cat ${LOCK}`), new RegExp(`^deploy\\.sh ${release} \\(pid \\d+, user `));
});

test("R5 (d): a crashed API container comes back by itself (restart policy)", { timeout: 120_000 }, async (t) => {
    const before = JSON.parse(await root(`docker inspect -f '{{json .State}}' ${API}`)) as { Pid: number };
    const restarts = Number((await root(`docker inspect -f '{{.RestartCount}}' ${API}`)).trim());
    // A crash: the main process dies from outside Docker's API (`docker kill` counts as an operator stop, which no restart policy undoes).
    await root(`kill -9 ${before.Pid}`);
    const ms = await waitFor(
        "the api container to be restarted and healthy",
        async () => {
            const s = (await tryRoot(`docker inspect -f '{{.RestartCount}} {{.State.Status}} {{.State.Health.Status}}' ${API}`)).stdout.trim().split(" ");
            return Number(s[0]) > restarts && s[1] === "running" && s[2] === "healthy";
        },
        90_000,
        500,
    );
    note(t, "api back after a crash", ms);
    assert.equal(await apiVersion(), "2");
});

test("R5 (e): after a reboot everything comes back: data volume, firewall, all routes, the data", { timeout: 400_000 }, async (t) => {
    const rebootAt = Date.now();
    await server.reboot();
    const ms = Date.now() - rebootAt;
    note(t, "reboot (docker restart) until SSH answers", ms);
    // It really was a reboot: PID 1 (systemd) and the app containers started after it.
    const initAge = Number((await root("ps -o etimes= -p 1")).trim());
    assert.ok(initAge * 1000 <= Date.now() - rebootAt + 1000, `systemd started ${initAge} s ago`);
    const ready = await waitFor(
        "every route to answer after the reboot",
        async () => (await allRoutesAnswer()).length === 0,
        240_000,
        2000,
    ).catch(async (e: Error) => {
        throw new Error(`${e.message}: ${(await allRoutesAnswer()).join("; ")}`);
    });
    note(t, "reboot until every route answers", ms + ready);
    assert.equal((await root("findmnt -n -o SOURCE /mnt/data")).trim(), "/dev/sdb");
    assert.match(await root("ufw status"), /^Status: active$/m);
    assert.deepEqual(await allRoutesAnswer(), []);
    const list = JSON.parse((await httpsRequest("api.example.test", PORTS.https, "/api/items")).body) as { name: string }[];
    assert.deepEqual(list.map((i) => i.name), written);
    assert.equal(await apiVersion(), "2");
    assert.equal((await tryRoot(`${BOOTSTRAP} --check`)).code, 0, "the hardening holds after the reboot");
    assert.match(await root("iptables -S DOCKER-USER"), /-j onebox-docker-deny/);
    assert.match(await root("iptables -S ufw-before-input"), /^-A ufw-before-input -i obi-\+ -j onebox-internal-input$/m, "H13 host rule loaded at boot");
    const started = Date.parse((await root(`docker inspect -f '{{.State.StartedAt}}' ${API}`)).trim());
    assert.ok(started >= rebootAt - 1000, "the api container was started again after the reboot");
});

test("published PostgreSQL (Chronos): the listed network connects only over TLS, verified against the stack's CA", { timeout: 300_000 }, async (t) => {
    const ip = server.ip();
    const gateway = sh("docker", ["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.Gateway}} {{end}}", NAME]).trim().split(/\s+/)[0];
    // The certificates DatabaseTls makes in Pulumi, made here with openssl: a CA and a server certificate for the address.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "onebox-e2e-pgtls-"));
    try {
        const ext = path.join(dir, "server.ext");
        fs.writeFileSync(ext, `subjectAltName=IP:${ip}\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n`);
        const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
        sh("openssl", ["req", "-x509", ...ec, "-keyout", `${dir}/ca.key`, "-out", `${dir}/ca.pem`, "-days", "2", "-subj", "/CN=e2e database CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
        sh("openssl", ["req", ...ec, "-keyout", `${dir}/server.key`, "-out", `${dir}/server.csr`, "-subj", "/CN=e2e database"]);
        sh("openssl", ["x509", "-req", "-in", `${dir}/server.csr`, "-CA", `${dir}/ca.pem`, "-CAkey", `${dir}/ca.key`, "-CAcreateserial", "-out", `${dir}/server.pem`, "-days", "2", "-extfile", ext]);
        // A second CA the server's certificate does not chain to.
        sh("openssl", ["req", "-x509", ...ec, "-keyout", `${dir}/other.key`, "-out", `${dir}/other.pem`, "-days", "2", "-subj", "/CN=someone else"]);
        secrets = { ...secrets, POSTGRES_TLS_CERT: fs.readFileSync(`${dir}/server.pem`, "utf8"), POSTGRES_TLS_KEY: fs.readFileSync(`${dir}/server.key`, "utf8") };

        options = { ...options, databaseAllowedCidrs: [`${gateway}/32`] };
        const t0 = Date.now();
        const { ran } = await up(options);
        note(t, "publish the database (bootstrap + secrets + deploy)", Date.now() - t0);
        assert.deepEqual(ran, ["bootstrap", "secrets", "deploy"]);

        const psqlFrom = (conninfo: string) =>
            spawnSync("psql", ["-X", "-tA", "-c", "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", `host=${ip} port=5432 dbname=shop user=shop connect_timeout=5 ${conninfo}`], {
                encoding: "utf8",
                env: { PATH: process.env.PATH, PGPASSWORD: secrets.POSTGRES_PASSWORD },
                timeout: 30_000,
            });
        const verified = psqlFrom(`sslmode=verify-full sslrootcert=${dir}/ca.pem`);
        assert.equal(verified.status, 0, verified.stderr);
        assert.equal(verified.stdout.trim(), "t", "the session is encrypted");
        const plain = psqlFrom("sslmode=disable");
        assert.notEqual(plain.status, 0);
        assert.match(plain.stderr, /no encryption/, "pg_hba.conf refuses an unencrypted connection from the listed network");
        const wrongCa = psqlFrom(`sslmode=verify-full sslrootcert=${dir}/other.pem`);
        assert.notEqual(wrongCa.status, 0);
        assert.match(wrongCa.stderr, /certificate verify failed/);
        // The apps inside the stack still connect without TLS over the internal network.
        assert.equal((await httpsRequest("api.example.test", PORTS.https, "/api/items")).status, 200);
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
});
