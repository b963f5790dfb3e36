/**
 * Scheduled jobs (`onebox:jobs`): one-off containers of an app service's current
 * image, run by systemd timers on the host. The schema is built from the stack
 * schema's own field types (names, cron, hook URLs), so a job's schedule or alert
 * URL is judged exactly as a backup's is.
 */
import { z } from "zod";
import { isPrivateHost } from "./validators";

/**
 * Longest run a job may be given. A job holds the stack's lock while it runs, so that no
 * deploy switches the release under it (render/jobs.ts); a deploy waits at most 900 s for
 * that lock (STACK_LOCK_WAIT_SECONDS). 600 s plus the stop grace and the container's
 * removal stay well inside that wait: a deploy started during a job is delayed, never failed.
 */
export const JOB_MAX_TIMEOUT_SECONDS = 600;
export const JOB_MIN_TIMEOUT_SECONDS = 10;

/** One argument of a job's command: a line of its settings file on the host, so no line break or control character. */
// eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
const JOB_ARG_UNSAFE = /[\u0000-\u001f\u007f]/;

/** The stack schema's field types a job reuses. */
export interface JobFieldTypes {
    /** A DNS-label-like name (services, volumes). */
    slug: z.ZodType<string, string>;
    /** A five-field cron expression, UTC. */
    cron: z.ZodType<string, string>;
    /** An https:// hook URL. */
    hookUrl: () => z.ZodType<string, string>;
}

export function jobsSchemaOf(t: JobFieldTypes) {
    const job = z.strictObject({
        /** The app service whose current image, env, secrets and networks the job runs with. */
        service: t.slug,
        /**
         * The command, as a list (no shell), given to the image's entrypoint like a service's
         * `command`. @example ["python", "-m", "app.send_reminders"]
         */
        command: z
            .array(
                z
                    .string()
                    .min(1, "an argument must not be empty")
                    .max(4096, "at most 4096 characters per argument")
                    .refine((v) => !JOB_ARG_UNSAFE.test(v), { message: "must not contain a line break or another control character" }),
            )
            .min(1, "give the command to run, e.g. [\"python\", \"-m\", \"app.cleanup\"]")
            .max(64, "at most 64 arguments; put a longer command in a script in the image"),
        /** Five-field cron schedule, UTC. @example "*\/15 * * * *" */
        schedule: t.cron,
        /**
         * Longest run in seconds: the container is stopped (SIGTERM, then SIGKILL 15 s later)
         * and the run counts as failed. @default 300
         */
        timeoutSeconds: z
            .number()
            .int("must be a whole number of seconds")
            .min(JOB_MIN_TIMEOUT_SECONDS, `must be at least ${JOB_MIN_TIMEOUT_SECONDS} seconds`)
            .max(
                JOB_MAX_TIMEOUT_SECONDS,
                `must be at most ${JOB_MAX_TIMEOUT_SECONDS} seconds (a job holds the stack's lock, and a deploy waits at most 900 s for it); split longer work into a service`,
            )
            .default(300),
        /** URL called (POST, JSON) when a run fails; without it `backups.alertUrl`. https only. */
        alertUrl: t.hookUrl().optional(),
    });
    /** Job names become systemd unit names and container names. */
    return z.record(t.slug, job);
}

/** The parts of the stack configuration the job checks read. */
interface JobsContext {
    jobs: Record<string, { service: string; alertUrl?: string }>;
    services: Record<string, unknown>;
    backups?: { allowPlainHttpHooks: boolean };
}

/** Checks that tie jobs to the rest of the configuration; `issue` records a problem at a path. */
export function jobsCrossChecks(c: JobsContext, issue: (path: (string | number)[], message: string) => void): void {
    const services = Object.keys(c.services);
    for (const [name, job] of Object.entries(c.jobs)) {
        if (!services.includes(job.service)) {
            issue(["jobs", name, "service"], `no service "${job.service}"; a job runs one of ${services.map((s) => `"${s}"`).join(", ")}`);
        }
        const url = job.alertUrl;
        if (url?.startsWith("http:")) {
            const host = new URL(url).hostname;
            if (!c.backups?.allowPlainHttpHooks) {
                issue(["jobs", name, "alertUrl"], "must be an https:// URL (an alert sent in clear can be read or dropped unseen); for a relay on a private network set backups.allowPlainHttpHooks: true");
            } else if (!isPrivateHost(host)) {
                issue(["jobs", name, "alertUrl"], `${host} is not a private address; backups.allowPlainHttpHooks only covers relays on loopback or private networks: use https://`);
            }
        }
    }
}
