/**
 * A database-only server (plan 001, Chronos, without its dummy service): no
 * route, so no proxy container, no Caddyfile, no route checks, and no 80/443
 * in ufw (H4, H8); PostgreSQL published to the listed networks only; backups
 * report through the heartbeat (B3).
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { parse } from "yaml";
import type { RawConfig } from "../../../components/config/load";
import type { StackConfig } from "../../../components/config/schema";
import { composeImages, projectName, renderCompose, PROXY_SERVICE, STATUS_SERVICE } from "../../../components/provisioning/render/compose";
import { appPaths } from "../../../components/provisioning/paths";
import { buildSteps, renderBackupEnv, renderBootstrapEnv, renderRelease } from "../../../components/provisioning/steps";
import { configOf, contextFor, HOST_KEY } from "./fixtures";

const HEARTBEAT = "https://hc-ping.example.net/3f1c9b2e";

/** Chronos as plan 001 wants it: PostgreSQL alone, published to the frontend's range and one admin address. */
function chronosDatabaseOnly(change?: (raw: RawConfig) => void): StackConfig {
    return configOf("chronos", (r) => {
        r.services = {};
        r.routes = [];
        r.secrets = {};
        r.backups = { ...(r.backups as object), heartbeatUrl: HEARTBEAT };
        change?.(r);
    });
}

interface Compose {
    services: Record<string, { ports?: { published: string }[]; networks?: string[] }>;
    networks: Record<string, unknown>;
}

function composeOf(config: StackConfig): Compose {
    const dataPath = config.host.provider === "existing" ? config.host.dataPath : "/mnt/data";
    return parse(renderCompose(config, { project: projectName(config), paths: appPaths(projectName(config), dataPath) })) as Compose;
}

void describe("database-only server: render (H8)", () => {
    test("compose runs PostgreSQL alone: no proxy service, no edge or web network, only the database port published", () => {
        const compose = composeOf(chronosDatabaseOnly());
        assert.deepEqual(Object.keys(compose.services), ["postgres"]);
        assert.equal(PROXY_SERVICE in compose.services, false);
        assert.deepEqual(Object.keys(compose.networks).sort(), ["database", "db-published", "internal"]);
        assert.deepEqual(compose.services.postgres.ports?.map((p) => p.published), ["5432"]);
    });

    test("the proxy image is not pulled or uploaded", () => {
        assert.deepEqual(composeImages(chronosDatabaseOnly()), ["postgres:17"]);
        assert.ok(composeImages(configOf("chronos")).includes("caddy:2"), "the same stack with a route still runs Caddy");
    });

    test("traefik-external without routes runs no backup status server either (it would have no host to serve on)", () => {
        const config = chronosDatabaseOnly((r) => {
            r.host = { provider: "existing", address: "203.0.113.50", hostKey: HOST_KEY, sshAllowedCidrs: ["198.51.100.7/32"] };
            r.sshPrivateKey = "-----BEGIN OPENSSH PRIVATE KEY-----\nfake\n-----END OPENSSH PRIVATE KEY-----\n";
            delete r.dns;
            r.proxy = { kind: "traefik-external" };
            r.tls = { mode: "external" };
        });
        const compose = composeOf(config);
        assert.deepEqual(Object.keys(compose.services), ["postgres"]);
        assert.equal(STATUS_SERVICE in compose.services, false);
    });

    test("the release has no Caddyfile, and its manifest names no proxy and no route check", () => {
        const release = renderRelease(chronosDatabaseOnly(), "/mnt/data");
        assert.deepEqual(release.files.map((f) => f.name), ["compose.yaml", "release.manifest"]);
        const manifest = release.files.find((f) => f.name === "release.manifest")?.content ?? "";
        assert.match(manifest, /^PROXY_SERVICE=$/m);
        assert.doesNotMatch(manifest, /^CHECK=/m);
        assert.match(manifest, /^DATABASE_SERVICE=postgres$/m);
        // With its route, the same stack's release has both.
        const withRoute = renderRelease(configOf("chronos"), "/mnt/data");
        assert.ok(withRoute.files.some((f) => f.name === "Caddyfile"));
        assert.match(withRoute.files.find((f) => f.name === "release.manifest")?.content ?? "", /^CHECK=api\.chronos\.example /m);
    });

    test("ufw (H4): no public port, the database port restricted to the listed networks", () => {
        const config = chronosDatabaseOnly();
        const env = renderBootstrapEnv(config, contextFor(config));
        assert.match(env, /^ONEBOX_PUBLIC_TCP_PORTS=''$/m);
        assert.match(env, /^ONEBOX_RESTRICTED_PORTS='5432:76\.76\.21\.0\/24 5432:198\.51\.100\.7\/32'$/m);
        // Origin lockdown is moot without web ports: still nothing for 80/443, and no Cloudflare ranges are needed.
        const withRoute = configOf("chronos");
        assert.match(renderBootstrapEnv(withRoute, contextFor(withRoute)), /^ONEBOX_PUBLIC_TCP_PORTS='80 443'$/m);
    });

    test("ufw on an existing server with origin lockdown but no route: nothing for 80/443 even without Cloudflare's ranges", () => {
        const config = chronosDatabaseOnly((r) => {
            r.host = { provider: "existing", address: "203.0.113.50", hostKey: HOST_KEY, sshAllowedCidrs: ["198.51.100.7/32"], originLockdown: true };
            r.sshPrivateKey = "-----BEGIN OPENSSH PRIVATE KEY-----\nfake\n-----END OPENSSH PRIVATE KEY-----\n";
            r.dns = { provider: "cloudflare", zone: "chronos.example", proxied: true };
            r.tls = { mode: "acme" };
        });
        const env = renderBootstrapEnv(config, contextFor(config, { webSources: undefined }));
        assert.match(env, /^ONEBOX_PUBLIC_TCP_PORTS=''$/m);
        assert.match(env, /^ONEBOX_RESTRICTED_PORTS='5432:76\.76\.21\.0\/24 5432:198\.51\.100\.7\/32'$/m);
    });

    test("backups report through the heartbeat: the backup env carries the URL, the backup timers are installed", () => {
        const config = chronosDatabaseOnly();
        assert.match(renderBackupEnv(config, contextFor(config)), new RegExp(`^BACKUP_HEARTBEAT_URL='${HEARTBEAT.replace(/[.]/g, "\\.")}'$`, "m"));
        const steps = buildSteps(config, contextFor(config));
        assert.ok(steps.some((s) => s.name === "backup"), `steps: ${steps.map((s) => s.name).join(", ")}`);
    });
});
