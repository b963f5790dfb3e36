/**
 * Time-based rotation of generated credentials (the database password, the
 * backup access key). Time is cut into periods of `days` whole days counted
 * from 1970-01-01 UTC; a credential belongs to the period it was made in, and
 * the first `pulumi up` (or preview) in a later period shows it replaced. So a
 * credential is never older than `days` days plus the time until the next
 * `pulumi up`, and runs within one period change nothing.
 */

const DAY_MS = 24 * 60 * 60 * 1000;

/** The rotation period `now` falls in, as a stable label; undefined when `days` is 0 (never). */
export function rotationLabel(days: number, now: Date): string | undefined {
    if (!Number.isInteger(days) || days < 0) {
        throw new Error(`rotation days must be a whole number >= 0, not ${days}`);
    }
    if (days === 0) {
        return undefined;
    }
    const period = Math.floor(now.getTime() / DAY_MS / days);
    const start = new Date(period * days * DAY_MS).toISOString().slice(0, 10);
    // e.g. "90d-2026-10-17": readable in a preview's diff, unique per period.
    return `${days}d-${start}`;
}

/** The first day (UTC, YYYY-MM-DD) of the period after the one `now` falls in. */
export function nextRotation(days: number, now: Date): string | undefined {
    if (days === 0) {
        return undefined;
    }
    const period = Math.floor(now.getTime() / DAY_MS / days);
    return new Date((period + 1) * days * DAY_MS).toISOString().slice(0, 10);
}
