/**
 * H14, an existing server is other stacks' home: the settings that say what the
 * bootstrap may do to the Docker engine and the published ports it shares with
 * them (an existing Traefik, other apps). Used by the existing-host branch of
 * `host` and, without defaults, by the provisioning part's hardening settings.
 */
import { z } from "zod";

const port = z.number().int("must be a whole number").min(1, "must be between 1 and 65535").max(65535, "must be between 1 and 65535");

/**
 * May the bootstrap restart Docker while containers of other stacks run? The
 * stack's daemon settings (log rotation, live-restore, no-new-privileges,
 * userland-proxy false) are merged into the host's /etc/docker/daemon.json; a
 * setting dockerd applies on reload is applied with a reload, the others need a
 * restart, which stops every container that live-restore does not keep. When
 * false, the bootstrap stops instead and names the settings and the containers:
 * add them yourself and restart Docker in a maintenance window, or set true.
 * A server with only this stack's containers restarts without asking.
 * @default false
 */
export const allowDockerRestart = z.boolean();

/**
 * Published ports of other containers on the server (e.g. an existing Traefik's
 * 80/443, another app's 8080) that the host firewall keeps open to everyone.
 * By default the DOCKER-USER policy drops every published port that is not the
 * stack's. `true` keeps every port other containers publish, now or later; a
 * list keeps those ports (TCP and UDP). Those ports are then open to the whole
 * internet, exactly as Docker opens them on a server without a firewall: their
 * security is their owners'. The stack's own ports and properties (H4, H8) do
 * not change. @default false @example [8080, 8443]
 */
export const keepPublishedPorts = z.union([z.boolean(), z.array(port).min(1, "list at least one port, or use true or false")]).superRefine((v, ctx) => {
    if (!Array.isArray(v)) {
        return;
    }
    v.forEach((p, i) => {
        if (v.indexOf(p) !== i) {
            ctx.addIssue({ code: "custom", path: [i], message: `port ${p} is listed twice` });
        }
    });
});

/** The parts of a configuration the checks of {@link guestChecks} read. */
interface GuestCheckInput {
    host: { keepPublishedPorts?: boolean | number[]; originLockdown: boolean };
    database: { allowedCidrs: string[]; publicPort: number };
}

/**
 * A kept port opens to everyone: never one the stack restricts to listed
 * networks (the database's public port, 80/443 under origin lockdown).
 */
export function guestChecks(c: GuestCheckInput, issue: (path: (string | number)[], message: string) => void): void {
    const keep = c.host.keepPublishedPorts;
    if (!Array.isArray(keep)) {
        return;
    }
    keep.forEach((p, i) => {
        if (c.database.allowedCidrs.length > 0 && p === c.database.publicPort) {
            issue(["host", "keepPublishedPorts", i], `port ${p} is PostgreSQL's (database.publicPort), open only to database.allowedCidrs; keeping it would open it to everyone: remove it`);
        }
        if (c.host.originLockdown && (p === 80 || p === 443)) {
            issue(["host", "keepPublishedPorts", i], `port ${p} is open only to Cloudflare's ranges (host.originLockdown); keeping it would open it to everyone: remove it`);
        }
    });
}
