/**
 * migrate-layout.sh: a stack deployed with the single-stack layout moves into its own
 * directories, and only that stack (issue: several stacks per server). It runs on a
 * directory standing for / (ONEBOX_ROOT) with a fake systemctl that records its calls.
 */
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

const SCRIPT = path.resolve(__dirname, "../../../scripts/host/bootstrap/migrate-layout.sh");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "onebox-layout-"));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

let sites = 0;

interface Site {
    root: string;
    calls: string;
    env: NodeJS.ProcessEnv;
}

function put(root: string, rel: string, content = "x\n"): void {
    const p = path.join(root, rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, content);
}

/** A server as the single-stack layout left it, for stack `project` of app shop. */
function legacySite(project = "shop-prod"): Site {
    const root = path.join(tmp, `site-${++sites}`);
    const bin = path.join(root, "..", `bin-${sites}`);
    fs.mkdirSync(bin, { recursive: true });
    const calls = path.join(root, "..", `calls-${sites}.log`);
    fs.writeFileSync(calls, "");
    fs.writeFileSync(path.join(bin, "systemctl"), `#!/usr/bin/env bash\nprintf 'systemctl %s\\n' "$*" >>"${calls}"\n`, { mode: 0o755 });
    put(root, "srv/onebox/shop/releases/r1/release.manifest", `PROJECT=${project}\nPROXY=caddy\n`);
    put(root, "srv/onebox/shop/releases/r1/compose.yaml", "name: x\n");
    fs.symlinkSync("releases/r1", path.join(root, "srv/onebox/shop/current"));
    put(root, "srv/onebox/shop/proxy/Caddyfile", "site\n");
    put(root, "etc/onebox/shop/env/api.env", "A=1\n");
    put(root, "etc/onebox/shop/secrets/postgres/postgres-password", "pw\n");
    put(root, "etc/onebox/backup.env", "BACKUP_S3_BUCKET=b\n");
    put(root, "etc/onebox/pgbackrest.conf", "[global]\n");
    put(root, "etc/onebox/bootstrap.env", "ONEBOX_STACK=old\n");
    put(root, "etc/onebox/data-volume.env", "ONEBOX_DATA_PATH=/mnt/data\n");
    put(root, "var/lib/onebox/backup/LAST_SUCCESS", "2026-01-01T00:00:00Z key\n");
    put(root, "var/lib/onebox/status/backup.json", "{}\n");
    put(root, "var/log/onebox/shop/caddy/access.log", "log\n");
    put(root, "mnt/data/postgres/PG_VERSION", "17\n");
    put(root, "mnt/data/redis/appendonly.aof", "r\n");
    put(root, "mnt/data/caddy/data/cert.pem", "c\n");
    put(root, "mnt/data/volumes/api/uploads/file.txt", "upload\n");
    put(root, "mnt/data/postgres-release-dumps/r1.dump", "d\n");
    fs.mkdirSync(path.join(root, "mnt/data/lost+found"), { recursive: true });
    for (const unit of ["onebox-backup.timer", "onebox-backup.service", "onebox-restore-drill.timer", "onebox-pitr-push.path", "onebox-job-shop_tick.timer", "onebox-job-shop_tick.service", "onebox-job-shop-eu_tick.timer"]) {
        put(root, `etc/systemd/system/${unit}`, "[Unit]\n");
    }
    // Written by this update's bootstrap step before the move runs.
    put(root, "etc/onebox/shop-prod/bootstrap.env", "ONEBOX_STACK=shop-prod\n");
    return { root, calls, env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, ONEBOX_ROOT: root, ONEBOX_LOCK_WAIT_SECONDS: "1" } };
}

function migrate(s: Site, project = "shop-prod") {
    return spawnSync("bash", [SCRIPT, "shop", project, "/mnt/data"], { env: s.env, encoding: "utf8", timeout: 60_000 });
}

const read = (s: Site, rel: string) => fs.readFileSync(path.join(s.root, rel), "utf8");
const isLink = (s: Site, rel: string) => fs.lstatSync(path.join(s.root, rel)).isSymbolicLink();
const exists = (s: Site, rel: string) => fs.existsSync(path.join(s.root, rel));

