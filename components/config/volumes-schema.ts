/**
 * Stack volumes: persistent directories on the data volume declared once, at stack level
 * (`volumes`), and mounted by one or more services (`services.<name>.volumes`). The
 * nightly backup archives each backed-up volume once, named after it, and
 * `restore.sh --volume NAME` puts it back.
 *
 * Two forms of `services.<name>.volumes`, decided by the stack as a whole:
 * - a stack WITHOUT top-level `volumes` keeps the original per-service form: each entry is
 *   the service's own directory (`<data>/volumes/<service>/<name>`, `backup` per entry);
 * - a stack WITH top-level `volumes` mounts only declared volumes: every entry names one
 *   (`<data>/shared/<name>`), with `readOnly` per mount; `backup` and `owner` belong to the
 *   declaration. An undeclared name is an error, never a silent private directory.
 */
import { z } from "zod";

const UID_MAX = 4294967294;

/** A numeric uid:gid, both parts without leading zeros and below 2^32 - 1. */
const ownerSpec = z.string().superRefine((v, ctx) => {
    const m = /^(0|[1-9][0-9]{0,9}):(0|[1-9][0-9]{0,9})$/.exec(v);
    if (!m) {
        ctx.addIssue({ code: "custom", message: `use a numeric uid:gid such as "1000:1000" (names like "www-data" mean nothing inside the containers), got "${v}"` });
    } else if (Number(m[1]) > UID_MAX || Number(m[2]) > UID_MAX) {
        ctx.addIssue({ code: "custom", message: `uid and gid must be at most ${UID_MAX}` });
    }
});

/** One volume declared at stack level (`volumes.<name>`). */
export const stackVolumeSchema = z.strictObject({
    /** Archived by the nightly backup (once, however many services mount it) as `files/<name>-<UTC stamp>.tar.gz`. @default true */
    backup: z.boolean().default(true),
    /**
     * uid:gid that owns the directory (mode 0770), converged at every deploy, files included,
     * so that non-root containers can write. Unset: the user of the services that mount it
     * (they must agree). Every service that mounts it must run as this uid or this gid.
     * @example "1000:1000"
     */
    owner: ownerSpec.optional(),
});

/** Stack-level volumes, by name (2-32 lower-case letters, digits and hyphens: the directory and archive name). */
export const stackVolumesSchema = z
    .record(
        z.string().regex(/^[a-z][a-z0-9-]{0,30}[a-z0-9]$/, "use 2-32 lower-case letters, digits and hyphens, starting with a letter"),
        stackVolumeSchema,
    )
    .default({});

export type StackVolume = z.output<typeof stackVolumeSchema>;

/** What the checks and renderers read: a structural slice of the configuration. */
interface VolumesConfig {
    volumes: Record<string, StackVolume>;
    services: Record<string, { user: string | null; volumes: { name: string; mountPath: string; backup?: boolean; readOnly?: boolean }[] }>;
    backups?: { enabled: boolean };
}

/** Whether the stack uses stack-level volumes (then every service volume names one). */
export function usesStackVolumes(c: Pick<VolumesConfig, "volumes">): boolean {
    return Object.keys(c.volumes).length > 0;
}

/** uid:gid of a service's `user` as the deploy owns its files ("10001" -> "10001:10001", null -> root). */
export function ownerOfUser(user: string | null): string {
    if (user === null) {
        return "0:0";
    }
    return user.includes(":") ? user : `${user}:${user}`;
}

/** The services that mount stack volume NAME, in declaration order. */
export function mountersOf(c: VolumesConfig, name: string): string[] {
    return Object.keys(c.services).filter((s) => c.services[s].volumes.some((v) => v.name === name));
}

/**
 * Owner (uid:gid) of stack volume NAME: its `owner`, else the one user of the services
 * that mount it with a user of their own (root when all keep the image's user).
 * Undefined when they disagree (an error of the configuration, reported by volumeChecks).
 */
