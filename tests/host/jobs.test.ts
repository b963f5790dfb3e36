/**
 * Scheduled jobs on a real (container) server, installed by the program's own
 * steps on the end-to-end stack:
 *
 * - a job scheduled every minute runs on its own (the timer, not the test, starts
 *   it) as a one-off container of the API's current release, with the API's env
 *   and secret files, and its output is in the journal;
 * - a failing job (exit 3) marks its unit failed and calls the alert receiver
 *   (`backups.alertUrl`, the fallback), whose URL is in no unit file or command line;
 * - removing the jobs from the configuration removes their timers and units;
 * - the cron -> OnCalendar conversion agrees with systemd's own calendar
 *   (`systemd-analyze calendar`) on the next runs from a fixed time.
 *
 *   flock -w 3600 /tmp/onebox-host-suite.lock node --import tsx --test --test-concurrency=1 tests/host/jobs.test.ts
 *
 * One run on the shared 2-core machine: 814 s in all, most of it the stack's first
 * deploy (images uploaded) and the second run of the steps; the timer's first run
 * was seen 65 s after the jobs step, the calendar comparison took 39 s.
 *
 * Talks only to 127.0.0.1 and the containers it creates; every wait is bounded.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { CronExpressionParser } from "cron-parser";
import { cronToOnCalendar } from "../../components/config/validators";
import { jobUnitName } from "../../components/provisioning/render/jobs";
import { e2eConfig, e2eRawConfig, e2eSecrets, e2eSteps, runSteps, waitFor, type TriggerState } from "./lib/harness";
import { Fixture } from "./lib/fixture";

const NAME = "onebox-jobs-k7t2";
const PORTS = { ssh: 2341, http: 18341, https: 18441 };
const TICK = jobUnitName("shop-e2e", "tick");
const FAIL = jobUnitName("shop-e2e", "fail");

const fx = new Fixture({ name: NAME, ports: PORTS, images: ["onebox-test/api:1", "onebox-test/postgres:17"], hook: {} });
const SKIP = fx.skip;

let secrets: Record<string, string> = {};
const state: TriggerState = {};

/** The job's output: what it saw of the service's env and secret files. */
const TICK_COMMAND = ["python3", "-c", "import os; print('onebox-tick', os.environ.get('DATABASE_HOST'), os.path.exists('/run/secrets/APP_SECRET'), flush=True)"];
const FAIL_COMMAND = ["python3", "-c", "import sys; print('onebox-about-to-fail', flush=True); sys.exit(3)"];

function withJobs(jobs: Record<string, unknown>) {
    // The stack's alert receiver is the jobs' fallback (no job sets its own).
    const raw = { ...e2eRawConfig(PORTS, fx.keys.hostPub, { alertUrl: fx.hook.url }), jobs };
    // No S3 here: the backup step only installs its timers (scheduled far away, SUITE_BACKUP_SCHEDULE).
    return runSteps(fx.server, e2eSteps(e2eConfig(raw), 1), secrets, state);
}

async function root(body: string, timeoutMs = 120_000): Promise<{ code: number; out: string }> {
    const r = await fx.server.script(body, timeoutMs);
    return { code: r.code, out: `${r.stdout}${r.stderr}` };
}

fx.use(() => {
    secrets = e2eSecrets();
});

