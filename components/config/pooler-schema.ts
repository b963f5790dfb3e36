/**
 * `database.pooler`: an optional PgBouncer in transaction mode in front of PostgreSQL, on
 * the database's internal network only (H8, H13).
 *
 * It authenticates clients against the role's SCRAM-SHA-256 verifier (the file the deploy
 * also sets in PostgreSQL, never the password), and logs in to PostgreSQL with the keys the
 * client's own SCRAM exchange proved: the password is in no file of the pooler, no command
 * line and no log. A service points its database settings at the pooler with
 * `databaseEnv.pooler: true`; the default stays direct, because transaction pooling breaks
 * what lives in a session (advisory locks held across transactions, LISTEN, SET,
 * server-side prepared statements of drivers that do not name them per transaction,
 * temporary tables): migrations and such services keep connecting to PostgreSQL itself.
 */
import { z } from "zod";
import { maxConnectionsOf, type PostgresSettings } from "./postgres-settings";

/** The production default: a public PgBouncer image that runs `pgbouncer <ini>` as given. */
export const DEFAULT_POOLER_IMAGE = "edoburu/pgbouncer:v1.24.1-p1";

/** Connections PostgreSQL keeps beside the pool: superusers (3), the deploy, backups, migrations. */
export const DIRECT_CONNECTION_ROOM = 10;

/** The settings of the pooler, with the stack's image reference type. */
export function poolerSchema(imageRef: z.ZodType<string>) {
    return z.strictObject({
        /** Run PgBouncer (transaction pooling) in front of PostgreSQL. @default false */
        enabled: z.boolean().default(false),
        /**
         * A PgBouncer image whose `pgbouncer` binary is on the PATH (the program runs
         * `pgbouncer <rendered ini>` as its own user). @default "edoburu/pgbouncer:v1.24.1-p1"
         */
        image: imageRef.default(DEFAULT_POOLER_IMAGE),
        /**
         * Server connections per database and user (`default_pool_size`): the most PostgreSQL
         * sees from the pooler. Must leave room in `max_connections` for direct connections.
         * @default 20
         */
        poolSize: z.number().int("must be a whole number").min(1, "at least 1").max(1000).default(20),
        /** Client connections the pooler accepts (`max_client_conn`). @default 200 */
        maxClientConnections: z.number().int("must be a whole number").min(1, "at least 1").max(10000).default(200),
        /**
         * Close a server connection idle in the pool this long (`server_idle_timeout`), in
         * seconds. @default 600
         */
        serverIdleTimeoutSeconds: z.number().int("must be a whole number of seconds").min(10).max(86400).default(600),
        /** Memory limit of the pooler's container in MiB. @default 64 */
        memoryMb: z.number().int().min(16, "must be at least 16 MiB").max(4096).default(64),
    });
}

export type PoolerConfig = z.output<ReturnType<typeof poolerSchema>>;

/** The compose service name of the pooler (reserved while the pooler is on). */
export const POOLER_SERVICE = "pgbouncer";

interface PoolerCheckInput {
    database: { enabled: boolean; settings: PostgresSettings; pooler: PoolerConfig; allowedCidrs: string[] };
    services: Record<string, { database: boolean; databaseEnv?: { pooler: boolean; sslmode?: string } }>;
}

/** Checks of the pooler against the database and the services. */
export function poolerChecks(c: PoolerCheckInput, server: { mb: number; setting: string } | undefined, issue: (path: (string | number)[], message: string) => void): void {
    const p = c.database.pooler;
    const users = Object.keys(c.services).filter((n) => c.services[n].database && c.services[n].databaseEnv?.pooler === true);
    for (const name of Object.keys(c.services)) {
        const env = c.services[name].databaseEnv;
        if (env?.pooler && !p.enabled) {
            issue(["services", name, "databaseEnv", "pooler"], "database.pooler.enabled is false; enable the pooler or remove this setting");
        }
        if (env?.pooler && env.sslmode === "require") {
            issue(["services", name, "databaseEnv", "sslmode"], "the pooler serves the internal network without TLS; use disable or prefer, or connect directly (pooler: false)");
        }
    }
    if (!p.enabled) return;
    if (!c.database.enabled) {
        issue(["database", "pooler", "enabled"], "database.enabled is false: there is nothing to pool; remove database.pooler");
        return;
    }
    if (POOLER_SERVICE in c.services) {
        issue(["services", POOLER_SERVICE], `"${POOLER_SERVICE}" is the pooler's service name while database.pooler is on; rename the service`);
    }
    if (users.length === 0) {
        issue(["database", "pooler", "enabled"], "no service connects through the pooler: set databaseEnv.pooler: true on the services that should (not on those that run migrations or use session features)");
    }
    const max = maxConnectionsOf(c.database);
    if (p.poolSize + DIRECT_CONNECTION_ROOM > max) {
        issue(
            ["database", "pooler", "poolSize"],
            `${p.poolSize} server connections leave fewer than ${DIRECT_CONNECTION_ROOM} of max_connections (${max}) for direct connections (superusers, the deploy, backups, migrations); lower poolSize or raise database.settings.max_connections`,
        );
    }
    if (p.maxClientConnections < p.poolSize) {
        issue(["database", "pooler", "maxClientConnections"], `fewer client connections (${p.maxClientConnections}) than the pool holds (${p.poolSize}); raise maxClientConnections or lower poolSize`);
    }
    if (server && p.memoryMb >= server.mb) {
        issue(["database", "pooler", "memoryMb"], `${p.memoryMb} MiB is not below the server's memory (${server.setting}: ${server.mb} MiB)`);
    }
}
