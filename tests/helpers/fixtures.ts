/**
 * Valid stack configurations used across tests, one per host kind, and a small
 * helper to derive variants. Values are the raw shapes a user writes in
 * Pulumi.<stack>.yaml (before defaults).
 */
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { parse } from "yaml";

export const ADMIN_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGz3ZbUeGfyTNgQyX0yhl6bI5bqyS2m0yqVqjSWbqzKQ admin@example.com";
export const AGE_RECIPIENT = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

/** Stand-in private key for the existing-server fixture (shape only; never used to connect). */
export const EXISTING_DEPLOY_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABfixture\n-----END OPENSSH PRIVATE KEY-----\n";

export type Raw = Record<string, unknown>;

/** DigitalOcean, app./api. subdomains, Caddy with ACME, backups to AWS. */
export function digitalOceanRaw(): Raw {
    return {
        app: { name: "finances", environment: "prod" },
        host: {
            provider: "digitalocean",
            region: "fra1",
            size: "s-1vcpu-1gb",
            os: "ubuntu-22.04",
            sshAllowedCidrs: ["203.0.113.7/32"],
            sshPublicKeys: [ADMIN_KEY],
        },
        dns: { zone: "example.com" },
        tls: { mode: "acme", acmeEmail: "ops@example.com" },
        services: {
            web: { image: "ghcr.io/example/web:1.0.0", port: 3000, health: { path: "/" } },
            api: {
                image: "ghcr.io/example/api:1.0.0",
                port: 8000,
                health: { path: "/health" },
                database: true,
                secrets: ["JWT_SECRET", "SMTP_PASSWORD"],
            },
        },
        routes: [
            { host: "app.example.com", service: "web" },
            { host: "api.example.com", service: "api" },
        ],
        database: { version: 16, name: "finances", user: "finances" },
        backups: { bucket: "example-finances-backups", region: "eu-central-1", retentionDays: 7 },
        generatedSecrets: ["JWT_SECRET"],
        secrets: { SMTP_PASSWORD: "Vq3-smtp-Hx9T2pLw7eRk" },
    };
}

/** Lightsail, PostgreSQL reachable from listed CIDRs only, credentials rotated every 90 days (the Chronos plan). */
export function lightsailRaw(): Raw {
    return {
        app: { name: "chronos", environment: "prod" },
        host: {
            provider: "lightsail",
            region: "eu-central-1",
            zone: "a",
            bundle: "small_3_0",
            os: "ubuntu-24.04",
            sshAllowedCidrs: ["198.51.100.7/32"],
        },
        dns: { zone: "chronos.example.org" },
        tls: { mode: "acme", acmeEmail: "ops@chronos.example.org" },
        services: {
            api: { image: "ghcr.io/chronos/api:2.3.1", port: 8080, health: { path: "/healthz" }, database: true },
        },
        routes: [{ host: "api.chronos.example.org", service: "api" }],
        database: { version: 17, allowedCidrs: ["76.76.21.0/24", "198.51.100.7/32"], passwordRotationDays: 90 },
        backups: { bucket: "chronos-prod-backups", region: "eu-central-1", retentionDays: 30, keyRotationDays: 90 },
    };
}

/** Existing server behind an existing Traefik (the FingerFlow plan). */
export function existingRaw(): Raw {
    return {
        app: { name: "fingerflow", environment: "prod" },
        host: {
            provider: "existing",
            address: "203.0.113.50",
            port: 2222,
            user: "deploy",
            hostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyOfTheExistingServer0000000000000",
            sshAllowedCidrs: ["203.0.113.0/24"],
        },
        dns: { provider: "none", zone: "fingerflow.example.net" },
        tls: { mode: "external" },
        proxy: { kind: "traefik-external", externalNetwork: "proxy", traefikCertResolver: "le" },
        services: {
            backend: { image: "registry.example.net/ff/backend:5.1.0", port: 8000, health: { path: "/health" }, database: true },
            frontend: { image: "registry.example.net/ff/frontend:5.1.0", port: 80, health: { path: "/" }, user: null },
        },
        routes: [
            { host: "fingerflow.example.net", path: "/api", service: "backend" },
            { host: "fingerflow.example.net", path: "/auth", service: "backend" },
            { host: "fingerflow.example.net", path: "/health", service: "backend" },
            { host: "fingerflow.example.net", service: "frontend" },
        ],
        backups: {
            bucket: "ff-backups",
            create: false,
            provider: "b2",
            region: "eu-central-003",
            retentionDays: 7,
        },
        sshPrivateKey: EXISTING_DEPLOY_KEY,
        secrets: {
            BACKUP_S3_ACCESS_KEY_ID: "003a9c1e5b7d2f40000000001",
            BACKUP_S3_SECRET_ACCESS_KEY: "K003xY8qP2mN5vR7tW9zB1cD4fG6hJ",
        },
    };
}

/** Deep copy with one value replaced (or deleted with `undefined`) at a dotted path. */
export function withValue(raw: Raw, dotted: string, value: unknown): Raw {
    const copy = structuredClone(raw);
    const parts = dotted.split(".");
    let node: Record<string, unknown> = copy;
    for (const part of parts.slice(0, -1)) {
        if (typeof node[part] !== "object" || node[part] === null) {
            node[part] = {};
        }
        node = node[part] as Record<string, unknown>;
    }
    const last = parts[parts.length - 1];
    if (value === undefined) {
        delete node[last];
    } else {
        node[last] = value;
    }
    return copy;
}

/** Turns a raw config into Pulumi's `namespace:key` → text form. */
export function asPulumiConfig(raw: Raw, namespace = "onebox"): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(raw)) {
        out[`${namespace}:${k}`] = typeof v === "string" ? v : JSON.stringify(v);
    }
    return out;
}

/** Reads a stack file's config block in Pulumi's `namespace:key` → text form. */
export function readStackFile(file: string): Record<string, string> {
    const doc = parse(readFileSync(path.resolve(__dirname, "../..", file), "utf8")) as { config?: Record<string, unknown> };
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(doc.config ?? {})) {
        out[k] = typeof v === "string" ? v : JSON.stringify(v);
    }
    return out;
}
