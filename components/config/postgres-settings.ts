/**
 * `database.settings`: the PostgreSQL parameters a stack may set, with their types,
 * units and ranges, and the ones the stack itself relies on (never overridable).
 *
 * Only parameters that make sense for one server running one app are known; any other
 * name is refused with its path (`database.settings.<name>`), so a typo never reaches
 * PostgreSQL (which would refuse to start on an unknown `-c` name) and nothing that
 * TLS, point-in-time recovery or the deploy's password handling depend on can be changed.
 *
 * Values reach PostgreSQL as `-c name=value` arguments of the server (compose.ts), so a
 * changed setting recreates the database container at the next deploy: every setting,
 * including those PostgreSQL reads only at server start (shared_buffers, max_connections),
 * applies then, after a restart of a few seconds.
 */
import { z } from "zod";

/** Units of memory settings as PostgreSQL spells them (case matters), in kB. */
const MEMORY_UNITS: Record<string, number> = { kB: 1, MB: 1024, GB: 1024 ** 2, TB: 1024 ** 3 };
/** Units of time settings as PostgreSQL spells them, in milliseconds. */
const TIME_UNITS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, min: 60_000, h: 3_600_000, d: 86_400_000 };

type SettingKind =
    /** A size with a unit (`64MB`); `off` allows -1 (the setting's "disabled"). */
    | { kind: "memory"; minKb: number; maxKb: number; off?: number }
    /** A duration with a unit (`250ms`, `5s`, `1min`); `off` is the number meaning "never" (0 or -1). */
    | { kind: "duration"; minMs: number; maxMs: number; off?: number }
    | { kind: "integer"; min: number; max: number }
    | { kind: "real"; min: number; max: number }
    | { kind: "bool" }
    | { kind: "enum"; values: readonly string[] };

interface SettingSpec {
    /** What it does, in the error message of a bad value. */
    readonly about: string;
    readonly type: SettingKind;
    /** First PostgreSQL major that knows it. @default 13 */
    readonly since?: number;
}

const TB_KB = 1024 ** 3;
const DAY_MS = 86_400_000;
const mem = (minKb: number, maxKb = TB_KB, off?: number): SettingKind => ({ kind: "memory", minKb, maxKb, off });
const dur = (minMs: number, maxMs: number, off?: number): SettingKind => ({ kind: "duration", minMs, maxMs, off });
const int = (min: number, max: number): SettingKind => ({ kind: "integer", min, max });
const real = (min: number, max: number): SettingKind => ({ kind: "real", min, max });
const bool: SettingKind = { kind: "bool" };

