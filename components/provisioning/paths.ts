/**
 * Every path the provisioning steps use on the host, in one place. The
 * bootstrap and backup scripts (other files) read the same locations through
 * each stack's bootstrap.env and backup.env, never by hard-coding.
 *
 * Several stacks (compose projects `<app>-<environment>`) can share one server: every
 * path below that holds a stack's state is under a directory named after its project,
 * and its systemd units carry the project in their names. Only the installed scripts
 * (/usr/local/lib/onebox) and the parents of the stacks' directories are shared.
 */
import * as path from "node:path";

/** Scripts installed by the steps. */
export const LIB_DIR = "/usr/local/lib/onebox";
export const BOOTSTRAP_SCRIPT = `${LIB_DIR}/bootstrap.sh`;
export const DEPLOY_SCRIPT = `${LIB_DIR}/deploy.sh`;
export const BACKUP_LIB_DIR = `${LIB_DIR}/backup`;
/** Moves a stack deployed with the single-stack layout into its own directories (shipped with the bootstrap). */
export const LAYOUT_SCRIPT_NAME = "migrate-layout.sh";
export const LAYOUT_SCRIPT = `${LIB_DIR}/${LAYOUT_SCRIPT_NAME}`;

/**
 * Host-wide lock of one stack (R7): every step that changes the stack on the host
 * (secrets, deploy, backup settings) and a manual deploy.sh hold it; `/run/lock`
 * is a tmpfs, and a flock dies with its holder, so no stale lock survives a crash.
 */
export const STACK_LOCK_DIR = "/run/lock/onebox";
export function stackLockFile(project: string): string {
    return `${STACK_LOCK_DIR}/${project}.lock`;
}

/** Parents of the stacks' settings, releases, state and logs (one directory per project below each). */
export const ETC_DIR = "/etc/onebox";
export const SRV_DIR = "/srv/onebox";
export const STATE_DIR = "/var/lib/onebox";
export const LOG_DIR = "/var/log/onebox";

/** Host state of one stack, written by the backup scripts and served by the proxy (B3). */
export const BACKUP_STATUS_FILE_NAME = "backup.json";
/** Present while the last success is older than backups.maxAgeHours (written by the status timer). */
export const BACKUP_STALE_FILE_NAME = "backup.stale";

export const SYSTEMD_DIR = "/etc/systemd/system";

/** Container-side paths. */
export const CONTAINER_STATUS_DIR = "/srv/status";
export const CONTAINER_CADDY_DIR = "/etc/caddy";
export const CONTAINER_CERTS_DIR = "/etc/caddy/certs";
export const CONTAINER_CADDY_LOG_DIR = "/var/log/caddy";
/**
 * Each container that needs a secret file gets its own host directory mounted
 * here (a directory, not the file: a replaced file is then visible to the
 * running container, which a single-file bind mount would keep at the old inode).
 */
export const CONTAINER_SECRETS_DIR = "/run/secrets";
export const DB_PASSWORD_FILE_NAME = "database-password";
export const POSTGRES_PASSWORD_FILE_NAME = "postgres-password";
/** The role password's SCRAM-SHA-256 verifier, which the deploy sets with ALTER ROLE (R8: never the password). */
export const POSTGRES_SCRAM_FILE_NAME = "postgres-password.scram";
export const CONTAINER_DB_PASSWORD_FILE = `${CONTAINER_SECRETS_DIR}/${DB_PASSWORD_FILE_NAME}`;
export const CONTAINER_POSTGRES_PASSWORD_FILE = `${CONTAINER_SECRETS_DIR}/${POSTGRES_PASSWORD_FILE_NAME}`;
/** PostgreSQL's TLS files and access rules, beside its password (only with `database.allowedCidrs`). */
export const POSTGRES_TLS_CERT_FILE_NAME = "server.crt";
export const POSTGRES_TLS_KEY_FILE_NAME = "server.key";
export const POSTGRES_HBA_FILE_NAME = "pg_hba.conf";

/**
 * Compose variable that relocates the app's config directory, for offline
 * validation of rendered files only; on the host it is never set and the
 * default (the real path) applies.
 */
export const CONFIG_DIR_VARIABLE = "ONEBOX_CONFIG_DIR";

/** Paths of one stack on the host. */
export interface AppPaths {
    /** The compose project, `<app>-<environment>`, that names every directory below. */
    project: string;
    /** `/etc/onebox/<project>`: 0700 root; env files, secret files, certificates (H10). */
    configDir: string;
    /** The bootstrap's settings of this stack (its firewall ports join the other stacks'). */
    bootstrapEnv: string;
    /** The backup scripts' settings (secret), and pgBackRest's (`backups.pointInTime`). */
    backupEnv: string;
    pgbackrestConf: string;
    /** `/run/lock/onebox/<project>.lock` (R7). */
    lockFile: string;
    /** `/var/lib/onebox/<project>/backup`: 0700; LAST_SUCCESS, drill result, run logs. */
    backupStateDir: string;
    /** `/var/lib/onebox/<project>/status`: 0755; served read-only by the proxy (B3). */
    statusDir: string;
    backupStatusFile: string;
    backupStaleFile: string;
    /** `<dataPath>/<project>`: the stack's data on the data volume (database, volumes, certificates). */
    dataDir: string;
    envDir: string;
    secretsDir: string;
    certsDir: string;
    /** `/etc/onebox/<app>/registry`: 0700 root; the stack's own DOCKER_CONFIG (registry logins). */
    registryDir: string;
    /** `/srv/onebox/<project>`: releases and the live proxy configuration. */
    appDir: string;
    releasesDir: string;
    currentLink: string;
    /** Live proxy config directory, mounted at /etc/caddy in the proxy container. */
    proxyDir: string;
    /** Proxy access logs. */
    logDir: string;
    /** Data volume subdirectories. */
    postgresDataDir: string;
    redisDataDir: string;
    caddyDataDir: string;
    caddyConfigDir: string;
}

