/**
 * Scheduled jobs on the host (pure): per job a settings file, a oneshot service
 * that runs scripts/host/jobs/run-job.sh on it, and a timer. The runner starts a
 * one-off container of the service from the release `current` points at (so after
 * a rollback a job runs the rolled-back image), holding the stack's lock.
 *
 * - No overlap: the service is Type=oneshot; a timer (or `systemctl start`) that
 *   fires while a run is still active joins that run instead of starting another.
 * - Bounded: the runner stops the container after `timeoutSeconds`; TimeoutStartSec
 *   is the backstop over the lock wait, the run and the alert.
 * - Logs: the container's output is the unit's output, in the journal under the
 *   unit's name (`journalctl -u onebox-job-<app>_<job>`).
 */
import type { UnitFile } from "./systemd";
import { cronToOnCalendar } from "../../config/validators";
import { JOB_RUNNER } from "../paths";

/** Seconds between SIGTERM and SIGKILL for a job that outlives its timeout. */
export const JOB_KILL_GRACE_SECONDS = 15;

/** What TimeoutStartSec adds to the lock wait and the run: the kill grace, the container's removal and the alert (curl is bounded at about 45 s). */
const JOB_UNIT_SLACK_SECONDS = 120;

export interface JobSpec {
    service: string;
    command: string[];
    schedule: string;
    timeoutSeconds: number;
    alertUrl?: string;
}

export interface JobsInput {
    app: string;
    /** Compose project name (`<app>-<environment>`). */
    project: string;
    /** `/srv/onebox/<project>`: the runner resolves `current` below it. */
    appDir: string;
    /** The stack's lock file (R7) and how long a run waits for it. */
    lockFile: string;
    lockWaitSeconds: number;
    /** Directory of the settings files. */
    configDir: string;
    jobs: Record<string, JobSpec>;
    /** `backups.alertUrl`: where a job without its own alert URL reports failures. */
    fallbackAlertUrl?: string;
}

/**
 * Unit name of a job, without suffix. App, environment and job names are slugs (no "_"),
 * so `onebox-job-<project>_*` names exactly this stack's jobs, never another stack's whose
 * project merely starts with this one's (`shop-prod` and `shop-prod-eu`).
 */
export function jobUnitName(project: string, job: string): string {
    return `${jobUnitPrefix(project)}${job}`;
}

export function jobUnitPrefix(project: string): string {
    return `onebox-job-${project}_`;
}

export function jobSettingsPath(input: Pick<JobsInput, "configDir">, job: string): string {
    return `${input.configDir}/${job}.conf`;
}

/** TimeoutStartSec of a job's service: the lock wait, the run and the slack, in seconds. */
export function jobUnitTimeoutSeconds(lockWaitSeconds: number, timeoutSeconds: number): number {
    return lockWaitSeconds + timeoutSeconds + JOB_UNIT_SLACK_SECONDS;
}

/** The settings file of one job: KEY=value lines the runner parses (never sources); ARG once per argument. */
export function renderJobSettings(input: JobsInput, name: string): string {
    const job = input.jobs[name];
    const alertUrl = job.alertUrl ?? input.fallbackAlertUrl ?? "";
    const lines = [
        `# Job ${name} of ${input.project}, rendered by onebox; read (never sourced) by ${JOB_RUNNER}. Root-only: it may hold the alert URL.`,
        `JOB=${name}`,
        `PROJECT=${input.project}`,
        `APP_DIR=${input.appDir}`,
        `SERVICE=${job.service}`,
        `TIMEOUT=${job.timeoutSeconds}`,
        `KILL_GRACE=${JOB_KILL_GRACE_SECONDS}`,
        `LOCK=${input.lockFile}`,
        `LOCK_WAIT=${input.lockWaitSeconds}`,
        `ALERT_URL=${alertUrl}`,
        ...job.command.map((a) => `ARG=${a}`),
    ];
    return `${lines.join("\n")}\n`;
}

function serviceUnit(input: JobsInput, name: string): string {
    const job = input.jobs[name];
    const settings = jobSettingsPath(input, name);
    return [
        "[Unit]",
        `Description=onebox job ${name} (${input.project}): a one-off container of ${job.service}`,
        `Documentation=file:${JOB_RUNNER}`,
        "Wants=network-online.target",
        "After=network-online.target docker.service",
        `ConditionPathExists=${settings}`,
        "",
        "[Service]",
        // A oneshot unit is "activating" for the whole run: a start while it runs joins that run.
        "Type=oneshot",
        // Only the settings file's path: the alert URL (often with a token) stays in the 0600 file.
        `ExecStart=${JOB_RUNNER} ${settings}`,
        `TimeoutStartSec=${jobUnitTimeoutSeconds(input.lockWaitSeconds, job.timeoutSeconds)}`,
        `SyslogIdentifier=${jobUnitName(input.project, name)}`,
        "NoNewPrivileges=true",
        "UMask=0077",
        "",
    ].join("\n");
}

function timerUnit(input: JobsInput, name: string): string {
    return [
        "[Unit]",
        `Description=Schedule: onebox job ${name} (${input.project})`,
        "",
        "[Timer]",
        `OnCalendar=${cronToOnCalendar(input.jobs[name].schedule)}`,
        // On the minute, as cron would (the default coalesces starts within a minute).
        "AccuracySec=1s",
        // No catch-up at boot: the stack may not serve yet, and a missed reminder run is not owed twice.
        "Persistent=false",
        "",
        "[Install]",
        "WantedBy=timers.target",
        "",
    ].join("\n");
}

/** Service and timer units of every job, by job name order. */
export function renderJobUnits(input: JobsInput): UnitFile[] {
    return Object.keys(input.jobs)
        .sort()
        .flatMap((name) => [
            { name: `${jobUnitName(input.project, name)}.service`, content: serviceUnit(input, name) },
            { name: `${jobUnitName(input.project, name)}.timer`, content: timerUnit(input, name) },
        ]);
}
