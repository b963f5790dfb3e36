/**
 * The five deployments of DEPLOYMENTS.md as stack configurations, validated
 * through the real schema, plus the fake host scripts and secret values the
 * provisioning tests use.
 */
import { validateConfig, type RawConfig } from "../../../components/config/load";
import type { StackConfig } from "../../../components/config/schema";
import type { HostScripts } from "../../../components/provisioning/host-scripts";
import type { StepContext } from "../../../components/provisioning/steps";
import { FAKE_CLOUDFLARE_RANGES } from "../../helpers/cloudflare";
import { behindCloudflare } from "../../../components/provisioning/render/caddyfile";

const ADMIN_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGz3ZbUeGfyTNgQyX0yhl6bI5bqyS2m0yqVqjSWbqzKQ admin@example.com";
export const HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyOfTheTestServer0123456789abcdefgh";
export const AGE_RECIPIENT = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

/** A distinctive value: tests search every recorded input for it (R3). */
export const FAKE_SECRET = "Zx9-SECRET-VALUE-q7Rk2Lw8Pn4Tv6Yb";

/** 1. Family finances: app. and api. subdomains, Cloudflare origin certificate, nightly backups. */
export const financesRaw: RawConfig = {
    app: { name: "finances", environment: "prod" },
    host: { provider: "digitalocean", region: "fra1", size: "s-1vcpu-1gb", os: "ubuntu-22.04", sshAllowedCidrs: ["203.0.113.7/32"], sshPublicKeys: [ADMIN_KEY], originLockdown: true },
    dns: { provider: "cloudflare", zone: "example.com", proxied: true, sslStrict: true },
    tls: { mode: "cloudflare-origin" },
    proxy: {
        kind: "caddy",
        contentSecurityPolicy: "default-src 'self'; connect-src 'self' https://api.example.com; frame-ancestors 'none'; object-src 'none'; base-uri 'self'",
    },
    services: {
        web: { image: "ghcr.io/example/finances-web:1.0.0", port: 3000, health: { path: "/api/health" }, env: { NEXT_PUBLIC_API_URL: "https://api.example.com", NODE_ENV: "production" } },
        api: {
            image: "ghcr.io/example/finances-api:1.0.0",
            port: 8000,
            health: { path: "/health" },
            database: true,
            env: { COOKIE_DOMAIN: ".example.com", CORS_ORIGINS: "https://app.example.com" },
            secrets: ["JWT_SECRET", "JWT_REFRESH_SECRET"],
        },
    },
    routes: [
        { host: "app.example.com", service: "web" },
        { host: "api.example.com", service: "api" },
    ],
    database: { version: 16, name: "finances", user: "finances" },
    backups: { bucket: "example-finances-prod-backups", region: "eu-central-1", retentionDays: 14, weeklyRetentionWeeks: 8, encryptionPublicKey: AGE_RECIPIENT, drill: { tables: ["users"] } },
    generatedSecrets: ["JWT_SECRET", "JWT_REFRESH_SECRET"],
};

/** 2. Chronos: PostgreSQL reachable from listed CIDRs only, on Lightsail; credentials rotated every 90 days. */
export const chronosRaw: RawConfig = {
    app: { name: "chronos" },
    host: { provider: "lightsail", region: "eu-central-1", sshAllowedCidrs: ["198.51.100.7/32"] },
    dns: { provider: "cloudflare", zone: "chronos.example", proxied: false },
    tls: { mode: "acme", acmeEmail: "ops@chronos.example" },
    services: {
        api: { image: "ghcr.io/chronos/api:2.3.1", port: 8080, health: { path: "/healthz" }, database: true, secrets: ["S3_MEDIA_SECRET"] },
    },
    routes: [{ host: "api.chronos.example", service: "api" }],
    database: { allowedCidrs: ["76.76.21.0/24", "198.51.100.7/32"], publicPort: 5432, passwordRotationDays: 90 },
    backups: { bucket: "chronos-prod-backups", retentionDays: 30, keyRotationDays: 90 },
    secrets: { S3_MEDIA_SECRET: "fake-media-K7MDENGbPxRfiCYzz9" },
};

