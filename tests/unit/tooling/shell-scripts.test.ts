/**
 * Every shell script of the repository is ShellCheck'ed by `npm run lint`:
 * the files `scripts/lint-shell.sh` checks are compared with an independent
 * walk of the tree (every `*.sh` and every file with a bash/sh shebang).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync, openSync, readSync, closeSync } from "node:fs";
import path from "node:path";

const ROOT = path.resolve(__dirname, "../../..");
/** Not part of the repository: dependencies, VCS data, scratch and render output. */
const SKIP_DIRS = new Set([".git", "node_modules", ".scratch", "out", ".cache"]);

function firstLine(file: string): string {
    const fd = openSync(file, "r");
    try {
        const buf = Buffer.alloc(128);
        const n = readSync(fd, buf, 0, buf.length, 0);
        return buf.subarray(0, n).toString("utf8").split("\n")[0];
    } finally {
        closeSync(fd);
    }
}

function shellScriptsOnDisk(dir = ROOT): string[] {
    const found: string[] = [];
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const full = path.join(dir, entry.name);
        if (entry.isDirectory()) {
            if (!SKIP_DIRS.has(entry.name)) found.push(...shellScriptsOnDisk(full));
        } else if (entry.isFile() && (entry.name.endsWith(".sh") || /^#!.*[/\s](ba)?sh(\s|$)/.test(firstLine(full)))) {
            found.push(path.relative(ROOT, full));
        }
    }
    return found;
}

describe("tooling: ShellCheck covers every shell script", () => {
    const listed = spawnSync("bash", [path.join(ROOT, "scripts/lint-shell.sh"), "--list"], { encoding: "utf8" });

    it("lint-shell.sh lists its files", () => {
        assert.equal(listed.status, 0, listed.stderr);
        assert.ok(listed.stdout.split("\n").includes("scripts/host/bootstrap/bootstrap.sh"));
    });

    it("every *.sh and bash/sh-shebang file on disk is in the list", () => {
        const checked = new Set(listed.stdout.split("\n").filter(Boolean));
        const onDisk = shellScriptsOnDisk();
        assert.ok(onDisk.length >= 20, `only ${onDisk.length} scripts found`);
        // .ci/run has no extension: the shebang rule must catch it.
        assert.ok(onDisk.includes(".ci/run"));
        assert.deepEqual(onDisk.filter((f) => !checked.has(f)), []);
    });

    it("npm run lint runs it", () => {
        const pkg = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")) as { scripts: Record<string, string> };
        assert.match(pkg.scripts.lint, /bash scripts\/lint-shell\.sh/);
    });
});
