/**
 * scripts/test-calendar.sh --ci is the only run of the unit and backup-script suites in CI
 * (scripts/test.sh): it must print each run's whole output (CI counts the tests from it) and
 * fail when a run fails. `npm` and `faketime` are replaced by recorders on PATH.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

const ROOT = path.resolve(__dirname, "../../..");

function calendarCi(npmExit: number) {
    const bin = fs.mkdtempSync(path.join(os.tmpdir(), "onebox-calendar-"));
    try {
        // The fake suite prints a TAP-like line naming the command and the date it was given.
        fs.writeFileSync(path.join(bin, "npm"), `#!/bin/sh\necho "ok 1 - npm $* at \${ONEBOX_TEST_NOW:-faked clock}"\nexit ${npmExit}\n`, { mode: 0o755 });
        // faketime -f SPEC CMD...: records the clock it was asked for, then runs CMD.
        fs.writeFileSync(path.join(bin, "faketime"), '#!/bin/sh\necho "faketime $2"\nshift 2\nexec "$@"\n', { mode: 0o755 });
        return spawnSync("bash", [path.join(ROOT, "scripts/test-calendar.sh"), "--ci"], {
            env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, CALENDAR_LOG_DIR: path.join(bin, "logs") },
            encoding: "utf8",
        });
    } finally {
        fs.rmSync(bin, { recursive: true, force: true });
    }
}

test("--ci prints every run's output on stdout: the scripts on a Sunday and a Monday, the unit suite at the rotation boundary", () => {
    const r = calendarCi(0);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split("\n"), [
        "ok 1 - npm run test:scripts --silent at 2026-12-06T10:00:00Z",
        "ok 1 - npm run test:scripts --silent at 2026-11-30T10:00:00Z",
        "faketime @2026-12-02 23:59:50",
        "ok 1 - npm test --silent at faked clock",
    ]);
    assert.match(r.stderr, /^PASS unit 2026-12-02T23:59:50Z$/m);
});

test("--ci exits non-zero when a run fails, and still prints its output", () => {
    const r = calendarCi(1);
    assert.equal(r.status, 1);
    assert.match(r.stdout, /^ok 1 - npm run test:scripts --silent at 2026-12-06T10:00:00Z$/m);
    assert.match(r.stderr, /^FAIL scripts 2026-12-06T10:00:00Z /m);
});
