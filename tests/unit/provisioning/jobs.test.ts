/**
 * Scheduled jobs as rendered for the host: the settings file, the oneshot service and
 * its timer (exact text), the jobs step (files, modes, removal of jobs no longer
 * configured, the lock, the secret flag), and the runner script itself run with bash
 * against stand-in `docker` and `curl` commands (exit status, timeout, lock, alert).
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { JOB_MAX_TIMEOUT_SECONDS } from "../../../components/config/jobs-schema";
import { jobUnitName, JOB_KILL_GRACE_SECONDS, jobUnitTimeoutSeconds, renderJobSettings, renderJobUnits } from "../../../components/provisioning/render/jobs";
import { buildSteps, jobsInput, STACK_LOCK_WAIT_SECONDS, type Step } from "../../../components/provisioning/steps";
import { appPaths } from "../../../components/provisioning/paths";
import { configOf, contextFor, FAKE_SCRIPTS } from "./fixtures";

const REMIND = { service: "api", command: ["python", "-m", "app.remind", "it's due"], schedule: "*/15 8-18 * * 1-5" };

function cleaning(jobs: Record<string, unknown>, change?: (raw: Record<string, unknown>) => void) {
    return configOf("cleaning", (r) => {
        r.jobs = jobs;
        change?.(r);
    });
}

function jobsStepOf(config: ReturnType<typeof cleaning>, scripts = FAKE_SCRIPTS): Step {
    const step = buildSteps(config, contextFor(config, { scripts })).find((s) => s.name === "jobs");
    assert.ok(step, "no jobs step");
    return step;
}

describe("job units and settings", () => {
    const config = cleaning({ remind: REMIND, purge: { service: "api", command: ["purge"], schedule: "0 3 * * *", timeoutSeconds: 60, alertUrl: "https://alerts.example.net/jobs" } });
    const input = jobsInput(config, appPaths("cleaning-prod", "/mnt/data"));

    test("the settings file: one KEY=value per line, ARG once per argument, the stack's alert URL as the fallback", () => {
        assert.equal(
            renderJobSettings(input, "remind"),
            [
                "# Job remind of cleaning-prod, rendered by onebox; read (never sourced) by /usr/local/lib/onebox/jobs/run-job.sh. Root-only: it may hold the alert URL.",
                "JOB=remind",
                "PROJECT=cleaning-prod",
                "APP_DIR=/srv/onebox/cleaning-prod",
                "SERVICE=api",
                "TIMEOUT=300",
                `KILL_GRACE=${JOB_KILL_GRACE_SECONDS}`,
                "LOCK=/run/lock/onebox/cleaning-prod.lock",
                `LOCK_WAIT=${STACK_LOCK_WAIT_SECONDS}`,
                "ALERT_URL=https://hooks.example.net/backup-failed",
                "ARG=python",
                "ARG=-m",
                "ARG=app.remind",
                "ARG=it's due",
                "",
            ].join("\n"),
        );
        assert.match(renderJobSettings(input, "purge"), /^ALERT_URL=https:\/\/alerts\.example\.net\/jobs$/m, "a job's own alert URL wins");
        const noBackups = jobsInput(cleaning({ remind: REMIND }, (r) => delete r.backups), appPaths("cleaning-prod", "/mnt/data"));
        assert.match(renderJobSettings(noBackups, "remind"), /^ALERT_URL=$/m);
    });

    test("a oneshot service that runs the runner on the settings file, and a timer on the cron schedule in UTC", () => {
        const units = renderJobUnits(input);
        assert.deepEqual(
            units.map((u) => u.name),
            ["onebox-job-cleaning-prod_purge.service", "onebox-job-cleaning-prod_purge.timer", "onebox-job-cleaning-prod_remind.service", "onebox-job-cleaning-prod_remind.timer"],
        );
        assert.equal(
            units[2].content,
            [
                "[Unit]",
                "Description=onebox job remind (cleaning-prod): a one-off container of api",
                "Documentation=file:/usr/local/lib/onebox/jobs/run-job.sh",
                "Wants=network-online.target",
                "After=network-online.target docker.service",
                "ConditionPathExists=/etc/onebox/cleaning-prod/jobs/remind.conf",
                "",
                "[Service]",
                "Type=oneshot",
                "ExecStart=/usr/local/lib/onebox/jobs/run-job.sh /etc/onebox/cleaning-prod/jobs/remind.conf",
                `TimeoutStartSec=${STACK_LOCK_WAIT_SECONDS + 300 + 120}`,
                "SyslogIdentifier=onebox-job-cleaning-prod_remind",
                "NoNewPrivileges=true",
                "UMask=0077",
                "",
            ].join("\n"),
        );
        assert.equal(
            units[3].content,
            [
                "[Unit]",
                "Description=Schedule: onebox job remind (cleaning-prod)",
                "",
                "[Timer]",
                "OnCalendar=Mon,Tue,Wed,Thu,Fri *-*-* 08,09,10,11,12,13,14,15,16,17,18:00,15,30,45:00 UTC",
                "AccuracySec=1s",
                "Persistent=false",
                "",
                "[Install]",
                "WantedBy=timers.target",
                "",
            ].join("\n"),
        );
        assert.match(units[0].content, /^TimeoutStartSec=1080$/m, "the bound follows the job's own timeout");
        for (const u of units) {
            assert.doesNotMatch(u.content, /alerts\.example\.net|hooks\.example\.net/, `${u.name}: the alert URL stays in the 0600 settings file`);
        }
    });

    test("unit names keep apps apart: one app's prefix never matches another app's jobs", () => {
        assert.equal(jobUnitName("shop-prod", "tick"), "onebox-job-shop-prod_tick");
        assert.ok(!jobUnitName("shop-prod-eu", "tick").startsWith("onebox-job-shop-prod_"));
    });

    test("the longest job fits in a deploy's wait for the lock, with its stop grace and alert", () => {
        assert.ok(JOB_MAX_TIMEOUT_SECONDS + JOB_KILL_GRACE_SECONDS + 120 < STACK_LOCK_WAIT_SECONDS);
        assert.equal(jobUnitTimeoutSeconds(900, 600), 1620);
    });
});

