/**
 * systemd units for the backup timers (pure). The scripts they run belong to
 * scripts/host/backup/ (they read the stack's backup.env themselves, named by
 * ONEBOX_BACKUP_ENV); these units only schedule them. Every unit name carries the
 * stack's project, so several stacks on one server have their own timers.
 */
import { cronToOnCalendar } from "../../config/validators";
import { BACKUP_LIB_DIR } from "../paths";

/** Script file names the units run, relative to /usr/local/lib/onebox/backup/. */
export const BACKUP_SCRIPTS = {
    backup: "backup.sh",
    drill: "restore-drill.sh",
    status: "backup-status.sh",
    pitr: "pitr.sh",
} as const;

export interface UnitFile {
    name: string;
    content: string;
}

interface JobSpec {
    /** Unit name without suffix, e.g. "onebox-shop-prod-backup". */
    unit: string;
    description: string;
    script: string;
    /** Arguments after the script. */
    args?: string[];
    timeoutStart: string;
    /** Low CPU and I/O priority for long jobs that compete with the app. */
    background: boolean;
    onCalendar: string;
    /** Also start the service whenever a file matching this glob exists (a .path unit). */
    pathGlob?: string;
    randomizedDelay?: string;
    persistent: boolean;
}

function serviceUnit(job: JobSpec, project: string, backupEnv: string): string {
    const lines = [
        "[Unit]",
        `Description=${job.description} (${project})`,
        `Documentation=file:${BACKUP_LIB_DIR}/${job.script}`,
        "Wants=network-online.target",
        "After=network-online.target docker.service",
        `ConditionPathExists=${backupEnv}`,
        "",
        "[Service]",
        "Type=oneshot",
        `Environment=ONEBOX_BACKUP_ENV=${backupEnv}`,
        // No EnvironmentFile=: the scripts read the file themselves and hand the bucket
        // credentials to rclone only, not to every process they start.
        `ExecStart=${[`${BACKUP_LIB_DIR}/${job.script}`, ...(job.args ?? [])].join(" ")}`,
        `TimeoutStartSec=${job.timeoutStart}`,
        "NoNewPrivileges=true",
        "UMask=0077",
    ];
    if (job.background) {
        lines.push("Nice=10", "IOSchedulingClass=best-effort", "IOSchedulingPriority=7");
    }
    return `${lines.join("\n")}\n`;
}

function timerUnit(job: JobSpec, project: string): string {
    const lines = ["[Unit]", `Description=Schedule: ${job.description} (${project})`, "", "[Timer]", `OnCalendar=${job.onCalendar}`];
    if (job.randomizedDelay) {
        lines.push(`RandomizedDelaySec=${job.randomizedDelay}`);
    }
    if (job.persistent) {
        // A run missed while the server was off happens at the next boot.
        lines.push("Persistent=true");
    }
    lines.push("", "[Install]", "WantedBy=timers.target");
    return `${lines.join("\n")}\n`;
}

export interface BackupTimersInput {
    project: string;
    /** The stack's backup settings file (`/etc/onebox/<project>/backup.env`). */
    backupEnv: string;
    /** backups.schedule (five-field cron, UTC). */
    schedule: string;
    /** backups.drill.schedule, or undefined when there is no database to drill. */
    drillSchedule?: string;
    /** backups.pointInTime: the WAL spool the pusher empties. */
    pitr?: { spoolDir: string };
}

/** The jobs' unit names without the stack: `onebox-<project>-<job>`. */
const JOB_UNITS = { backup: "backup", drill: "restore-drill", status: "backup-status", pitrBackup: "pitr-backup", pitrPush: "pitr-push" } as const;

/** Name (without suffix) of one backup unit of stack `project`. */
export function backupUnit(project: string, job: keyof typeof JOB_UNITS): string {
    return `onebox-${project}-${JOB_UNITS[job]}`;
}

/** Unit names of a stack's timers (and the WAL pusher's path unit), in a fixed order. */
export function backupTimers(project: string): string[] {
    return [
        `${backupUnit(project, "backup")}.timer`,
        `${backupUnit(project, "drill")}.timer`,
        `${backupUnit(project, "status")}.timer`,
        `${backupUnit(project, "pitrBackup")}.timer`,
        `${backupUnit(project, "pitrPush")}.timer`,
        `${backupUnit(project, "pitrPush")}.path`,
    ];
}

/**
 * A .path unit: starts the service as soon as a finished WAL segment lies in the spool,
 * and again after each run while one still does (systemd re-checks the glob), so a
 * segment waits seconds, not a timer period, before it leaves the host.
 */
function pathUnit(job: JobSpec, project: string, glob: string): string {
    return [
        "[Unit]",
        `Description=Trigger: ${job.description} (${project})`,
        "",
        "[Path]",
        `PathExistsGlob=${glob}`,
        `Unit=${job.unit}.service`,
        "",
        "[Install]",
        "WantedBy=paths.target",
        "",
    ].join("\n");
}

/** The backup, drill and status services and timers. */
export function renderBackupUnits(input: BackupTimersInput): UnitFile[] {
    const jobs: JobSpec[] = [
        {
            unit: backupUnit(input.project, "backup"),
            description: "onebox backup: database dump and volumes to object storage",
            script: BACKUP_SCRIPTS.backup,
            timeoutStart: "3h",
            background: true,
            onCalendar: cronToOnCalendar(input.schedule),
            randomizedDelay: "10min",
            persistent: true,
        },
    ];
    if (input.drillSchedule) {
        jobs.push({
            unit: backupUnit(input.project, "drill"),
            description: "onebox restore drill: restore the latest dump into a scratch database",
            script: BACKUP_SCRIPTS.drill,
            timeoutStart: "3h",
            background: true,
            onCalendar: cronToOnCalendar(input.drillSchedule),
            randomizedDelay: "30min",
            persistent: true,
        });
    }
    if (input.pitr) {
        jobs.push(
            {
                unit: backupUnit(input.project, "pitrBackup"),
                description: "onebox point-in-time recovery: pgBackRest base backup (full on Sundays)",
                script: BACKUP_SCRIPTS.pitr,
                args: ["backup"],
                timeoutStart: "6h",
                background: true,
                onCalendar: cronToOnCalendar(input.schedule),
                randomizedDelay: "10min",
                persistent: true,
            },
            {
                unit: backupUnit(input.project, "pitrPush"),
                description: "onebox point-in-time recovery: push archived WAL to object storage",
                script: BACKUP_SCRIPTS.pitr,
                args: ["push"],
                timeoutStart: "1h",
                background: false,
                // The path unit is the trigger; the timer retries a push that failed (network).
                onCalendar: "*:*:00",
                pathGlob: `${input.pitr.spoolDir}/0*`,
                persistent: false,
            },
        );
    }
    jobs.push({
        unit: backupUnit(input.project, "status"),
        description: "onebox backup status: refresh the status file and stale marker",
        script: BACKUP_SCRIPTS.status,
        timeoutStart: "5min",
        background: false,
        onCalendar: "*:0/5",
        persistent: false,
    });
    return jobs.flatMap((job) => [
        { name: `${job.unit}.service`, content: serviceUnit(job, input.project, input.backupEnv) },
        { name: `${job.unit}.timer`, content: timerUnit(job, input.project) },
        ...(job.pathGlob ? [{ name: `${job.unit}.path`, content: pathUnit(job, input.project, job.pathGlob) }] : []),
    ]);
}
