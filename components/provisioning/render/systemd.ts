/**
 * systemd units for the backup timers (pure). The scripts they run belong to
 * scripts/host/backup/ (they read /etc/onebox/backup.env themselves); these
 * units only schedule them.
 */
import { cronToOnCalendar } from "../../config/validators";
import { BACKUP_ENV, BACKUP_LIB_DIR } from "../paths";

/** Script file names the units run, relative to /usr/local/lib/onebox/backup/. */
export const BACKUP_SCRIPTS = {
    backup: "backup.sh",
    drill: "restore-drill.sh",
    status: "backup-status.sh",
} as const;

export interface UnitFile {
    name: string;
    content: string;
}

interface JobSpec {
    /** Unit name without suffix, e.g. "onebox-backup". */
    unit: string;
    description: string;
    script: string;
    timeoutStart: string;
    /** Low CPU and I/O priority for long jobs that compete with the app. */
    background: boolean;
    onCalendar: string;
    randomizedDelay?: string;
    persistent: boolean;
}

function serviceUnit(job: JobSpec, project: string): string {
    const lines = [
        "[Unit]",
        `Description=${job.description} (${project})`,
        `Documentation=file:${BACKUP_LIB_DIR}/${job.script}`,
        "Wants=network-online.target",
        "After=network-online.target docker.service",
        `ConditionPathExists=${BACKUP_ENV}`,
        "",
        "[Service]",
        "Type=oneshot",
        // No EnvironmentFile=: the scripts read the file themselves and hand the bucket
        // credentials to rclone only, not to every process they start.
        `ExecStart=${BACKUP_LIB_DIR}/${job.script}`,
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
    /** backups.schedule (five-field cron, UTC). */
    schedule: string;
    /** backups.drill.schedule, or undefined when there is no database to drill. */
    drillSchedule?: string;
}

/** Unit names of the three timers, in a fixed order. */
export const BACKUP_TIMERS = ["onebox-backup.timer", "onebox-restore-drill.timer", "onebox-backup-status.timer"] as const;

/** The backup, drill and status services and timers. */
export function renderBackupUnits(input: BackupTimersInput): UnitFile[] {
    const jobs: JobSpec[] = [
        {
            unit: "onebox-backup",
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
            unit: "onebox-restore-drill",
            description: "onebox restore drill: restore the latest dump into a scratch database",
            script: BACKUP_SCRIPTS.drill,
            timeoutStart: "3h",
            background: true,
            onCalendar: cronToOnCalendar(input.drillSchedule),
            randomizedDelay: "30min",
            persistent: true,
        });
    }
    jobs.push({
        unit: "onebox-backup-status",
        description: "onebox backup status: refresh the status file and stale marker",
        script: BACKUP_SCRIPTS.status,
        timeoutStart: "5min",
        background: false,
        onCalendar: "*:0/5",
        persistent: false,
    });
    return jobs.flatMap((job) => [
        { name: `${job.unit}.service`, content: serviceUnit(job, input.project) },
        { name: `${job.unit}.timer`, content: timerUnit(job, input.project) },
    ]);
}
