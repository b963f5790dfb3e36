/**
 * pg_hba.conf for a PostgreSQL whose port is published to listed networks
 * (`database.allowedCidrs`). First match wins:
 * - the Unix socket trusts local users (the deploy sets the role's password
 *   and the backup dumps through `docker exec`, as with the image's default);
 * - loopback and everything else need the password (scram-sha-256);
 * - from each listed network only TLS connections are admitted: a client that
 *   does not encrypt is rejected before it can send anything.
 * App containers reach the database over the stack's internal network and keep
 * connecting as before, unless a listed network overlaps the private range
 * Docker gave that network: clients there must then use TLS too.
 */
import type { ProvisioningConfig } from "../../config/schema";

export { databasePublished } from "../../config/plan";

export function renderPgHba(config: ProvisioningConfig): string {
    const rows: [string, string, string, string, string][] = [
        ["local", "all", "all", "", "trust"],
        ["host", "all", "all", "127.0.0.1/32", "scram-sha-256"],
        ["host", "all", "all", "::1/128", "scram-sha-256"],
        ...config.database.allowedCidrs.map((cidr): [string, string, string, string, string] => ["hostnossl", "all", "all", cidr, "reject"]),
        ["host", "all", "all", "all", "scram-sha-256"],
    ];
    const widths = [10, 4, 4, 44];
    const line = (cells: string[]) => cells.map((c, i) => (i < widths.length ? c.padEnd(widths[i]) : c)).join(" ").replace(/\s+$/, "");
    return [`# pg_hba.conf of ${config.app.name}, rendered by onebox. First match wins.`, line(["# TYPE", "DB", "USER", "ADDRESS", "METHOD"]), ...rows.map(line), ""].join("\n");
}