/** 3. Cleaning service: apex, www. and api., a jobs runner without a port, Redis, uploads. */
export const cleaningRaw: RawConfig = {
    app: { name: "cleaning" },
    host: { provider: "digitalocean", region: "ams3", sshAllowedCidrs: ["192.0.2.0/28"] },
    dns: { provider: "cloudflare", zone: "clean.example", proxied: true, sslStrict: true },
    tls: { mode: "acme", acmeEmail: "ops@clean.example" },
    services: {
        api: {
            image: "ghcr.io/clean/api:5.0.2",
            port: 8000,
            health: { path: "/healthz" },
            database: true,
            redis: true,
            volumes: [{ name: "uploads", mountPath: "/app/uploads" }],
            env: { CORS_ORIGINS: "https://clean.example,https://www.clean.example", PRICE_NOTE: "costs $5" },
            secrets: ["SMTP_PASSWORD", "METRICS_TOKEN"],
            readOnly: true,
        },
        worker: {
            image: "ghcr.io/clean/api:5.0.2",
            command: ["python", "-m", "app.worker"],
            health: { command: ["python", "-m", "app.heartbeat", "--max-age", "120"] },
            database: true,
            redis: true,
            secrets: ["SMTP_PASSWORD"],
        },
        web: { image: "ghcr.io/clean/web:5.0.2", port: 3000, health: { path: "/" } },
    },
    routes: [
        { host: "api.clean.example", service: "api" },
        { host: "clean.example", service: "web" },
        { host: "www.clean.example", service: "web" },
    ],
    database: { version: 16 },
    redis: { enabled: true },
    backups: { bucket: "clean-prod-backups", alertUrl: "https://hooks.example.net/backup-failed", heartbeatUrl: "https://hc-ping.example.net/abc" },
    generatedSecrets: ["METRICS_TOKEN"],
    secrets: { SMTP_PASSWORD: "fake-smtp-Qx7Lm2Vn9Rt4" },
};

/** 4. Intentional social: one hostname, /api and /health to the API, the rest to the static frontend. */
export const socialRaw: RawConfig = {
    app: { name: "social" },
    host: { provider: "digitalocean", region: "nyc3", sshAllowedCidrs: ["203.0.113.0/24"] },
    dns: { provider: "cloudflare", zone: "social.example", proxied: false },
    tls: { mode: "internal" },
    services: {
        api: { image: "ghcr.io/social/api:0.9.0", port: 8000, health: { path: "/health" }, database: true, secrets: ["SMTP_PASSWORD"] },
        web: { image: "ghcr.io/social/web:0.9.0", port: 8080, health: { path: "/" }, user: "101:101" },
    },
    routes: [
        { host: "social.example", path: "/api", service: "api" },
        { host: "social.example", path: "/health", service: "api" },
        { host: "social.example", path: "/", service: "web" },
    ],
    backups: { bucket: "social-prod-backups", retentionDays: 7, weeklyRetentionWeeks: 4 },
    secrets: { SMTP_PASSWORD: "fake-smtp-Zr8Kq3Wm6Yt1" },
};

