/**
 * The release (manifest, id, route checks) and the backup timers.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { appPaths } from "../../../components/provisioning/paths";
import { releaseId, renderManifest, routeChecks } from "../../../components/provisioning/render/release";
import { renderBackupUnits } from "../../../components/provisioning/render/systemd";
import { renderRelease } from "../../../components/provisioning/steps";
import { FAKE_CLOUDFLARE_RANGES } from "../../helpers/cloudflare";
import { configOf } from "./fixtures";

describe("route checks (what deploy.sh requests through the proxy)", () => {
    test("subdomains: each host's service health path, which must answer 2xx", () => {
        assert.deepEqual(routeChecks(configOf("finances")), [
            { host: "app.example.com", path: "/api/health", expect: "2xx" },
            { host: "api.example.com", path: "/health", expect: "2xx" },
        ]);
    });

    test("one host: a health path reachable through its own route is checked; other prefixes must not fail with 5xx", () => {
        assert.deepEqual(routeChecks(configOf("social")), [
            { host: "social.example", path: "/api", expect: "lt500" },
            { host: "social.example", path: "/health", expect: "2xx" },
            { host: "social.example", path: "/", expect: "2xx" },
        ]);
    });

    test("a health path taken by a longer route of another service is not the target's check", () => {
        const config = configOf("fingerflow", (r) => {
            r.proxy = { kind: "caddy" };
            r.tls = { mode: "internal" };
            (r.services as Record<string, { health: { path: string } }>).frontend.health = { path: "/health" };
        });
        assert.deepEqual(routeChecks(config), [
            { host: "app.fingerflow.example", path: "/api", expect: "lt500" },
            { host: "app.fingerflow.example", path: "/auth", expect: "lt500" },
            { host: "app.fingerflow.example", path: "/health", expect: "2xx" },
            { host: "app.fingerflow.example", path: "/", expect: "lt500" },
        ]);
    });
});

describe("release manifest and id", () => {
    test("manifest (exact)", () => {
        const config = configOf("finances");
        assert.equal(
            renderManifest(config, { project: "finances-prod", paths: appPaths("finances-prod", "/mnt/data") }),
            [
                "# Release manifest of finances-prod, rendered by onebox; read (never sourced) by deploy.sh.",
                "PROJECT=finances-prod",
                "PROXY=caddy",
                "PROXY_SERVICE=proxy",
                "PROXY_DIR=/srv/onebox/finances-prod/proxy",
                "PUBLISHES=80 443",
                "TLS_MODE=cloudflare-origin",
                "IMAGE_SOURCE=registry",
                "HEALTH_TIMEOUT=180",
                "KEEP_RELEASES=5",
                "DATABASE_SERVICE=postgres",
                "DATABASE_USER=finances",
                "DATABASE_MAJOR=16",
                "DATABASE_DATA_DIR=/mnt/data/finances-prod/postgres",
                "REGISTRY_CONFIG=",
                "ENV_FILE=/etc/onebox/finances-prod/env/api.env",
                "ENV_FILE=/etc/onebox/finances-prod/env/web.env",
                "CHECK=app.example.com /api/health 2xx",
                "CHECK=api.example.com /health 2xx",
                "",
            ].join("\n"),
        );
    });

    test("traefik-external: the status server is the proxy service; the routes are checked through Traefik on the external network", () => {
        const manifest = renderManifest(configOf("fingerflow"), { project: "fingerflow-prod", paths: appPaths("fingerflow-prod", "/srv/data") });
        assert.match(manifest, /^PROXY=traefik-external$/m);
        assert.match(manifest, /^PROXY_SERVICE=backup-status$/m);
        assert.deepEqual(
            manifest.split("\n").filter((l) => /^(CHECK|PROXY_NETWORK)=/.test(l)),
            [
                "PROXY_NETWORK=proxy",
                // /health is the backend's health path on its own route (2xx); the frontend's "/" health on "/".
                "CHECK=app.fingerflow.example /api lt500",
                "CHECK=app.fingerflow.example /auth lt500",
                "CHECK=app.fingerflow.example /health 2xx",
                "CHECK=app.fingerflow.example / 2xx",
            ],
        );
        const other = renderManifest(configOf("fingerflow", (r) => ((r.proxy as Record<string, unknown>).externalNetwork = "web_edge")), { project: "fingerflow-prod", paths: appPaths("fingerflow-prod", "/srv/data") });
        assert.match(other, /^PROXY_NETWORK=web_edge$/m);
    });

    test("a Caddy stack's manifest names no external network (its release ids stay as they were)", () => {
        const manifest = renderManifest(configOf("finances"), { project: "finances-prod", paths: appPaths("finances-prod", "/mnt/data") });
        assert.doesNotMatch(manifest, /^PROXY_NETWORK=/m);
        assert.match(manifest, /^CHECK=/m);
    });

    test("the id is a 12-hex content hash: stable, and changed by any file", () => {
        const cf = FAKE_CLOUDFLARE_RANGES;
        const a = renderRelease(configOf("finances"), "/mnt/data", cf);
        assert.match(a.id, /^[0-9a-f]{12}$/);
        assert.equal(renderRelease(configOf("finances"), "/mnt/data", cf).id, a.id);
        const b = renderRelease(configOf("finances", (r) => ((r.services as Record<string, { image: string }>).web.image = "ghcr.io/example/finances-web:1.0.1")), "/mnt/data", cf);
        assert.notEqual(b.id, a.id);
        // Cloudflare publishing another range changes the Caddyfile, so the release.
        assert.notEqual(renderRelease(configOf("finances"), "/mnt/data", { ipv4: [...cf.ipv4, "198.51.100.0/24"], ipv6: cf.ipv6 }).id, a.id);
        assert.notEqual(releaseId([{ name: "a", content: "bc" }]), releaseId([{ name: "ab", content: "c" }]));
        assert.deepEqual(a.files.map((f) => f.name), ["compose.yaml", "Caddyfile", "release.manifest"]);
    });
});

describe("backup timers", () => {
    const units = renderBackupUnits({ project: "finances-prod", backupEnv: "/etc/onebox/finances-prod/backup.env", schedule: "30 3 * * *", drillSchedule: "0 5 * * 0" });

    test("backup service and timer (exact): OnCalendar from the cron schedule, randomized, persistent", () => {
        assert.deepEqual(units.map((u) => u.name), [
            "onebox-finances-prod-backup.service",
            "onebox-finances-prod-backup.timer",
            "onebox-finances-prod-restore-drill.service",
            "onebox-finances-prod-restore-drill.timer",
            "onebox-finances-prod-backup-status.service",
            "onebox-finances-prod-backup-status.timer",
        ]);
        assert.equal(
            units[0].content,
            [
                "[Unit]",
                "Description=onebox backup: database dump and volumes to object storage (finances-prod)",
                "Documentation=file:/usr/local/lib/onebox/backup/backup.sh",
                "Wants=network-online.target",
                "After=network-online.target docker.service",
                "ConditionPathExists=/etc/onebox/finances-prod/backup.env",
                "",
                "[Service]",
                "Type=oneshot",
                "Environment=ONEBOX_BACKUP_ENV=/etc/onebox/finances-prod/backup.env",
                "ExecStart=/usr/local/lib/onebox/backup/backup.sh",
                "TimeoutStartSec=3h",
                "NoNewPrivileges=true",
                "UMask=0077",
                "Nice=10",
                "IOSchedulingClass=best-effort",
                "IOSchedulingPriority=7",
                "",
            ].join("\n"),
        );
        assert.equal(
            units[1].content,
            [
                "[Unit]",
                "Description=Schedule: onebox backup: database dump and volumes to object storage (finances-prod)",
                "",
                "[Timer]",
                "OnCalendar=*-*-* 03:30:00 UTC",
                "RandomizedDelaySec=10min",
                "Persistent=true",
                "",
                "[Install]",
                "WantedBy=timers.target",
                "",
            ].join("\n"),
        );
    });

    test("drill weekly on Sunday; status every five minutes", () => {
        assert.match(units[3].content, /^OnCalendar=Sun \*-\*-\* 05:00:00 UTC$/m);
        assert.match(units[3].content, /^RandomizedDelaySec=30min$/m);
        assert.match(units[4].content, /^ExecStart=\/usr\/local\/lib\/onebox\/backup\/backup-status\.sh$/m);
        assert.match(units[5].content, /^OnCalendar=\*:0\/5$/m);
    });

    test("no drill unit without a database", () => {
        const names = renderBackupUnits({ project: "p", backupEnv: "/etc/onebox/p/backup.env", schedule: "0 2 * * 1-5" }).map((u) => u.name);
        assert.deepEqual(names, ["onebox-p-backup.service", "onebox-p-backup.timer", "onebox-p-backup-status.service", "onebox-p-backup-status.timer"]);
        assert.match(renderBackupUnits({ project: "p", backupEnv: "/etc/onebox/p/backup.env", schedule: "0 2 * * 1-5" })[1].content, /^OnCalendar=Mon,Tue,Wed,Thu,Fri \*-\*-\* 02:00:00 UTC$/m);
    });

    test("the scripts read backup.env themselves: no EnvironmentFile= hands the credentials to every child", () => {
        for (const u of units) {
            assert.doesNotMatch(u.content, /EnvironmentFile/);
        }
    });
});