/** The known parameters (README "Tuning PostgreSQL"). */
export const POSTGRES_SETTINGS: Record<string, SettingSpec> = {
    // Connections and memory.
    max_connections: { about: "most client connections (default 50 in onebox)", type: int(5, 1000) },
    shared_buffers: { about: "PostgreSQL's own page cache (default a quarter of database.memoryMb)", type: mem(128) },
    work_mem: { about: "memory per sort or hash step of a query", type: mem(64, 2 * 1024 * 1024) },
    maintenance_work_mem: { about: "memory of VACUUM, CREATE INDEX and restores", type: mem(1024, 2 * 1024 * 1024) },
    temp_buffers: { about: "memory per session for temporary tables", type: mem(800) },
    effective_cache_size: { about: "the planner's estimate of the cache (PostgreSQL's and the kernel's)", type: mem(8) },
    // Logging.
    log_min_duration_statement: { about: "log statements that run longer (slow-query log; -1 off, 0 every statement)", type: dur(0, 7 * DAY_MS, -1) },
    log_autovacuum_min_duration: { about: "log autovacuum runs that take longer (-1 off)", type: dur(0, 7 * DAY_MS, -1) },
    log_connections: { about: "log each connection", type: bool },
    log_disconnections: { about: "log each session's end and duration", type: bool },
    log_lock_waits: { about: "log waits longer than deadlock_timeout", type: bool },
    log_checkpoints: { about: "log each checkpoint", type: bool },
    log_temp_files: { about: "log temporary files larger than this (-1 off, 0 every file)", type: mem(0, TB_KB, -1) },
    log_statement: { about: "which statements are logged", type: { kind: "enum", values: ["none", "ddl", "mod", "all"] } },
    track_io_timing: { about: "time I/O in statistics (EXPLAIN, pg_stat_statements)", type: bool },
    // Time limits.
    statement_timeout: { about: "cancel statements that run longer (0 never)", type: dur(1, 7 * DAY_MS, 0) },
    lock_timeout: { about: "give up waiting for a lock after this (0 never)", type: dur(1, 7 * DAY_MS, 0) },
    idle_in_transaction_session_timeout: { about: "end sessions idle inside a transaction this long (0 never)", type: dur(1, 7 * DAY_MS, 0) },
    idle_session_timeout: { about: "end sessions idle outside a transaction this long (0 never)", type: dur(1, 7 * DAY_MS, 0), since: 14 },
    deadlock_timeout: { about: "wait this long before checking for a deadlock", type: dur(1, DAY_MS) },
    // Planner.
    random_page_cost: { about: "the planner's cost of a random page read (1.1 suits SSDs)", type: real(0, 1000) },
    seq_page_cost: { about: "the planner's cost of a sequential page read", type: real(0, 1000) },
    effective_io_concurrency: { about: "concurrent I/O requests the disk serves well", type: int(0, 1000) },
    default_statistics_target: { about: "detail of the planner's statistics", type: int(1, 10000) },
    jit: { about: "JIT compilation of expensive queries", type: bool },
    max_parallel_workers_per_gather: { about: "parallel workers of one query step", type: int(0, 64) },
    max_parallel_workers: { about: "parallel workers in all", type: int(0, 64) },
    max_worker_processes: { about: "background processes in all", type: int(1, 64) },
    // Write-ahead log and checkpoints.
    checkpoint_timeout: { about: "longest time between checkpoints", type: dur(30_000, DAY_MS) },
    checkpoint_completion_target: { about: "fraction of the interval a checkpoint spreads over", type: real(0, 1) },
    max_wal_size: { about: "WAL size that triggers a checkpoint", type: mem(2048) },
    min_wal_size: { about: "WAL kept for reuse", type: mem(2048) },
    synchronous_commit: { about: "whether a commit waits for its WAL flush", type: { kind: "enum", values: ["on", "off", "local"] } },
    // Autovacuum.
    autovacuum_max_workers: { about: "concurrent autovacuum workers", type: int(1, 16) },
    autovacuum_naptime: { about: "pause between autovacuum rounds", type: dur(1000, DAY_MS) },
    autovacuum_vacuum_scale_factor: { about: "fraction of a table changed before it is vacuumed", type: real(0, 100) },
    autovacuum_analyze_scale_factor: { about: "fraction of a table changed before it is analysed", type: real(0, 100) },
    autovacuum_vacuum_cost_limit: { about: "autovacuum's I/O budget per round (-1: vacuum_cost_limit)", type: int(-1, 10000) },
    // Sessions.
    timezone: { about: "the sessions' default time zone", type: { kind: "enum", values: ["UTC", "Etc/UTC"] } },
};

/**
 * Parameters the stack sets itself and never lets a configuration change, with why.
 * Matched by exact name, and every `ssl*` name (TLS of a published database).
 */
export const RESERVED_POSTGRES_SETTINGS: Record<string, string> = {
    listen_addresses: "the containers reach PostgreSQL over the stack's internal network, which needs it to listen there (its image's default)",
    port: "services, the pooler and the health check connect to 5432 inside the network; database.publicPort sets the published port",
    unix_socket_directories: "the backup, the deploy's password sync and point-in-time recovery connect through the image's socket directory",
    hba_file: "a published database uses onebox's pg_hba.conf (TLS from database.allowedCidrs only)",
    ident_file: "onebox's pg_hba.conf uses no ident maps",
    data_directory: "the data lives on the data volume the backups and major upgrades know",
    config_file: "settings are passed on the command line, from database.settings",
    password_encryption: "the deploy sets the role's SCRAM-SHA-256 verifier, and the pooler authenticates with it",
    wal_level: "point-in-time recovery (backups.pointInTime) needs replica",
    archive_mode: "point-in-time recovery (backups.pointInTime) sets it",
    archive_command: "point-in-time recovery (backups.pointInTime) sets it",
    archive_library: "point-in-time recovery (backups.pointInTime) uses archive_command",
    archive_timeout: "point-in-time recovery (backups.pointInTime) sets it: it bounds the data at risk",
    restore_command: "restore.sh sets it for a point-in-time restore only",
    shared_preload_libraries: "a library must exist in database.image; build an image that sets it instead",
};