describe("the jobs step", () => {
    test("installs the runner, 0600 settings and 0644 units under the stack lock, after the deploy and backup steps; secret while an alert URL is in its files", () => {
        const step = jobsStepOf(cleaning({ remind: REMIND }));
        assert.deepEqual(step.dependsOn, ["backup"]);
        assert.equal(step.lock, "/run/lock/onebox/cleaning-prod.lock");
        assert.equal(step.secret, true);
        assert.deepEqual(
            step.files.map((f) => [f.path, f.mode, f.owner]),
            [
                ["/usr/local/lib/onebox/jobs/run-job.sh", "0755", "root:root"],
                ["/etc/onebox/cleaning-prod/jobs/remind.conf", "0600", "root:root"],
                ["/etc/systemd/system/onebox-job-cleaning-prod_remind.service", "0644", "root:root"],
                ["/etc/systemd/system/onebox-job-cleaning-prod_remind.timer", "0644", "root:root"],
            ],
        );
        assert.deepEqual(
            step.directories.map((d) => [d.path, d.mode]),
            [["/etc/onebox", "0700"], ["/etc/onebox/cleaning-prod", "0700"], ["/etc/onebox/cleaning-prod/jobs", "0700"], ["/usr/local/lib/onebox/jobs", "0755"]],
        );
        assert.match(step.run, /^ {4}onebox-job-cleaning-prod_remind\.service\|onebox-job-cleaning-prod_remind\.timer\) ;;$/m);
        assert.match(step.run, /^systemctl enable onebox-job-cleaning-prod_remind\.timer\nsystemctl restart onebox-job-cleaning-prod_remind\.timer$/m);
        const quiet = jobsStepOf(cleaning({ remind: REMIND }, (r) => delete r.backups));
        assert.equal(quiet.secret, false, "no alert URL: the step may log");
    });

    test("without jobs it keeps nothing: every unit and settings file of the app's jobs is removed", () => {
        const step = jobsStepOf(cleaning({}));
        assert.deepEqual(
            step.files.map((f) => f.path),
            ["/usr/local/lib/onebox/jobs/run-job.sh"],
        );
        assert.match(step.run, /for f in \/etc\/systemd\/system\/onebox-job-cleaning-prod_\*\.timer \/etc\/systemd\/system\/onebox-job-cleaning-prod_\*\.service; do/);
        assert.match(step.run, /^ {4}''\) ;;$/m, "no unit is kept");
        assert.doesNotMatch(step.run, /systemctl enable/);
    });

    test("refuses jobs when the runner script is missing", () => {
        assert.throws(() => jobsStepOf(cleaning({ remind: REMIND }), { ...FAKE_SCRIPTS, jobs: {} }), /lacks run-job\.sh/);
    });

    test("the removal loop, run with bash over a directory, removes exactly the jobs no longer configured (and not another app's)", () => {
        const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "onebox-jobs-step-"));
        try {
            const unitDir = path.join(tmp, "units");
            fs.mkdirSync(unitDir);
            const names = ["onebox-job-cleaning-prod_remind.timer", "onebox-job-cleaning-prod_remind.service", "onebox-job-cleaning-prod_old.timer", "onebox-job-cleaning-prod_old.service", "onebox-job-cleaning-prod-eu_old.timer"];
            for (const n of names) fs.writeFileSync(path.join(unitDir, n), "");
            const bin = path.join(tmp, "bin");
            fs.mkdirSync(bin);
            fs.writeFileSync(path.join(bin, "systemctl"), `#!/usr/bin/env bash\necho "systemctl $*" >>"${tmp}/systemctl.log"\n`, { mode: 0o755 });
            const step = jobsStepOf(cleaning({ remind: REMIND }));
            const script = step.run.replaceAll("/etc/systemd/system", unitDir).replaceAll("/etc/onebox/cleaning-prod/jobs", path.join(tmp, "conf"));
            const r = spawnSync("bash", ["-euo", "pipefail", "-c", script], { encoding: "utf8", env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } });
            assert.equal(r.status, 0, r.stderr);
            assert.deepEqual(fs.readdirSync(unitDir).sort(), ["onebox-job-cleaning-prod-eu_old.timer", "onebox-job-cleaning-prod_remind.service", "onebox-job-cleaning-prod_remind.timer"]);
            const calls = fs.readFileSync(path.join(tmp, "systemctl.log"), "utf8");
            assert.match(calls, /^systemctl disable --now onebox-job-cleaning-prod_old\.timer$/m);
            assert.match(calls, /^systemctl stop onebox-job-cleaning-prod_old\.service$/m);
            assert.doesNotMatch(calls, /cleaning-eu/);
        } finally {
            fs.rmSync(tmp, { recursive: true, force: true });
        }
    });
});