/** The backup status of stack `project`, served read-only by its proxy (B3). */
export function backupStatusFile(project: string): string {
    return `${STATE_DIR}/${project}/status/${BACKUP_STATUS_FILE_NAME}`;
}

/** `<dataPath>/<project>`: one stack's directory on the data volume. */
export function stackDataDir(dataPath: string, project: string): string {
    return path.posix.join(dataPath, project);
}

/** Every path of stack `project` (`<app>-<environment>`) whose data volume is mounted at `dataPath`. */
export function appPaths(project: string, dataPath: string): AppPaths {
    const configDir = `${ETC_DIR}/${project}`;
    const appDir = `${SRV_DIR}/${project}`;
    const stateDir = `${STATE_DIR}/${project}`;
    const statusDir = `${stateDir}/status`;
    const dataDir = stackDataDir(dataPath, project);
    return {
        project,
        configDir,
        bootstrapEnv: `${configDir}/bootstrap.env`,
        backupEnv: `${configDir}/backup.env`,
        pgbackrestConf: `${configDir}/pgbackrest.conf`,
        lockFile: stackLockFile(project),
        backupStateDir: `${stateDir}/backup`,
        statusDir,
        backupStatusFile: backupStatusFile(project),
        backupStaleFile: `${statusDir}/${BACKUP_STALE_FILE_NAME}`,
        dataDir,
        envDir: `${configDir}/env`,
        secretsDir: `${configDir}/secrets`,
        registryDir: `${configDir}/registry`,
        certsDir: `${configDir}/certs`,
        appDir,
        releasesDir: `${appDir}/releases`,
        currentLink: `${appDir}/current`,
        proxyDir: `${appDir}/proxy`,
        logDir: `${LOG_DIR}/${project}/caddy`,
        postgresDataDir: path.posix.join(dataDir, "postgres"),
        redisDataDir: path.posix.join(dataDir, "redis"),
        caddyDataDir: path.posix.join(dataDir, "caddy", "data"),
        caddyConfigDir: path.posix.join(dataDir, "caddy", "config"),
    };
}

/** Where secret NAME of an app service is mounted inside its container (`<NAME>_FILE` points here). */
export function containerSecretFile(name: string): string {
    return `${CONTAINER_SECRETS_DIR}/${name}`;
}

/** Env file of one app service. */
export function envFilePath(paths: AppPaths, service: string): string {
    return `${paths.envDir}/${service}.env`;
}

/**
 * Secret files of one container (`postgres` or an app service), mounted at
 * /run/secrets in it: `/etc/onebox/<app>/secrets/<container>/`.
 */
export function containerSecretsDir(paths: AppPaths, container: string): string {
    return `${paths.secretsDir}/${container}`;
}

/** Persistent directory of one service volume: `<dataPath>/<project>/volumes/<service>/<name>`. */
export function volumePath(dataDir: string, service: string, volume: string): string {
    return path.posix.join(dataDir, "volumes", service, volume);
}

/**
 * Directory of a stack volume (top-level `volumes`), shared by the services that mount it:
 * `<dataPath>/<project>/shared/<name>` (beside `volumes/`, whose subdirectories are service names).
 */
export function sharedVolumePath(dataDir: string, volume: string): string {
    return path.posix.join(dataDir, "shared", volume);
}

/**
 * Point-in-time recovery (`backups.pointInTime`): PostgreSQL's archive_command copies each
 * finished WAL segment into this spool directory on the data volume; the host's
 * `pitr.sh push` hands it to pgBackRest, which uploads it, and removes it.
 */
export function walSpoolDir(dataDir: string): string {
    return path.posix.join(dataDir, "postgres-wal-spool");
}

/** Where the spool is mounted in the PostgreSQL container and in pgBackRest's. */
// pgBackRest refuses to back up unless archive_command names it: the spool sits where its own
// spool-path defaults to, so the copy command above passes that check honestly.
export const CONTAINER_WAL_SPOOL_DIR = "/var/spool/pgbackrest";

/**
 * PostgreSQL's socket directory, shared with pgBackRest's short-lived container (pgBackRest
 * reaches PostgreSQL through the socket only) when `backups.pointInTime` is on.
 */
export function postgresSocketDir(dataDir: string): string {
    return path.posix.join(dataDir, "postgres-socket");
}

/** Local copies of the newest dumps (`backups.local`), on the data volume: `<dataPath>/<project>/backups`. */
export function localBackupDir(dataDir: string): string {
    return path.posix.join(dataDir, "backups");
}

export function releaseDir(paths: AppPaths, releaseId: string): string {
    return `${paths.releasesDir}/${releaseId}`;
}

/** Scheduled jobs (`jobs`): the runner every job unit starts. */
export const JOBS_LIB_DIR = `${LIB_DIR}/jobs`;
export const JOB_RUNNER = `${JOBS_LIB_DIR}/run-job.sh`;

/** `/etc/onebox/<app>/jobs`: one settings file per job (0600 root: it holds the alert URL). */
export function jobsConfigDir(paths: AppPaths): string {
    return `${paths.configDir}/jobs`;
}