function reservedReason(name: string): string | undefined {
    if (name in RESERVED_POSTGRES_SETTINGS) return RESERVED_POSTGRES_SETTINGS[name];
    if (name === "ssl" || name.startsWith("ssl_")) return "TLS of a published database (database.allowedCidrs) is set up by onebox with its own certificate";
    return undefined;
}

/** A setting's value as written in the stack file. */
export type SettingValue = string | number | boolean;

const MEMORY = /^([0-9]+)(kB|MB|GB|TB)$/;
const DURATION = /^([0-9]+)(us|ms|s|min|h|d)$/;

/** Memory of a valid memory value in kB (undefined for the "off" number). */
export function settingKb(value: SettingValue): number | undefined {
    const m = typeof value === "string" ? MEMORY.exec(value) : null;
    return m ? Number(m[1]) * MEMORY_UNITS[m[2]] : undefined;
}

function valueProblem(name: string, spec: SettingSpec, value: SettingValue): string | undefined {
    const t = spec.type;
    const show = JSON.stringify(value);
    switch (t.kind) {
        case "bool":
            return typeof value === "boolean" ? undefined : `${name} (${spec.about}) is true or false, not ${show}`;
        case "enum":
            return typeof value === "string" && t.values.includes(value) ? undefined : `${name} (${spec.about}) is one of ${t.values.join(", ")}, not ${show}`;
        case "integer":
        case "real":
            if (typeof value !== "number" || !Number.isFinite(value) || (t.kind === "integer" && !Number.isInteger(value))) {
                return `${name} (${spec.about}) is a ${t.kind === "integer" ? "whole number" : "number"}, not ${show}`;
            }
            return value < t.min || value > t.max ? `${name} must be between ${t.min} and ${t.max}` : undefined;
        case "memory": {
            if (typeof value === "number" && t.off !== undefined && value === t.off) return undefined;
            const kb = settingKb(value);
            if (kb === undefined) {
                return `${name} (${spec.about}) is a size with a unit (kB, MB, GB, TB; case matters), e.g. "64MB"${t.off !== undefined ? `, or ${t.off} for off` : ""}; a bare number would mean PostgreSQL's own unit of this setting`;
            }
            return kb < t.minKb || kb > t.maxKb ? `${name} must be between ${t.minKb}kB and ${t.maxKb}kB` : undefined;
        }
        case "duration": {
            if (typeof value === "number" && t.off !== undefined && value === t.off) return undefined;
            const m = typeof value === "string" ? DURATION.exec(value) : null;
            if (!m) {
                return `${name} (${spec.about}) is a duration with a unit (ms, s, min, h, d), e.g. "500ms" or "30s"${t.off !== undefined ? `, or ${t.off} for off` : ""}`;
            }
            const ms = Number(m[1]) * TIME_UNITS[m[2]];
            return ms < t.minMs || ms > t.maxMs ? `${name} must be between ${t.minMs}ms and ${t.maxMs / 1000}s${t.off !== undefined ? ` (or ${t.off} for off)` : ""}` : undefined;
        }
    }
}

/**
 * `database.settings`: name → value. Each problem names `database.settings.<name>`.
 * @example { work_mem: "8MB", log_min_duration_statement: "500ms", log_lock_waits: true }
 */
export const postgresSettingsSchema = z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).superRefine((settings, ctx) => {
    for (const [name, value] of Object.entries(settings)) {
        const reserved = reservedReason(name);
        const spec = POSTGRES_SETTINGS[name];
        const message = reserved
            ? `${name} cannot be set: ${reserved}`
            : !spec
              ? `${name} is not a PostgreSQL setting onebox knows (names are lower case, e.g. work_mem); known: ${Object.keys(POSTGRES_SETTINGS).sort().join(", ")}`
              : valueProblem(name, spec, value);
        if (message) ctx.addIssue({ code: "custom", path: [name], message });
    }
});

export type PostgresSettings = z.output<typeof postgresSettingsSchema>;

/** The value as PostgreSQL reads it on its command line. */
function rendered(value: SettingValue): string {
    return typeof value === "boolean" ? (value ? "on" : "off") : String(value);
}

/** max_connections when the stack does not set it (what every stack ran with before settings existed). */
export const DEFAULT_MAX_CONNECTIONS = 50;

