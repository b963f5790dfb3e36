/**
 * H14 on a real server: an existing server already runs another stack's
 * container (standing in for an existing Traefik: a small web server
 * publishing a port) under a daemon.json of its admin's own. The program's
 * bootstrap and deploy must leave it alone:
 *
 * - a daemon setting that needs a Docker restart is refused while the guest
 *   runs (no host.allowDockerRestart), naming the setting and the container,
 *   and nothing changes;
 * - once the admin has set it, the bootstrap merges the rest (live-restore,
 *   applied with a reload), the first deploy and a re-deploy run, and the guest
 *   is never restarted (same container id, StartedAt and PID), its daemon.json
 *   keys survive, and with host.keepPublishedPorts its published port stays
 *   reachable from outside the server;
 * - without keepPublishedPorts the same port is dropped (the check can fail).
 *
 *   flock -w 3600 /tmp/onebox-host-suite.lock node --import tsx --test --test-concurrency=1 tests/host/existing-guests.test.ts
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { e2eConfig, e2eRawConfig, e2eSecrets, e2eSteps, makeKeys, runSteps, StepError, TestServer, waitFor, type Keys, type TriggerState } from "./lib/harness";
import { installAdminDocker, loadImage } from "./lib/fixture";
import type { StepName } from "../../components/provisioning/steps";

const NAME = "onebox-guests-r5t1";
const PORTS = { ssh: 2341, http: 18341, https: 18441 };
const GUEST = "guest-web";
const GUEST_IMAGE = "onebox-test/web:1";
const GUEST_PORT = 8081;
/** The guest admin's own daemon settings, before the stack arrives: no live-restore, no userland-proxy. */
const GUEST_DAEMON = {
    "log-level": "warn",
    "log-driver": "json-file",
    "log-opts": { "max-size": "20m", "max-file": "2", labels: "guest" },
    "no-new-privileges": true,
};
/** The steps up to the deploy (backups are other tests' business). */
const STEPS: StepName[] = ["wait-ready", "bootstrap", "secrets", "images", "deploy"];

let keysDir = "";
let keys: Keys;
let server: TestServer;
const secrets = e2eSecrets();
const state: TriggerState = {};

interface Guest {
    id: string;
    startedAt: string;
    pid: string;
}

function stepsFor(host: Record<string, unknown>, webEnv?: Record<string, string>) {
    const raw = e2eRawConfig(PORTS, keys.hostPub, webEnv ? { webEnv } : {});
    raw.host = { ...(raw.host as Record<string, unknown>), ...host };
    return e2eSteps(e2eConfig(raw), 1).filter((s) => STEPS.includes(s.name));
}

async function root(body: string): Promise<string> {
    const r = await server.script(body, 300_000);
    if (r.code !== 0) {
        throw new Error(`server script exited ${r.code}: ${body.slice(0, 200)}\n${r.stdout.slice(-2000)}\n${r.stderr.slice(-2000)}`);
    }
    return r.stdout;
}

async function guest(): Promise<Guest> {
    const [id, startedAt, pid] = (await root(`docker inspect -f '{{.Id}} {{.State.StartedAt}} {{.State.Pid}}' ${GUEST}`)).trim().split(" ");
    return { id, startedAt, pid };
}

async function daemonJson(): Promise<Record<string, unknown>> {
    return JSON.parse(await root("cat /etc/docker/daemon.json")) as Record<string, unknown>;
}

/** Whether the guest's published port answers from outside the server (this machine, to the server's address). */
function reachableFromOutside(): boolean {
    const r = spawnSync("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", `http://${server.ip()}:${GUEST_PORT}/`], { encoding: "utf8", timeout: 15_000 });
    return r.stdout === "200";
}

before(async () => {
    keysDir = fs.mkdtempSync(path.join(os.tmpdir(), "onebox-guests-keys-"));
    keys = makeKeys(keysDir, PORTS.ssh);
    server = new TestServer(NAME, PORTS, keys);
    server.stop();
    server.start();
    await server.firstBoot("/dev/sdb", "/mnt/data");
    // The server as its admin left it: Docker from the distribution, their own daemon.json,
    // and another stack's web server publishing a port.
    await installAdminDocker(server, GUEST_DAEMON);
    loadImage(server, GUEST_IMAGE);
    await root(`docker run -d --name ${GUEST} --restart unless-stopped -p ${GUEST_PORT}:3000 ${GUEST_IMAGE} >/dev/null`);
    await waitFor("the guest answers inside the server", async () => (await server.script(`curl -fsS -o /dev/null http://127.0.0.1:${GUEST_PORT}/`)).code === 0, 60_000);
}, { timeout: 900_000 });

after(() => {
    server?.stop();
    if (keysDir) {
        fs.rmSync(keysDir, { recursive: true, force: true });
    }
});

