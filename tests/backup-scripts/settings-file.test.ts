/**
 * Which settings file the backup scripts read when ONEBOX_BACKUP_ENV names none (several
 * stacks per server): the only stack's, never a guess between two. Runs
 * `backup.sh --check-settings` on a directory standing for /etc/onebox.
 */
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

const BACKUP_SH = path.resolve(__dirname, "../../scripts/host/backup/backup.sh");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "onebox-settings-"));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
let n = 0;

const SETTINGS = ["BACKUP_S3_BUCKET='shop-backups'", "BACKUP_S3_ACCESS_KEY_ID='k'", "BACKUP_S3_SECRET_ACCESS_KEY='s'", "BACKUP_DB_CONTAINER='c'", "BACKUP_DB_NAME='app'", "BACKUP_DB_USER='app'"].join("\n");

/** An /etc/onebox with a backup.env in each named stack directory. */
function etc(stacks: string[]): string {
    const dir = path.join(tmp, `etc-${++n}`);
    for (const s of stacks) {
        fs.mkdirSync(path.join(dir, s), { recursive: true });
        fs.writeFileSync(path.join(dir, s, "backup.env"), `${SETTINGS}\nBACKUP_S3_PREFIX='${s}'\n`, { mode: 0o600 });
    }
    fs.mkdirSync(dir, { recursive: true });
    return dir;
}

function check(dir: string, extra: NodeJS.ProcessEnv = {}) {
    const env: NodeJS.ProcessEnv = { ...process.env, ONEBOX_ETC_DIR: dir, ...extra };
    if (!("ONEBOX_BACKUP_ENV" in extra)) delete env.ONEBOX_BACKUP_ENV;
    return spawnSync("bash", [BACKUP_SH, "--check-settings"], { env, encoding: "utf8", timeout: 30_000 });
}

describe("backup scripts: the settings file of one stack among several", () => {
    test("one stack on the server: its file is read without being named", () => {
        const dir = etc(["shop-prod"]);
        const r = check(dir);
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.stdout + r.stderr, new RegExp(`settings are valid \\(${dir}/shop-prod/backup\\.env\\)`));
    });

    test("two stacks: the scripts refuse to guess and list both files; naming one works", () => {
        const dir = etc(["shop-prod", "shop-staging"]);
        const r = check(dir);
        assert.notEqual(r.status, 0);
        assert.match(r.stderr, /holds the backups of several stacks \(.*shop-prod\/backup\.env .*shop-staging\/backup\.env\); name one: ONEBOX_BACKUP_ENV=/);
        const named = check(dir, { ONEBOX_BACKUP_ENV: path.join(dir, "shop-staging", "backup.env") });
        assert.equal(named.status, 0, named.stderr);
        assert.match(named.stdout + named.stderr, /shop-staging\/backup\.env\)/);
    });

    test("a directory that is a link left by the move to the per-stack layout is the same stack, not a second one", () => {
        const dir = etc(["shop-prod"]);
        fs.symlinkSync(path.join(dir, "shop-prod"), path.join(dir, "shop"));
        const r = check(dir);
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.stdout + r.stderr, /shop-prod\/backup\.env\)/);
    });

    test("no stack: the error names where the file should be", () => {
        const r = check(etc([]));
        assert.notEqual(r.status, 0);
        assert.match(r.stderr, /settings file .*\/<app>-<env>\/backup\.env does not exist/);
    });
});