/** shared_buffers when the stack does not set it: a quarter of the container's memory. */
export function defaultSharedBuffers(memoryMb: number): string {
    return `${Math.floor(memoryMb / 4)}MB`;
}

/**
 * The server's settings as `name=value`, in order: shared_buffers and max_connections
 * (their defaults unless set), then the others by name.
 */
export function postgresSettingArgs(db: { memoryMb: number; settings: PostgresSettings }): string[] {
    const { shared_buffers = defaultSharedBuffers(db.memoryMb), max_connections = DEFAULT_MAX_CONNECTIONS, ...rest } = db.settings;
    return [
        `shared_buffers=${rendered(shared_buffers)}`,
        `max_connections=${rendered(max_connections)}`,
        ...Object.keys(rest)
            .sort()
            .map((k) => `${k}=${rendered(rest[k])}`),
    ];
}

/** max_connections in effect. */
export function maxConnectionsOf(db: { settings: PostgresSettings }): number {
    const v = db.settings.max_connections;
    return typeof v === "number" ? v : DEFAULT_MAX_CONNECTIONS;
}

/**
 * Checks of the settings against the database's memory limit, the server's memory where
 * it is known, and the PostgreSQL version. `issue` takes a path under the stack config.
 */
export function postgresSettingsChecks(
    db: { version: number; memoryMb: number; settings: PostgresSettings },
    server: { mb: number; setting: string } | undefined,
    issue: (path: (string | number)[], message: string) => void,
): void {
    const at = (name: string) => ["database", "settings", name];
    const s = db.settings;
    const limitKb = db.memoryMb * 1024;
    for (const name of Object.keys(s)) {
        const since = POSTGRES_SETTINGS[name]?.since;
        if (since !== undefined && db.version < since) {
            issue(at(name), `${name} exists from PostgreSQL ${since}; database.version is ${db.version}`);
        }
    }
    const kb = (name: string) => (s[name] === undefined ? undefined : settingKb(s[name]));
    const sharedKb = kb("shared_buffers");
    if (sharedKb !== undefined && sharedKb >= limitKb) {
        issue(at("shared_buffers"), `${String(s.shared_buffers)} is not below the database container's memory (database.memoryMb: ${db.memoryMb} MiB); PostgreSQL would be killed for memory: lower it (a quarter of the limit is usual) or raise database.memoryMb`);
    }
    const maintenanceKb = kb("maintenance_work_mem");
    if (maintenanceKb !== undefined && maintenanceKb + (sharedKb ?? limitKb / 4) >= limitKb) {
        issue(at("maintenance_work_mem"), `${String(s.maintenance_work_mem)} with shared_buffers does not fit the database container's memory (database.memoryMb: ${db.memoryMb} MiB): a VACUUM or CREATE INDEX would be killed; lower it or raise database.memoryMb`);
    }
    // Every connection may use work_mem at once (more for a query with several sorts): the
    // sum must stay below the container's memory. Judged when the stack sets either (and
    // only on valid values), so a stack that sets neither keeps PostgreSQL's defaults.
    const workKb = s.work_mem === undefined ? 4096 : kb("work_mem");
    const connections = s.max_connections === undefined || typeof s.max_connections === "number" ? maxConnectionsOf(db) : undefined;
    if ((s.work_mem !== undefined || s.max_connections !== undefined) && workKb !== undefined && connections !== undefined && workKb * connections >= limitKb) {
        issue(
            at(s.work_mem !== undefined ? "work_mem" : "max_connections"),
            `max_connections (${connections}) × work_mem (${workKb / 1024} MiB) = ${Math.round((workKb * connections) / 1024)} MiB is not below the database container's memory (database.memoryMb: ${db.memoryMb} MiB): connections sorting at once would get PostgreSQL killed; lower work_mem or max_connections (with database.pooler far fewer connections serve the app), or raise database.memoryMb`,
        );
    }
    const cacheKb = kb("effective_cache_size");
    if (cacheKb !== undefined && server !== undefined && cacheKb > server.mb * 1024) {
        issue(at("effective_cache_size"), `${String(s.effective_cache_size)} is more than the server's memory (${server.setting}: ${server.mb} MiB); the planner would count on cache that does not exist: use at most the memory left to PostgreSQL and the kernel's cache`);
    }
}
