/**
 * A hand-written `onebox` output as a consumer would receive it (the family
 * finances stack), shared by the contract and consumer tests.
 */
import type { StackOutputs } from "../../../components/outputs/contract";
import { version } from "../../../package.json";

export function sampleOutputs(): StackOutputs {
    return {
        schemaVersion: 1,
        environment: { app: "finances", environment: "prod" },
        host: {
            provider: "digitalocean",
            ipv4: "203.0.113.20",
            ipv6: "2001:db8::10",
            sshUser: "deploy",
            sshPort: 22,
            sshHostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyOfTheServer0000000000000000000000",
        },
        urls: [
            { hostname: "app.example.com", url: "https://app.example.com", routes: [{ path: "/", service: "web" }] },
            { hostname: "api.example.com", url: "https://api.example.com", routes: [{ path: "/", service: "api" }] },
        ],
        dns: [
            { hostname: "app.example.com", type: "A", proxied: true },
            { hostname: "api.example.com", type: "A", proxied: true },
        ],
        backups: {
            bucket: "example-finances-backups",
            region: "eu-central-1",
            prefix: "finances/prod",
            endpoint: null,
            schedule: "30 3 * * *",
            retentionDays: 7,
            weeklyRetentionWeeks: 4,
            statusUrl: "https://api.example.com/healthz/backup",
            heartbeat: false,
            statusFile: "/var/lib/onebox/finances-prod/status/backup.json",
        },
        database: null,
        versions: { program: version, postgres: 16, images: { web: "ghcr.io/example/web:1.0.0", api: "ghcr.io/example/api:1.0.0" } },
    };
}