describe("run-job.sh (bash, with stand-ins for docker and curl)", () => {
    const RUNNER = path.resolve(__dirname, "../../../scripts/host/jobs/run-job.sh");

    function setup(settings: Record<string, string>, args: string[]) {
        const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "onebox-run-job-"));
        const bin = path.join(tmp, "bin");
        fs.mkdirSync(bin);
        fs.mkdirSync(path.join(tmp, "app/releases/r1"), { recursive: true });
        fs.writeFileSync(path.join(tmp, "app/releases/r1/compose.yaml"), "services: {}\n");
        fs.symlinkSync("releases/r1", path.join(tmp, "app/current"));
        // docker compose ... run: prints, then exits with FAKE_RC after FAKE_SLEEP seconds.
        fs.writeFileSync(
            path.join(bin, "docker"),
            `#!/usr/bin/env bash\nprintf '%s\\n' "$*" >>"${tmp}/docker.log"\nif [[ "$1" == compose ]]; then echo job-output; sleep "\${FAKE_SLEEP:-0}"; exit "\${FAKE_RC:-0}"; fi\n`,
            { mode: 0o755 },
        );
        fs.writeFileSync(path.join(bin, "curl"), `#!/usr/bin/env bash\nprintf 'ARGS %s\\n' "$*" >>"${tmp}/curl.log"\ncat >>"${tmp}/curl.log"\n`, { mode: 0o755 });
        const all: Record<string, string> = {
            JOB: "remind",
            PROJECT: "cleaning-prod",
            APP_DIR: path.join(tmp, "app"),
            SERVICE: "api",
            TIMEOUT: "20",
            KILL_GRACE: "1",
            LOCK: path.join(tmp, "stack.lock"),
            LOCK_WAIT: "1",
            ALERT_URL: "https://alerts.example.net/jobs?token=s3cr3t-token",
            ...settings,
        };
        const conf = path.join(tmp, "remind.conf");
        fs.writeFileSync(conf, [...Object.entries(all).map(([k, v]) => `${k}=${v}`), ...args.map((a) => `ARG=${a}`), ""].join("\n"), { mode: 0o600 });
        const read = (f: string) => (fs.existsSync(path.join(tmp, f)) ? fs.readFileSync(path.join(tmp, f), "utf8") : "");
        return { tmp, conf, bin, read, env: (extra: Record<string, string> = {}) => ({ ...process.env, PATH: `${bin}:${process.env.PATH}`, ...extra }) };
    }

    const root = process.getuid?.() === 0;

    test("a run: the current release's compose file, the service, the arguments as given; no alert", { skip: !root && "needs root (the runner refuses a settings file not owned by root)" }, () => {
        const s = setup({}, ["python", "-m", "app.remind", "it's due"]);
        try {
            const r = spawnSync("bash", [RUNNER, s.conf], { encoding: "utf8", env: s.env(), timeout: 30_000 });
            assert.equal(r.status, 0, r.stderr);
            assert.match(r.stdout, /job-output/);
            const run = s.read("docker.log").split("\n").find((l) => l.startsWith("compose "));
            assert.ok(run);
            assert.match(run, new RegExp(`--file ${s.tmp}/app/releases/r1/compose\\.yaml run --rm --no-deps -T --name cleaning-prod-job-remind-\\S+ --label onebox\\.job=cleaning-prod\\.remind api python -m app\\.remind it's due$`));
            assert.equal(s.read("curl.log"), "");
        } finally {
            fs.rmSync(s.tmp, { recursive: true, force: true });
        }
    });

    for (const [what, settings, env, code, step] of [
        ["a failing command", {}, { FAKE_RC: "3" }, 3, "run"],
        ["a command that outlives its timeout", { TIMEOUT: "1" }, { FAKE_SLEEP: "10" }, 124, "timeout"],
    ] as const) {
        test(`${what}: exits ${code}, removes its container and alerts with the URL on stdin only (R3)`, { skip: !root && "needs root" }, () => {
            const s = setup(settings, ["purge"]);
            try {
                const r = spawnSync("bash", [RUNNER, s.conf], { encoding: "utf8", env: s.env(env), timeout: 30_000 });
                assert.equal(r.status, code, r.stderr);
                assert.match(r.stderr, new RegExp(`job remind failed \\(${step}\\)`));
                assert.match(s.read("docker.log"), /^rm --force -- cleaning-prod-job-remind-/m);
                const curl = s.read("curl.log");
                assert.match(curl, /^ARGS -fsS .* -X POST -K -$/m);
                assert.doesNotMatch(curl.split("\n")[0], /token/, "the URL is not an argument");
                assert.match(curl, /^url = "https:\/\/alerts\.example\.net\/jobs\?token=s3cr3t-token"$/m);
                assert.match(curl, new RegExp(`"event\\\\":\\\\"onebox-job-failed\\\\",\\\\"job\\\\":\\\\"remind\\\\",\\\\"project\\\\":\\\\"cleaning-prod\\\\",.*\\\\"step\\\\":\\\\"${step}\\\\",\\\\"exitCode\\\\":${code}`));
            } finally {
                fs.rmSync(s.tmp, { recursive: true, force: true });
            }
        });
    }

    test("the stack's lock held elsewhere: waits LOCK_WAIT, names the holder, does not run, alerts", { skip: !root && "needs root" }, () => {
        const s = setup({}, ["purge"]);
        try {
            fs.writeFileSync(path.join(s.tmp, "stack.lock"), "deploy.sh /srv/onebox/cleaning-prod/releases/r2 (pid 1)\n");
            const r = spawnSync("bash", ["-c", `flock "${s.tmp}/stack.lock" bash "${RUNNER}" "${s.conf}"`], { encoding: "utf8", env: s.env(), timeout: 30_000 });
            // The outer flock holds the lock while the runner runs under it: the runner must give up.
            assert.equal(r.status, 1, r.stderr);
            assert.match(r.stderr, /job remind failed \(lock\): .*still held after 1 s by deploy\.sh \/srv\/onebox\/cleaning-prod\/releases\/r2/);
            assert.doesNotMatch(s.read("docker.log"), /^compose /m);
            assert.match(s.read("curl.log"), /\\"step\\":\\"lock\\"/);
        } finally {
            fs.rmSync(s.tmp, { recursive: true, force: true });
        }
    });

    test("a settings file others can read is refused before anything runs", { skip: !root && "needs root" }, () => {
        const s = setup({}, ["purge"]);
        try {
            fs.chmodSync(s.conf, 0o644);
            const r = spawnSync("bash", [RUNNER, s.conf], { encoding: "utf8", env: s.env(), timeout: 30_000 });
            assert.equal(r.status, 2);
            assert.match(r.stderr, /must be root-owned and 0600 \(it is 0 644\)/);
            assert.equal(s.read("docker.log"), "");
        } finally {
            fs.rmSync(s.tmp, { recursive: true, force: true });
        }
    });
});