export function volumeOwner(c: VolumesConfig, name: string): string | undefined {
    const declared = c.volumes[name]?.owner;
    if (declared) return declared;
    const users = [...new Set(mountersOf(c, name).flatMap((s) => (c.services[s].user === null ? [] : [ownerOfUser(c.services[s].user)])))];
    if (users.length > 1) return undefined;
    return users[0] ?? "0:0";
}

/**
 * Whether a container running as `user` (uid[:gid] or null = the image's, unknown) can read
 * and write a 0770 directory owned by `owner`. With a bare uid Docker runs the process
 * with the gid of the image's passwd entry (0 when there is none), so only the uid counts.
 */
function canAccess(user: string | null, owner: string): boolean {
    if (user === null) return true;
    const [uid, gid] = user.split(":");
    const [ownerUid, ownerGid] = owner.split(":");
    return uid === "0" || uid === ownerUid || (gid !== undefined && gid === ownerGid);
}

/** Stack volumes and service mounts: names resolve, owners agree, archives never collide. */
export function volumeChecks(c: VolumesConfig, issue: (path: (string | number)[], message: string) => void): void {
    const serviceNames = Object.keys(c.services);
    if (!usesStackVolumes(c)) {
        serviceNames.forEach((s) =>
            c.services[s].volumes.forEach((v, i) => {
                if (v.readOnly !== undefined) {
                    issue(["services", s, "volumes", i, "readOnly"], `readOnly applies to a volume declared at stack level; declare volumes.${v.name} (see README "Shared volumes") or remove readOnly`);
                }
            }),
        );
        return;
    }
    const declared = Object.keys(c.volumes);
    for (const s of serviceNames) {
        c.services[s].volumes.forEach((v, i) => {
            const vol = c.volumes[v.name] as StackVolume | undefined;
            if (!vol) {
                issue(
                    ["services", s, "volumes", i, "name"],
                    `volume "${v.name}" is not declared: with top-level volumes every mount names one of them (${declared.join(", ")}); add volumes.${v.name}`,
                );
                return;
            }
            if (v.backup !== undefined) {
                issue(["services", s, "volumes", i, "backup"], `backup is a setting of the volume, not of a mount: set volumes.${v.name}.backup and remove it here`);
            }
        });
    }
    for (const name of declared) {
        const mounters = mountersOf(c, name);
        if (mounters.length === 0) {
            issue(["volumes", name], `no service mounts volume "${name}"; mount it (services.<name>.volumes: [{ name: ${name}, mountPath: ... }]) or remove it`);
            continue;
        }
        const owner = volumeOwner(c, name);
        if (owner === undefined) {
            const users = mounters.filter((s) => c.services[s].user !== null).map((s) => `${s} (${ownerOfUser(c.services[s].user)})`);
            issue(["volumes", name, "owner"], `the services that mount "${name}" run as different users: ${users.join(", ")}; set volumes.${name}.owner to the uid:gid that owns it (each of them must run as that uid or that gid)`);
            continue;
        }
        for (const s of mounters) {
            const user = c.services[s].user;
            if (!canAccess(user, owner)) {
                const i = c.services[s].volumes.findIndex((v) => v.name === name);
                issue(
                    ["services", s, "volumes", i, "name"],
                    `services.${s} runs as ${user ?? ""} but volume "${name}" belongs to ${owner} (mode 0770): it could neither read nor write it; run the service as uid ${owner.split(":")[0]} or with gid ${owner.split(":")[1]} (user: "<uid>:${owner.split(":")[1]}"), or change volumes.${name}.owner`,
                );
            }
        }
    }
}

/** Whether anything of the volumes is backed up (a stack volume with backup, or a service's own volume). */
export function anyVolumeBackedUp(c: VolumesConfig): boolean {
    if (usesStackVolumes(c)) {
        return Object.entries(c.volumes).some(([name, v]) => v.backup && mountersOf(c, name).length > 0);
    }
    return Object.values(c.services).some((s) => s.volumes.some((v) => v.backup ?? true));
}
