/**
 * A stack deployed by the version before stacks had their own directories, updated by this
 * one, on a real (container) server. The old version is the program itself at LEGACY_COMMIT,
 * extracted from the repository's history and run with the same harness: its steps deploy
 * the single-stack layout (/etc/onebox/shop, /srv/onebox/shop, /mnt/data/postgres, the
 * onebox-backup timers), take a backup, and then this version's steps run on the same server.
 *
 * - the first update moves every path into the stack's own (migrate-layout.sh, before the
 *   bootstrap): the data, the uploads, the backup state carry over, the old timers go, the
 *   stack's own timers back up from the new paths;
 * - the release rendered before the move still starts (a rollback to it) through the links
 *   the move leaves at the old paths, on the same data;
 * - a second run of the move changes nothing.
 *
 *   flock -w 3600 /tmp/onebox-host-suite.lock node --import tsx --test --test-concurrency=1 tests/host/layout-migration.test.ts
 *
 * Needs what e2e.test.ts needs and the commit in the repository's history (a shallow clone
 * lacks it: the file then skips, naming the reason).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import type { StackConfig } from "../../components/config/schema";
import { DEPLOY_USER } from "../../components/hosts/host";
import type { Step } from "../../components/provisioning/steps";
import { curl, e2eConfig, e2eRawConfig, e2eSecrets, e2eSteps, runSteps, type StepRun, type TriggerState } from "./lib/harness";
import { Fixture } from "./lib/fixture";

/** The last commit with the single-stack layout. */
const LEGACY_COMMIT = "c69991b";
const ROOT = path.resolve(__dirname, "../..");
/** Inside the repository, so that the old modules resolve this checkout's node_modules. */
const LEGACY_DIR = path.join(ROOT, ".scratch", `legacy-${LEGACY_COMMIT}`);
const NAME = "onebox-layout-m2v8";
const PORTS = { ssh: 2345, http: 18345, https: 18445 };
const PROJECT = "shop-e2e";

function legacyMissing(): string | false {
    const r = spawnSync("git", ["-C", ROOT, "cat-file", "-e", `${LEGACY_COMMIT}^{commit}`], { encoding: "utf8" });
    return r.status === 0 ? false : `commit ${LEGACY_COMMIT} is not in this clone's history (shallow clone?)`;
}

const fx = new Fixture({ name: NAME, ports: PORTS, images: ["onebox-test/api:1", "onebox-test/web:1", "onebox-test/postgres:17", "onebox-test/caddy:latest"], s3: {} });
// Not a tool this machine lacks but history the clone lacks: it skips, naming the reason,
// even under ONEBOX_REQUIRE_TOOLS=1 (a shallow clone of CI would otherwise fail the suite).
const SKIP = fx.skip || legacyMissing();
const root = (body: string, timeoutMs?: number) => fx.root(body, timeoutMs);

let secrets: Record<string, string> = {};
const state: TriggerState = {};
let legacyRuns: StepRun[] = [];
let legacyRelease = "";

/** The old program's modules, extracted from LEGACY_COMMIT. */
interface Legacy {
    validateConfig: (raw: unknown) => { config: StackConfig };
    buildSteps: (config: StackConfig, ctx: unknown) => Step[];
    loadHostScripts: () => unknown;
}

async function legacyProgram(): Promise<Legacy> {
    fs.rmSync(LEGACY_DIR, { recursive: true, force: true });
    fs.mkdirSync(LEGACY_DIR, { recursive: true });
    const archive = spawnSync("bash", ["-c", `git -C "${ROOT}" archive ${LEGACY_COMMIT} components scripts package.json tsconfig.json | tar -x -C "${LEGACY_DIR}"`], { encoding: "utf8" });
    assert.equal(archive.status, 0, archive.stderr);
    const load = (await import(path.join(LEGACY_DIR, "components/config/load.ts"))) as Pick<Legacy, "validateConfig">;
    const steps = (await import(path.join(LEGACY_DIR, "components/provisioning/steps.ts"))) as Pick<Legacy, "buildSteps">;
    const scripts = (await import(path.join(LEGACY_DIR, "components/provisioning/host-scripts.ts"))) as Pick<Legacy, "loadHostScripts">;
    return { validateConfig: load.validateConfig, buildSteps: steps.buildSteps, loadHostScripts: scripts.loadHostScripts };
}

async function items(): Promise<string[]> {
    const r = await curl("api.example.test", PORTS.https, "/api/items");
    return (JSON.parse(r.stdout) as { name: string }[]).map((i) => i.name).sort();
}

async function addItem(name: string): Promise<void> {
    const r = await curl("api.example.test", PORTS.https, "/api/items", ["-X", "POST", "-H", "content-type: application/json", "-d", JSON.stringify({ name }), "-w", "\n%{http_code}"]);
    assert.match(r.stdout, /\n201$/, r.stdout);
}

const config = (): StackConfig => e2eConfig(e2eRawConfig(PORTS, fx.keys.hostPub));

fx.use(async () => {
    const legacy = await legacyProgram();
    secrets = e2eSecrets();
    const old = legacy.validateConfig(e2eRawConfig(PORTS, fx.keys.hostPub)).config;
    const steps = legacy.buildSteps(old, {
        dataPath: "/mnt/data",
        dataDevice: "/dev/sdb",
        sshUser: DEPLOY_USER,
        sshPort: 22,
        scripts: legacy.loadHostScripts(),
        dockerAptSource: "auto",
        backup: { endpoint: `http://127.0.0.1:${fx.s3.port}` },
    });
    legacyRuns = await runSteps(fx.server, steps, secrets, state);
    legacyRelease = path.basename((await root("readlink -f /srv/onebox/shop/current")).trim());
    await addItem("before-the-move");
    await root("echo upload-before-the-move > /mnt/data/volumes/api/uploads/kept.txt");
    await root("systemctl start onebox-backup.service", 280_000);
}, 1_800_000);

