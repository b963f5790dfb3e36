/**
 * Which settings file bootstrap.sh reads (several stacks per server): the one the step names
 * (ONEBOX_BOOTSTRAP_ENV); run by hand without it, a single-stack setup's
 * /etc/onebox/bootstrap.env, else the only stack's /etc/onebox/<stack>/bootstrap.env, and
 * with several stacks none by chance. Runs the shipped script's own function on a settings
 * directory in a temporary directory (ONEBOX_ETC_DIR).
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { shippedBootstrap } from "../../helpers/bootstrap-script";

const shipped = shippedBootstrap();
const tmp = mkdtempSync(join(tmpdir(), "onebox-bootstrap-settings-"));
after(() => {
    rmSync(shipped.dir, { recursive: true, force: true });
    rmSync(tmp, { recursive: true, force: true });
});
/** The assembled script without its final `main "$@"`: sourcing it defines every function. */
const LIB = join(shipped.dir, "functions.sh");
writeFileSync(LIB, shipped.script.replace(/main "\$@"\n$/, ""));
let n = 0;

/** A settings directory with a bootstrap.env per named stack ("" = the single-stack file). */
function etc(stacks: string[]): string {
    const dir = join(tmp, `etc-${++n}`);
    mkdirSync(dir, { recursive: true });
    for (const s of stacks) {
        mkdirSync(join(dir, s), { recursive: true });
        writeFileSync(join(dir, s, "bootstrap.env"), `ONEBOX_STACK='${s}'\n`, { mode: 0o600 });
    }
    return dir;
}

function settingsFile(dir: string, named?: string) {
    const env: NodeJS.ProcessEnv = { ...process.env, ONEBOX_ETC_DIR: dir };
    delete env.ONEBOX_BOOTSTRAP_ENV;
    if (named) env.ONEBOX_BOOTSTRAP_ENV = named;
    return spawnSync("bash", ["-c", `set -euo pipefail; set -o noglob; source ${LIB}; find_settings_file; printf '%s\\n' "$SETTINGS_FILE"`], { env, encoding: "utf8" });
}

void describe("bootstrap.sh: the settings file of one stack among several", () => {
    void it("the file the step names, whatever else is there", () => {
        const dir = etc(["shop-prod", "shop-staging"]);
        const r = settingsFile(dir, join(dir, "shop-staging", "bootstrap.env"));
        assert.equal(r.status, 0, r.stderr);
        assert.equal(r.stdout.trim(), join(dir, "shop-staging", "bootstrap.env"));
    });

    void it("by hand on a server with one stack: that stack's file; a link left by the move is the same stack", () => {
        const dir = etc(["shop-prod"]);
        symlinkSync(join(dir, "shop-prod"), join(dir, "shop"));
        const r = settingsFile(dir);
        assert.equal(r.status, 0, r.stderr);
        assert.equal(r.stdout.trim(), join(dir, "shop-prod", "bootstrap.env"));
    });

    void it("by hand with several stacks: it stops and lists their files rather than apply one by chance", () => {
        const r = settingsFile(etc(["shop-prod", "shop-staging"]));
        assert.notEqual(r.status, 0);
        assert.match(r.stderr, /several stacks' settings \(.*shop-prod\/bootstrap\.env .*shop-staging\/bootstrap\.env\); name one: ONEBOX_BOOTSTRAP_ENV=<file>/);
    });

    void it("a single-stack setup's file, until its stack moves", () => {
        const dir = etc(["shop-staging"]);
        writeFileSync(join(dir, "bootstrap.env"), "ONEBOX_STACK='shop-prod'\n", { mode: 0o600 });
        const r = settingsFile(dir);
        assert.equal(r.stdout.trim(), join(dir, "bootstrap.env"));
    });
});
