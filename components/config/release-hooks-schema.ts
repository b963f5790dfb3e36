/**
 * Release hooks of `deploy`: what deploy.sh runs around a release besides the health gate.
 *
 *   preflight            required environment keys per service, checked on the host before
 *                        anything restarts (and here, against the configuration, first);
 *   backupBeforeRelease  a verified pg_dump before the release command;
 *   release              a one-off container of the new image (migrations), once per release,
 *                        before any traffic moves;
 *   smoke                requests through the proxy after the switch; a failure rolls back.
 *
 * The primitives (slug, hostname, envName) are those of schema.ts, handed in so that both
 * files judge a name alike without importing each other.
 */
import { z } from "zod";

/** Longest release command: a migration of a big table may take a while, a day never. */
export const RELEASE_TIMEOUT_MAX_SECONDS = 6 * 3600;
/** Most requests of one smoke check (with deploy.sh's 3 s between them). */
export const SMOKE_ATTEMPTS_MAX = 30;

/** A request path with an optional query: what curl sends verbatim (no spaces, quotes or controls). */
const SMOKE_PATH = /^\/[A-Za-z0-9._~!$&()*+,;=:@%/?-]*$/;

/** A body pattern carried on one manifest line: printable, no leading or trailing space. */
function patternProblem(p: string): string | undefined {
    // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
    if (/[\u0000-\u001f\u007f]/.test(p)) return "must not contain a line break or another control character";
    if (p.trim() !== p) return "must not begin or end with a space";
    return undefined;
}

interface Primitives {
    slug: z.ZodString;
    hostname: z.ZodType<string>;
    envName: z.ZodString;
}

export function releaseHooksShape({ slug, hostname, envName }: Primitives) {
    const pattern = z
        .string()
        .min(1, "must not be empty")
        .max(500, "at most 500 characters")
        .superRefine((v, ctx) => {
            const problem = patternProblem(v);
            if (problem) ctx.addIssue({ code: "custom", message: problem });
        });
    const smokeSchema = z
        .strictObject({
            /** Hostname of a route: the request goes to the proxy on the server with this name (SNI and Host). */
            host: hostname,
            /** Path (and query) requested. @example "/api/health?deep=1" */
            path: z.string().max(2000).regex(SMOKE_PATH, "must be a path such as /health (no spaces or quotes)"),
            /** Expected HTTP status. @default 200 */
            status: z.number().int("must be a whole status code").min(100, "an HTTP status is 100-599").max(599, "an HTTP status is 100-599").default(200),
            /** The body must contain this text (a plain substring). */
            bodyContains: pattern.optional(),
            /** The body must match this POSIX extended regular expression (grep -E). @example "\"version\": ?\"2\"" */
            bodyMatches: pattern
                .superRefine((v, ctx) => {
                    if (/\\[dDwWsSbB]/.test(v)) {
                        ctx.addIssue({ code: "custom", message: "grep -E has no \\d, \\w, \\s or \\b classes here; write [0-9], [[:alnum:]_], [[:space:]]" });
                        return;
                    }
                    try {
                        new RegExp(v);
                    } catch {
                        ctx.addIssue({ code: "custom", message: "is not a valid regular expression" });
                    }
                })
                .optional(),
            /** Requests before the check fails (3 s apart). @default 5 */
            attempts: z.number().int("must be a whole number").min(1, "at least 1 attempt").max(SMOKE_ATTEMPTS_MAX, `at most ${SMOKE_ATTEMPTS_MAX} attempts`).default(5),
        })
        .refine((s) => s.bodyContains === undefined || s.bodyMatches === undefined, { message: "set bodyContains or bodyMatches, not both", path: ["bodyMatches"] });
    return {
        /**
         * The release command: a one-off container of the NEW image of `service` (its env,
         * secrets, volumes and networks), run once per release before any traffic moves —
         * database migrations. It sees ONEBOX_RELEASE (the release id). Not run again when the
         * same release is activated again (a re-run of the deploy step, a rollback to it): see
         * README "Release hooks". A failure or timeout keeps the previous release serving.
         */
        release: z
            .strictObject({
                /** The service whose new image, environment and networks the command runs with. @example "api" */
                service: slug,
                /** Command and arguments (no shell unless you call one). @example ["python", "manage.py", "migrate", "--noinput"] */
                command: z.array(z.string().min(1, "arguments must not be empty").max(4000)).min(1, "give the command to run"),
                /** Seconds after which the command is stopped and the release fails. @default 600 */
                timeoutSeconds: z
                    .number()
                    .int("must be a whole number of seconds")
                    .min(10, "at least 10 seconds")
                    .max(RELEASE_TIMEOUT_MAX_SECONDS, `at most ${RELEASE_TIMEOUT_MAX_SECONDS} seconds`)
                    .default(600),
            })
            .optional(),
        /**
         * Environment audit before anything restarts: per service, the keys its container must
         * receive (from `env`, `secrets`, `secretsAsEnv`, the database and Redis settings). A key
         * of a secret delivered as a file is met by `<KEY>_FILE` and a non-empty file on the host.
         * @example { requiredEnv: { api: ["STRIPE_KEY", "SMTP_URL"] } }
         */
        preflight: z
            .strictObject({
                /** Service name -> the keys it needs. */
                requiredEnv: z.record(slug, z.array(envName).min(1, "list at least one key, or remove the service")),
            })
            .optional(),
        /**
         * Requests through the proxy once the new release serves; any failure rolls back to the
         * previous release. Needs proxy.kind caddy. @default []
         * @example [{ host: "api.example.com", path: "/health", status: 200, bodyContains: "ok" }]
         */
        smoke: z.array(smokeSchema).max(20, "at most 20 smoke checks").default([]),
        /**
         * Take a pg_dump of the database, verified with pg_restore --list, before the release
         * command runs; kept on the data volume (the newest `keepReleases`), its path in the log.
         * Needs `deploy.release` and the database. @default false
         */
        backupBeforeRelease: z.boolean().default(false),
    };
}