test("a job every minute runs on its own, in the current release with the service's env and secrets; a failing job alerts; removed jobs leave nothing", { skip: SKIP, timeout: 1_800_000 }, async (t) => {
    const runs = await withJobs({
        tick: { service: "api", command: TICK_COMMAND, schedule: "* * * * *", timeoutSeconds: 30 },
        // Never due while the test runs: started by hand below.
        fail: { service: "api", command: FAIL_COMMAND, schedule: "0 0 1 1 *", timeoutSeconds: 30 },
    });
    assert.match(runs.find((r) => r.name === "jobs")?.stdout ?? "", new RegExp(`updated   /etc/systemd/system/${TICK}\\.timer`));

    // The timer starts the job (the test never does), within two minute boundaries.
    const waited = await waitFor(
        "the every-minute job's first run in the journal",
        async () => /onebox-tick (?!None )\S+ True/.test((await root(`journalctl -u ${TICK}.service --no-pager -o cat`)).out),
        150_000,
        3000,
    );
    t.diagnostic(`first timer run seen after ${(waited / 1000).toFixed(0)} s`);
    const journal = (await root(`journalctl -u ${TICK}.service --no-pager -o cat`)).out;
    const current = (await root("basename \"$(readlink -f /srv/onebox/shop-e2e/current)\"")).out.trim();
    assert.match(current, /^[0-9a-f]{12}$/);
    assert.match(journal, new RegExp(`running api of release ${current} `), "the job ran the release current points at");
    assert.match(journal, /job tick: done in \d+ s/);
    assert.equal((await root(`systemctl show -p Result --value ${TICK}.service`)).out.trim(), "success");

    // A failing run: the unit fails, the alert arrives with the job and the exit status.
    const before = fx.hook.requests().length;
    const start = await root(`systemctl start ${FAIL}.service`);
    assert.notEqual(start.code, 0, "systemctl start reports the failed run");
    assert.equal((await root(`systemctl show -p Result --value ${FAIL}.service`)).out.trim(), "exit-code");
    assert.match((await root(`journalctl -u ${FAIL}.service --no-pager -o cat`)).out, /onebox-about-to-fail[\s\S]*job fail failed \(run\): the command exited with status 3/);
    await waitFor("the failure alert", () => Promise.resolve(fx.hook.requests().length > before), 30_000, 500);
    const alerts = fx.hook.requests().slice(before);
    assert.equal(alerts.length, 1, JSON.stringify(alerts));
    assert.equal(alerts[0].method, "POST");
    const body = JSON.parse(alerts[0].body) as Record<string, unknown>;
    assert.deepEqual([body.event, body.job, body.project, body.step, body.exitCode], ["onebox-job-failed", "fail", "shop-e2e", "run", 3]);
    // The URL is in the 0600 settings file only: not in a unit file, not in the runner's command line (R3).
    assert.equal((await root(`grep -rl '${fx.hook.url}' /etc/systemd/system || true`)).out.trim(), "");
    assert.equal((await root("stat -c '%a %U' /etc/onebox/shop-e2e/jobs/fail.conf")).out.trim(), "600 root");

    // Jobs gone from the configuration: timers stopped, units and settings removed.
    const removal = await withJobs({});
    assert.match(removal.find((r) => r.name === "jobs")?.stdout ?? "", new RegExp(`removed   /etc/systemd/system/${TICK}\\.timer`));
    assert.equal((await root("systemctl list-timers --all --no-legend 'onebox-job-*' | wc -l")).out.trim(), "0");
    assert.equal((await root("ls /etc/systemd/system | grep -c '^onebox-job-' || true")).out.trim(), "0");
    assert.equal((await root("ls -A /etc/onebox/shop-e2e/jobs | wc -l")).out.trim(), "0");
});

test("cron -> OnCalendar: systemd's calendar gives the same next runs as cron from a fixed time", { skip: SKIP, timeout: 120_000 }, async () => {
    const base = "2026-03-14T09:26:53Z";
    const crons = ["* * * * *", "*/15 * * * *", "30 3 * * *", "0 5 * * 0", "*/30 1 * * 1-5", "5 */6 1,15 * *", "0 0 1 1,7 *"];
    for (const cron of crons) {
        const calendar = cronToOnCalendar(cron);
        const r = await root(`TZ=UTC systemd-analyze calendar --base-time='@${Date.parse(base) / 1000}' --iterations=6 '${calendar}'`);
        assert.equal(r.code, 0, `${cron} -> ${calendar}: ${r.out}`);
        const fromSystemd = [...r.out.matchAll(/(?:Next elapse|Iteration #\d+): \w{3} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC/g)].map((m) => m[1]);
        const it = CronExpressionParser.parse(`0 ${cron}`, { currentDate: new Date(base), tz: "UTC" });
        const fromCron = Array.from({ length: 6 }, () => it.next().toDate().toISOString().replace("T", " ").slice(0, 19));
        assert.deepEqual(fromSystemd, fromCron, `${cron} -> ${calendar}\n${r.out}`);
    }
});