describe("migrate-layout.sh: one stack's single-stack layout into its own directories", () => {
    test("every path moves under the project; the old paths link to the new ones, so an old release still starts (rollback)", () => {
        const s = legacySite();
        const r = migrate(s);
        assert.equal(r.status, 0, r.stderr);
        // The stack's own directories hold everything.
        assert.equal(read(s, "etc/onebox/shop-prod/env/api.env"), "A=1\n");
        assert.equal(read(s, "etc/onebox/shop-prod/secrets/postgres/postgres-password"), "pw\n");
        assert.equal(read(s, "etc/onebox/shop-prod/backup.env"), "BACKUP_S3_BUCKET=b\n");
        assert.equal(read(s, "etc/onebox/shop-prod/pgbackrest.conf"), "[global]\n");
        assert.equal(read(s, "srv/onebox/shop-prod/current/release.manifest"), "PROJECT=shop-prod\nPROXY=caddy\n");
        assert.equal(fs.readlinkSync(path.join(s.root, "srv/onebox/shop-prod/current")), "releases/r1", "the relative current link still resolves");
        assert.equal(read(s, "var/lib/onebox/shop-prod/backup/LAST_SUCCESS"), "2026-01-01T00:00:00Z key\n");
        assert.equal(read(s, "var/lib/onebox/shop-prod/status/backup.json"), "{}\n");
        assert.equal(read(s, "var/log/onebox/shop-prod/caddy/access.log"), "log\n");
        assert.equal(read(s, "mnt/data/shop-prod/postgres/PG_VERSION"), "17\n");
        assert.equal(read(s, "mnt/data/shop-prod/redis/appendonly.aof"), "r\n");
        assert.equal(read(s, "mnt/data/shop-prod/caddy/data/cert.pem"), "c\n");
        assert.equal(read(s, "mnt/data/shop-prod/volumes/api/uploads/file.txt"), "upload\n");
        assert.equal(read(s, "mnt/data/shop-prod/postgres-release-dumps/r1.dump"), "d\n");
        // The bootstrap settings this update wrote win over the old file, which goes.
        assert.equal(read(s, "etc/onebox/shop-prod/bootstrap.env"), "ONEBOX_STACK=shop-prod\n");
        assert.ok(!exists(s, "etc/onebox/bootstrap.env"));
        assert.ok(!exists(s, "etc/onebox/backup.env"), "one backup.env per stack: none left at the top");
        // Old paths that a release rendered before the move names are links to the new ones.
        for (const [old, target] of [
            ["etc/onebox/shop", "etc/onebox/shop-prod"],
            ["srv/onebox/shop", "srv/onebox/shop-prod"],
            ["var/log/onebox/shop", "var/log/onebox/shop-prod"],
            ["var/lib/onebox/status", "var/lib/onebox/shop-prod/status"],
            ["mnt/data/postgres", "mnt/data/shop-prod/postgres"],
            ["mnt/data/volumes", "mnt/data/shop-prod/volumes"],
        ]) {
            assert.ok(isLink(s, old), `${old} is a link`);
            assert.equal(fs.readlinkSync(path.join(s.root, old)), path.join(s.root, target));
        }
        assert.equal(read(s, "mnt/data/postgres/PG_VERSION"), "17\n", "the old data path still reaches the data");
        // What is not the stack's stays where it is.
        assert.ok(fs.lstatSync(path.join(s.root, "mnt/data/lost+found")).isDirectory() && !isLink(s, "mnt/data/lost+found"));
        assert.equal(read(s, "etc/onebox/data-volume.env"), "ONEBOX_DATA_PATH=/mnt/data\n");
        // The old units are stopped and removed; another app's job units are not touched.
        const units = fs.readdirSync(path.join(s.root, "etc/systemd/system")).sort();
        assert.deepEqual(units, ["onebox-job-shop-eu_tick.timer"]);
        const calls = fs.readFileSync(s.calls, "utf8");
        assert.match(calls, /^systemctl disable --now onebox-backup\.timer$/m);
        assert.match(calls, /^systemctl disable --now onebox-pitr-push\.path$/m);
        assert.match(calls, /^systemctl disable --now onebox-job-shop_tick\.timer$/m);
        assert.match(calls, /^systemctl stop onebox-backup\.service$/m);
        assert.match(calls, /^systemctl daemon-reload$/m);
        assert.doesNotMatch(calls, /shop-eu/);
        assert.match(r.stdout, /moving shop-prod from the single-stack layout/);

        // A second run finds nothing to do and changes nothing.
        fs.writeFileSync(s.calls, "");
        const again = migrate(s);
        assert.equal(again.status, 0, again.stderr);
        assert.equal(again.stdout, "");
        assert.equal(fs.readFileSync(s.calls, "utf8"), "");
    });

    test("the old layout of another stack (staging of the same app) is left alone for that stack's own update", () => {
        const s = legacySite("shop-staging");
        const r = migrate(s);
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.stdout, /belongs to shop-staging, not shop-prod/);
        assert.ok(!isLink(s, "srv/onebox/shop") && !isLink(s, "mnt/data/postgres") && !isLink(s, "etc/onebox/shop"));
        assert.equal(read(s, "etc/onebox/backup.env"), "BACKUP_S3_BUCKET=b\n");
        assert.ok(exists(s, "etc/systemd/system/onebox-backup.timer"));
        assert.ok(!exists(s, "mnt/data/shop-prod"));
        assert.equal(fs.readFileSync(s.calls, "utf8"), "");
    });

    test("an interrupted move is finished by the next run: the releases move last and mark the old layout", () => {
        const s = legacySite();
        // As if a run stopped after moving the database: its link is in place, the rest is not.
        fs.mkdirSync(path.join(s.root, "mnt/data/shop-prod"), { recursive: true });
        fs.renameSync(path.join(s.root, "mnt/data/postgres"), path.join(s.root, "mnt/data/shop-prod/postgres"));
        fs.symlinkSync(path.join(s.root, "mnt/data/shop-prod/postgres"), path.join(s.root, "mnt/data/postgres"));
        const r = migrate(s);
        assert.equal(r.status, 0, r.stderr);
        assert.equal(read(s, "mnt/data/shop-prod/postgres/PG_VERSION"), "17\n");
        assert.equal(read(s, "mnt/data/shop-prod/redis/appendonly.aof"), "r\n");
        assert.ok(isLink(s, "srv/onebox/shop"));
    });

    test("an entry that exists on both sides stops the move, naming both; nothing is overwritten", () => {
        const s = legacySite();
        put(s.root, "etc/onebox/shop-prod/env/api.env", "NEWER=1\n");
        const r = migrate(s);
        assert.equal(r.status, 1);
        assert.match(r.stderr, /cannot move .*etc\/onebox\/shop\/env to .*etc\/onebox\/shop-prod\/: .*etc\/onebox\/shop-prod\/env exists already/);
        assert.equal(read(s, "etc/onebox/shop-prod/env/api.env"), "NEWER=1\n");
        assert.equal(read(s, "etc/onebox/shop/env/api.env"), "A=1\n");
        assert.ok(!isLink(s, "srv/onebox/shop"), "the old layout still marks the stack, so the next run tries again");
    });

    test("a path of this stack that is another stack's compatibility link is refused, never written through", () => {
        const s = legacySite("shop-prod");
        // The app `shop-prod` of an old layout moved to shop-prod-eu and left a link at /etc/onebox/shop-prod.
        fs.rmSync(path.join(s.root, "etc/onebox/shop-prod"), { recursive: true });
        fs.mkdirSync(path.join(s.root, "etc/onebox/shop-prod-eu"), { recursive: true });
        fs.symlinkSync(path.join(s.root, "etc/onebox/shop-prod-eu"), path.join(s.root, "etc/onebox/shop-prod"));
        const r = migrate(s);
        assert.equal(r.status, 1);
        assert.match(r.stderr, /etc\/onebox\/shop-prod is a link left by another stack's move .*Rename one app \(app\.name\)/);
        assert.ok(!isLink(s, "srv/onebox/shop"));
    });

    test("bad arguments are refused before anything moves", () => {
        const s = legacySite();
        for (const args of [["shop", "shop-prod"], ["Shop", "shop-prod", "/mnt/data"], ["shop", "shop-prod", "mnt/data"], ["shop", "shop", "/mnt/data"]]) {
            const r = spawnSync("bash", [SCRIPT, ...args], { env: s.env, encoding: "utf8" });
            assert.equal(r.status, 1, args.join(" "));
            assert.match(r.stderr, /\[layout\] ERROR: /);
        }
        assert.ok(!isLink(s, "srv/onebox/shop"));
    });
});