test("the old version deployed the single-stack layout (the starting point is real)", { skip: SKIP, timeout: 120_000 }, async () => {
    assert.ok(legacyRuns.every((r) => r.ran), legacyRuns.map((r) => r.name).join(" "));
    assert.match(legacyRelease, /^[0-9a-f]{12}$/);
    assert.equal((await root("cat /mnt/data/postgres/PG_VERSION")).trim(), "17");
    assert.equal((await root("test -d /etc/onebox/shop && test -f /etc/onebox/backup.env && test -f /etc/onebox/bootstrap.env && echo old")).trim(), "old");
    assert.equal((await root("systemctl is-active onebox-backup.timer")).trim(), "active");
    assert.match(await root("cat /var/lib/onebox/backup/LAST_SUCCESS"), /shop\/e2e\/daily\/shop-\d{8}T\d{6}Z\.dump/);
    assert.deepEqual(await items(), ["before-the-move"]);
});

test("the first update moves the stack into its own directories: data, uploads and backup state carry over; its own timers back up", { skip: SKIP, timeout: 1_200_000 }, async () => {
    const lastBefore = (await root("cat /var/lib/onebox/backup/LAST_SUCCESS")).trim();
    const runs = await runSteps(fx.server, e2eSteps(config(), fx.s3.port), secrets, state);
    const boot = runs.find((r) => r.name === "bootstrap");
    assert.ok(boot?.ran);
    assert.match(boot.stdout, /\[layout\] moving shop-e2e from the single-stack layout into its own directories/);
    assert.match(boot.stdout, /\[layout\] moved {5}\/mnt\/data\/postgres -> \/mnt\/data\/shop-e2e\/postgres \(the old path links to it\)/);
    assert.match(runs.find((r) => r.name === "deploy")?.stdout ?? "", /release [0-9a-f]{12} is live/);
    // The database and the uploads are the same ones, on the new paths.
    assert.deepEqual(await items(), ["before-the-move"]);
    assert.equal((await root("cat /mnt/data/shop-e2e/volumes/api/uploads/kept.txt")).trim(), "upload-before-the-move");
    const mounts = JSON.parse(await root(`docker inspect -f '{{json .Mounts}}' ${PROJECT}-postgres`)) as { Source: string; Destination: string }[];
    assert.ok(mounts.some((m) => m.Source === "/mnt/data/shop-e2e/postgres"), JSON.stringify(mounts));
    // The old paths are links to the new ones; the per-host settings went into the stack's directory.
    assert.equal((await root("readlink /mnt/data/postgres /etc/onebox/shop /srv/onebox/shop /var/lib/onebox/backup")).trim(), "/mnt/data/shop-e2e/postgres\n/etc/onebox/shop-e2e\n/srv/onebox/shop-e2e\n/var/lib/onebox/shop-e2e/backup");
    assert.equal((await root("ls /etc/onebox/*.env | grep -v data-volume.env || true")).trim(), "");
    assert.equal((await root("cat /var/lib/onebox/shop-e2e/backup/LAST_SUCCESS")).trim(), lastBefore);
    // The old units are gone; the stack's own are armed and back up from the new paths.
    assert.equal((await root("ls /etc/systemd/system | grep -E '^onebox-(backup|restore-drill|backup-status)\\.' || true")).trim(), "");
    assert.equal((await root("systemctl is-active onebox-shop-e2e-backup.timer")).trim(), "active");
    await root("systemctl start onebox-shop-e2e-backup.service", 280_000);
    const last = (await root("cat /var/lib/onebox/shop-e2e/backup/LAST_SUCCESS")).trim();
    assert.notEqual(last, lastBefore);
    assert.equal(fx.s3.objects("shop/e2e/daily/").length, 2, "the old backup and the new one, under the same prefix");
});

test("the release rendered before the move still starts, on the same data, through the links at the old paths (a rollback to it)", { skip: SKIP, timeout: 600_000 }, async () => {
    const newRelease = path.basename((await root("readlink -f /srv/onebox/shop-e2e/current")).trim());
    assert.notEqual(newRelease, legacyRelease);
    const out = await root(`/usr/local/lib/onebox/deploy.sh /srv/onebox/shop-e2e/releases/${legacyRelease} 2>&1`, 480_000);
    assert.match(out, new RegExp(`release ${legacyRelease} is live`));
    const mounts = JSON.parse(await root(`docker inspect -f '{{json .Mounts}}' ${PROJECT}-postgres`)) as { Source: string }[];
    assert.ok(mounts.some((m) => m.Source === "/mnt/data/postgres"), "the old release names the old path");
    assert.deepEqual(await items(), ["before-the-move"], "the same database, through the link");
    // And back to the current release.
    const back = await root(`/usr/local/lib/onebox/deploy.sh /srv/onebox/shop-e2e/releases/${newRelease} 2>&1`, 480_000);
    assert.match(back, new RegExp(`release ${newRelease} is live`));
    assert.deepEqual(await items(), ["before-the-move"]);
});

test("the move runs once: a second run changes nothing", { skip: SKIP, timeout: 120_000 }, async () => {
    const listing = "find /etc/onebox /srv/onebox /var/lib/onebox /mnt/data -maxdepth 2 -printf '%p %y %l\\n' | sort";
    const before = await root(listing);
    const again = await root(`/usr/local/lib/onebox/migrate-layout.sh shop ${PROJECT} /mnt/data 2>&1`);
    assert.equal(again, "");
    assert.equal(await root(listing), before);
});