/** 5. FingerFlow: an existing server where Traefik runs on the external network "proxy". */
export const fingerflowRaw: RawConfig = {
    app: { name: "fingerflow" },
    host: { provider: "existing", address: "203.0.113.50", user: "deploy", hostKey: HOST_KEY, sshAllowedCidrs: ["203.0.113.7/32"], dataPath: "/srv/data" },
    dns: { provider: "none", zone: "fingerflow.example" },
    tls: { mode: "external" },
    proxy: { kind: "traefik-external", externalNetwork: "proxy", traefikEntrypoint: "websecure", traefikCertResolver: "letsencrypt" },
    services: {
        backend: { image: "registry.example.com/fingerflow/backend:3.1.0", port: 8000, health: { path: "/health" }, database: true, secrets: ["SESSION_SECRET", "CSRF_SECRET"], env: { LOCKOUT_ATTEMPTS: "5" } },
        frontend: { image: "registry.example.com/fingerflow/frontend:3.1.0", port: 80, health: { path: "/" }, user: null },
    },
    routes: [
        { host: "app.fingerflow.example", path: "/api", service: "backend" },
        { host: "app.fingerflow.example", path: "/auth", service: "backend" },
        { host: "app.fingerflow.example", path: "/health", service: "backend" },
        { host: "app.fingerflow.example", path: "/", service: "frontend" },
    ],
    sshPrivateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nfake-fingerflow-deploy-key\n-----END OPENSSH PRIVATE KEY-----\n",
    backups: { bucket: "fingerflow-backups", create: false, endpoint: "https://s3.eu-west-1.example-storage.net", retentionDays: 7 },
    generatedSecrets: ["SESSION_SECRET", "CSRF_SECRET"],
    secrets: { BACKUP_S3_ACCESS_KEY_ID: "AKIAFAKEFINGERFLOW01", BACKUP_S3_SECRET_ACCESS_KEY: "fake/0123456789abcdefXYZqwertyUIOP" },
};

export const DEPLOYMENTS = { finances: financesRaw, chronos: chronosRaw, cleaning: cleaningRaw, social: socialRaw, fingerflow: fingerflowRaw } as const;
export type DeploymentName = keyof typeof DEPLOYMENTS;

/** Validated config of one deployment, optionally changed first. */
export function configOf(name: DeploymentName, change?: (raw: RawConfig) => void): StackConfig {
    const raw = structuredClone<RawConfig>(DEPLOYMENTS[name]);
    change?.(raw);
    return validateConfig(raw).config;
}

/** Stand-ins for the host scripts other engineers write (tests never read the real files). */
export const FAKE_SCRIPTS: HostScripts = {
    bootstrap: {
        "bootstrap.sh": "#!/usr/bin/env bash\necho bootstrap\n",
        "migrate-layout.sh": "#!/usr/bin/env bash\necho layout \"$@\"\n",
        "daemon.json": "{\"log-driver\": \"json-file\"}\n",
    },
    deploy: "#!/usr/bin/env bash\necho deploy \"$1\"\n",
    backup: {
        "backup.sh": "#!/usr/bin/env bash\necho backup\n",
        "restore-drill.sh": "#!/usr/bin/env bash\necho drill\n",
        "backup-status.sh": "#!/usr/bin/env bash\necho status\n",
        "lib.sh": "# shared functions\n",
    },
    jobs: { "run-job.sh": "#!/usr/bin/env bash\necho job \"$1\"\n" },
};

/** Step context as the provisioner builds it for a cloud host. */
export function contextFor(config: StackConfig, overrides: Partial<StepContext> = {}): StepContext {
    const existing = config.host.provider === "existing" ? config.host : undefined;
    return {
        dataPath: existing ? existing.dataPath : "/mnt/data",
        sshUser: existing ? existing.user : "deploy",
        sshPort: existing ? existing.port : 22,
        scripts: FAKE_SCRIPTS,
        webSources: config.host.originLockdown ? FAKE_CLOUDFLARE_RANGES : undefined,
        trustedProxies: behindCloudflare(config) ? FAKE_CLOUDFLARE_RANGES : undefined,
        ...overrides,
    };
}

/** A value for every secret any deployment references (each one distinctive, all containing FAKE_SECRET). */
export function fakeSecretValues(names: string[]): Record<string, string> {
    return Object.fromEntries(names.map((n) => [n, `${FAKE_SECRET}-${n}`]));
}
