/**
 * PgBouncer's files (`database.pooler`), pure: its ini and the auth file.
 *
 * Authentication (R3, R8): the auth file holds the role's SCRAM-SHA-256 verifier, the
 * same `postgres-password.scram` the deploy sets in PostgreSQL (deterministic salt, so the
 * two are identical). PgBouncer verifies a client's SCRAM proof against it and, because the
 * database entry names no user and the verifiers match, logs in to PostgreSQL with the
 * client key that proof yields: the password itself is in no file of the pooler, no command
 * line and no log. A rotated password changes the verifier; the secrets step writes the new
 * auth file and deploy.sh makes PgBouncer re-read it (SIGHUP) right after PostgreSQL took it.
 */
import { createHash } from "node:crypto";
import type { ProvisioningConfig } from "../../config/schema";
import { CONTAINER_SECRETS_DIR } from "../paths";

/** Port PgBouncer listens on inside the database network. */
export const POOLER_PORT = 6432;
/** uid:gid PgBouncer runs as (no passwd entry needed); owns its secret directory. */
export const POOLER_USER = "10002:10002";
export const POOLER_INI_FILE_NAME = "pgbouncer.ini";
export const POOLER_AUTH_FILE_NAME = "userlist.txt";
export const CONTAINER_POOLER_INI = `${CONTAINER_SECRETS_DIR}/${POOLER_INI_FILE_NAME}`;

/** Container name of the pooler: unique on the host, so also the DNS name services use. */
export function poolerContainerName(project: string): string {
    return `${project}-pgbouncer`;
}

/**
 * pgbouncer.ini. Transaction pooling; one database entry without a user (SCRAM pass-through);
 * no Unix socket, no admin or stats users (the admin console stays closed), no pid or log file
 * (stderr reaches Docker's rotated logs).
 */
export function renderPgbouncerIni(config: ProvisioningConfig, postgresHost: string, project: string): string {
    const db = config.database;
    const p = db.pooler;
    return [
        `; PgBouncer of ${project}, rendered by onebox from database.pooler; do not edit on the host.`,
        "[databases]",
        `${db.name} = host=${postgresHost} port=5432 dbname=${db.name}`,
        "",
        "[pgbouncer]",
        "listen_addr = 0.0.0.0",
        `listen_port = ${POOLER_PORT}`,
        "unix_socket_dir =",
        "auth_type = scram-sha-256",
        `auth_file = ${CONTAINER_SECRETS_DIR}/${POOLER_AUTH_FILE_NAME}`,
        "pool_mode = transaction",
        `default_pool_size = ${p.poolSize}`,
        `max_db_connections = ${p.poolSize}`,
        "reserve_pool_size = 0",
        `max_client_conn = ${p.maxClientConnections}`,
        `server_idle_timeout = ${p.serverIdleTimeoutSeconds}`,
        // JDBC and some ORMs send it at startup; PgBouncer would refuse the connection otherwise.
        "ignore_startup_parameters = extra_float_digits",
        "admin_users =",
        "stats_users =",
        // The health check connects every few seconds: connection lines would drown the rest.
        "log_connections = 0",
        "log_disconnections = 0",
        "",
    ].join("\n");
}

/** userlist.txt: the role and its verifier (a placeholder the secrets step fills). */
export function renderPgbouncerAuthFile(user: string, verifier: string): string {
    return `"${user}" "${verifier}"\n`;
}

/** Hash of the ini, as a container label: a changed ini recreates the pooler at deploy. */
export function poolerConfigHash(ini: string): string {
    return createHash("sha256").update(ini).digest("hex").slice(0, 16);
}