/** What the checks below read of a service. */
interface HookService {
    env: Record<string, string>;
    secrets: string[];
    secretsAsEnv: string[];
    database: boolean;
    redis: boolean;
    databaseEnv?: Record<string, unknown>;
}

/** What the checks below read of a configuration. */
export interface HookConfig {
    services: Record<string, HookService>;
    routes: { host: string }[];
    proxy: { kind: string };
    database: { enabled: boolean };
    deploy: {
        release?: { service: string };
        preflight?: { requiredEnv: Record<string, string[]> };
        smoke: { host: string }[];
        backupBeforeRelease: boolean;
    };
}

/**
 * Names of the variables the configuration gives a service (values aside): `env`, the
 * secrets (as `<NAME>_FILE`, or as NAME when in `secretsAsEnv`), the database variables
 * and REDIS_URL. A secret delivered as a file also counts under its own NAME (the host
 * check then looks for the file). `dbNames` are the service's database variable names.
 */
export function configuredEnvNames(s: HookService, dbNames: (string | null)[]): Set<string> {
    const names = new Set<string>(Object.keys(s.env));
    for (const n of s.secrets) {
        names.add(n);
        if (!s.secretsAsEnv.includes(n)) names.add(`${n}_FILE`);
    }
    for (const n of s.secretsAsEnv) names.add(n);
    if (s.database) {
        for (const n of dbNames) if (n !== null) names.add(n);
    }
    if (s.redis) names.add("REDIS_URL");
    return names;
}

/** Checks of the hooks against the rest of the configuration (called by schema.ts crossChecks). */
export function releaseHookChecks(
    c: HookConfig,
    dbNamesOf: (s: HookService) => (string | null)[],
    issue: (path: (string | number)[], message: string) => void,
): void {
    const names = Object.keys(c.services);
    const known = names.join(", ") || "(none)";
    const { release, preflight, smoke, backupBeforeRelease } = c.deploy;
    if (release && !c.services[release.service]) {
        issue(["deploy", "release", "service"], `no service named "${release.service}"; known services: ${known}`);
    }
    for (const [service, keys] of Object.entries(preflight?.requiredEnv ?? {})) {
        const s = c.services[service];
        if (!s) {
            issue(["deploy", "preflight", "requiredEnv", service], `no service named "${service}"; known services: ${known}`);
            continue;
        }
        const given = configuredEnvNames(s, dbNamesOf(s));
        keys.forEach((k, i) => {
            if (!given.has(k)) {
                issue(
                    ["deploy", "preflight", "requiredEnv", service, i],
                    `service ${service} does not get ${k}: set services.${service}.env.${k}, or list a secret ${k} in services.${service}.secrets`,
                );
            }
        });
    }
    if (smoke.length > 0 && c.proxy.kind !== "caddy") {
        issue(["deploy", "smoke"], "smoke checks go through the stack's own proxy: they need proxy.kind caddy; remove deploy.smoke");
    }
    const hosts = new Set(c.routes.map((r) => r.host));
    smoke.forEach((s, i) => {
        if (!hosts.has(s.host)) {
            issue(["deploy", "smoke", i, "host"], `${s.host} is not the host of any route; use one of: ${[...hosts].join(", ") || "(no routes)"}`);
        }
    });
    if (backupBeforeRelease && !c.database.enabled) {
        issue(["deploy", "backupBeforeRelease"], "there is no database to dump (database.enabled is false); remove backupBeforeRelease");
    } else if (backupBeforeRelease && !release) {
        issue(["deploy", "backupBeforeRelease"], "the dump guards the release command: set deploy.release or remove backupBeforeRelease");
    }
}