test("H14 a setting that needs a Docker restart is refused while another stack's container runs; nothing changes", { timeout: 900_000 }, async () => {
    const before = await guest();
    const daemonBefore = await root("cat /etc/docker/daemon.json");
    const err = await runSteps(server, stepsFor({ keepPublishedPorts: [GUEST_PORT] }), secrets, state).then(
        () => undefined,
        (e: unknown) => e,
    );
    assert.ok(err instanceof StepError, `the bootstrap must fail, got ${String(err)}`);
    assert.equal(err.step, "bootstrap");
    assert.match(err.result.stderr, /the Docker daemon settings userland-proxy take effect only when Docker restarts, and containers of other stacks run: guest-web\./);
    assert.match(err.result.stderr, /set host\.allowDockerRestart: true/);
    assert.equal(await root("cat /etc/docker/daemon.json"), daemonBefore, "daemon.json untouched");
    assert.deepEqual(await guest(), before, "the guest was not restarted");
    // The check says the same.
    const check = await server.script("/usr/local/lib/onebox/bootstrap.sh --check");
    assert.match(check.stdout, /^FAIL H14 no Docker restart waits for a permission the stack does not give - userland-proxy need a Docker restart, which would stop containers of other stacks: guest-web \(host\.allowDockerRestart is false\)$/m);
    assert.match(check.stdout, /^FAIL H7 \/etc\/docker\/daemon\.json has log rotation, live-restore, no-new-privileges, userland-proxy false - to set: live-restore,userland-proxy$/m);
});

test("H14 bootstrap and first deploy: the guest keeps running, its daemon settings survive, its port stays open", { timeout: 1_200_000 }, async () => {
    // The admin adds the setting that needs a restart, in their own maintenance window.
    await root(`jq '. + {"userland-proxy": false}' /etc/docker/daemon.json >/tmp/d.json && mv /tmp/d.json /etc/docker/daemon.json
systemctl restart docker
for i in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
for i in $(seq 1 30); do [ "$(docker inspect -f '{{.State.Running}}' ${GUEST})" = true ] && break; sleep 1; done`);
    const before = await guest();
    const runs = await runSteps(server, stepsFor({ keepPublishedPorts: [GUEST_PORT] }), secrets, state);
    // wait-ready ran (unchanged) before the refused bootstrap.
    assert.deepEqual(runs.map((r) => [r.name, r.ran]), STEPS.map((s) => [s, s !== "wait-ready"]));
    const boot = runs.find((r) => r.name === "bootstrap")?.stdout ?? "";
    assert.match(boot, /changed: reloaded docker: live-restore applied live/);
    assert.doesNotMatch(boot, /restarting docker/);
    assert.match(runs.find((r) => r.name === "deploy")?.stdout ?? "", /release [0-9a-f]{12} is live/);

    assert.deepEqual(await guest(), before, "same container, same start, same process");
    assert.deepEqual(await daemonJson(), { ...GUEST_DAEMON, "userland-proxy": false, "live-restore": true });
    assert.equal((await root("docker info --format '{{.LiveRestoreEnabled}}'")).trim(), "true", "live-restore is in effect (reload)");
    assert.ok(reachableFromOutside(), `the guest's port ${GUEST_PORT} answers from outside the server (host.keepPublishedPorts)`);
    const check = await server.script("/usr/local/lib/onebox/bootstrap.sh --check");
    assert.equal(check.code, 0, check.stdout.split("\n").filter((l) => l.startsWith("FAIL")).join("\n"));
    assert.match(check.stdout, /^PASS H7 the running dockerd uses \/etc\/docker\/daemon\.json \(no restart pending\)$/m);
});

test("H14 a re-deploy restarts nothing of the guest's", { timeout: 900_000 }, async () => {
    const before = await guest();
    const runs = await runSteps(server, stepsFor({ keepPublishedPorts: [GUEST_PORT] }, { RELEASE_NOTE: "second" }), secrets, state);
    assert.deepEqual(runs.filter((r) => r.ran).map((r) => r.name), ["deploy"]);
    assert.deepEqual(await guest(), before);
    assert.ok(reachableFromOutside());
});

test("H4 without host.keepPublishedPorts the guest's port is dropped at the firewall (the check above can fail)", { timeout: 900_000 }, async () => {
    const before = await guest();
    const runs = await runSteps(server, stepsFor({}, { RELEASE_NOTE: "second" }), secrets, state);
    assert.deepEqual(runs.filter((r) => r.ran).map((r) => r.name), ["bootstrap"]);
    assert.match(runs[1].stdout, /changed: DOCKER-USER rules/);
    assert.equal(reachableFromOutside(), false, "dropped from outside");
    assert.equal((await server.script(`curl -fsS -o /dev/null http://127.0.0.1:${GUEST_PORT}/`)).code, 0, "still running and answering inside the server");
    assert.deepEqual(await guest(), before);
});
