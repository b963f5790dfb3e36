/**
 * compose.yaml for the five deployments: H8 (only the proxy publishes ports,
 * internal network), H9 (health checks, restart, non-root, hardening), the
 * Chronos database publish, the FingerFlow Traefik labels and exact strings
 * where quoting matters.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { parse } from "yaml";
import { appPaths } from "../../../components/provisioning/paths";
import {
    composeEscape,
    composeImages,
    composeModel,
    httpProbe,
    postgresUid,
    INTERNAL_BRIDGE_PREFIX,
    internalBridgeName,
    projectName,
    renderCompose,
    traefikLabels,
    traefikRule,
    type ComposeContext,
} from "../../../components/provisioning/render/compose";
import type { StackConfig } from "../../../components/config/schema";
import { buildSteps, renderServiceEnv, type Step } from "../../../components/provisioning/steps";
import { configOf, contextFor, DEPLOYMENTS, type DeploymentName } from "./fixtures";

function step(steps: Step[], name: string): Step {
    const found = steps.find((x) => x.name === name);
    assert.ok(found, `no step ${name}`);
    return found;
}

type Service = Record<string, unknown> & {
    ports?: { target: number; published: string; protocol: string }[];
    networks?: string[];
    healthcheck?: { test: string[] };
    volumes?: { source: string; target: string; read_only?: boolean }[];
    labels?: Record<string, string>;
    environment?: Record<string, string>;
};

function ctxOf(config: StackConfig): ComposeContext {
    const dataPath = config.host.provider === "existing" ? config.host.dataPath : "/mnt/data";
    return { project: projectName(config), paths: appPaths(projectName(config), dataPath) };
}

/** The compose file as Docker Compose would read it (rendered, then parsed). */
function composeOf(config: StackConfig): { services: Record<string, Service>; networks: Record<string, Record<string, unknown>> } {
    return parse(renderCompose(config, ctxOf(config))) as never;
}

const NAMES = Object.keys(DEPLOYMENTS) as DeploymentName[];
const BUILT_IN = ["proxy", "postgres", "redis", "backup-status"];

describe("H8: published ports and networks", () => {
    for (const name of NAMES) {
        test(`${name}: only the proxy publishes ports (and PostgreSQL only with allowedCidrs)`, () => {
            const config = configOf(name);
            const { services } = composeOf(config);
            for (const [svc, def] of Object.entries(services)) {
                if (svc === "proxy") {
                    assert.deepEqual(def.ports, [
                        { target: 80, published: "80", protocol: "tcp" },
                        { target: 443, published: "443", protocol: "tcp" },
                    ]);
                } else if (svc === "postgres" && config.database.allowedCidrs.length > 0) {
                    assert.deepEqual(def.ports, [{ target: 5432, published: String(config.database.publicPort), protocol: "tcp" }]);
                } else {
                    assert.equal(def.ports, undefined, `${svc} must not publish ports`);
                    assert.equal(def.expose, undefined);
                }
            }
        });

        test(`${name}: H13: PostgreSQL and Redis sit on their own networks with no route out, joined only by the services that use them`, () => {
            const config = configOf(name);
            const { services, networks } = composeOf(config);
            const bridges = new Set<string>();
            for (const n of ["internal", "database", "redis", "web"]) {
                if (!networks[n]) continue;
                // Internal, on a bridge named for the host firewall's rule against reaching the host.
                const bridge = internalBridgeName(projectName(config), n);
                assert.deepEqual(networks[n], { internal: true, driver_opts: { "com.docker.network.bridge.name": bridge } }, n);
                assert.match(bridge, /^obi-[0-9a-f]{11}$/, "a Linux interface name (15 characters at most)");
                bridges.add(bridge);
            }
            assert.equal(bridges.size, ["internal", "database", "redis", "web"].filter((n) => networks[n]).length, "one bridge per network");
            // Only internal networks carry the prefix the firewall drops to the host.
            for (const [n, def] of Object.entries(networks)) {
                const bridge = (def.driver_opts as Record<string, string> | undefined)?.["com.docker.network.bridge.name"];
                if (bridge?.startsWith(INTERNAL_BRIDGE_PREFIX)) assert.equal(def.internal, true, n);
            }
            if (config.database.allowedCidrs.length === 0) {
                assert.deepEqual(services.postgres.networks, ["database"]);
            }
            if (services.redis) {
                assert.deepEqual(services.redis.networks, ["redis"]);
            }
            for (const [svc, s] of Object.entries(config.services)) {
                const nets = services[svc].networks ?? [];
                assert.equal(nets.includes("database"), s.database, `${svc}: database network iff database: true`);
                assert.equal(nets.includes("redis"), s.redis, `${svc}: redis network iff redis: true`);
                assert.equal(nets.includes("egress"), s.egress, `${svc}: egress network iff egress: true`);
                assert.ok(nets.includes("internal"), `${svc}: app services reach each other`);
            }
        });

        test(`${name}: H13: the proxy reaches only routed services`, () => {
            const config = configOf(name);
            const { services } = composeOf(config);
            const routed = new Set(config.routes.map((r) => r.service));
            const proxyNets = new Set((services.proxy?.networks ?? []).filter((n) => n !== "edge"));
            for (const svc of Object.keys(config.services)) {
                const shared = (services[svc].networks ?? []).filter((n) => proxyNets.has(n));
                assert.equal(shared.length > 0, services.proxy !== undefined && routed.has(svc), `${svc} shares ${shared.join(",") || "nothing"} with the proxy`);
            }
        });
    }

    test("the proxy: edge (publishes 80/443, reaches ACME) and web (the routed services) only", () => {
        const { services, networks } = composeOf(configOf("finances"));
        assert.deepEqual(services.proxy.networks, ["edge", "web"]);
        assert.deepEqual(networks.edge, {});
        assert.equal(networks.web.internal, true);
    });

    test("internal bridge names differ between stacks and networks, and are stable", () => {
        assert.notEqual(internalBridgeName("shop-prod", "internal"), internalBridgeName("shop-staging", "internal"));
        assert.notEqual(internalBridgeName("shop-prod", "internal"), internalBridgeName("shop-prod", "database"));
        assert.equal(internalBridgeName("shop-prod", "internal"), internalBridgeName("shop-prod", "internal"));
        assert.ok(internalBridgeName("a".repeat(60), "database").length <= 15);
    });

    test("H13: egress is an ordinary bridge (peers resolved on it must connect); egress: false leaves a service without it", () => {
        const config = configOf("social", (r) => ((r.services as Record<string, Record<string, unknown>>).web.egress = false));
        const { services, networks } = composeOf(config);
        // Traffic between containers stays on: Docker's DNS may answer a peer's name with its egress address.
        assert.deepEqual(networks.egress, {});
        assert.deepEqual(services.web.networks, ["internal", "web"]);
        assert.deepEqual(services.api.networks, ["database", "egress", "internal", "web"]);
        const none = configOf("social", (r) => {
            for (const s of Object.values(r.services as Record<string, Record<string, unknown>>)) s.egress = false;
        });
        assert.equal(composeOf(none).networks.egress, undefined);
    });

    test("Chronos: PostgreSQL is published on publicPort and joins a plain bridge (internal networks cannot publish)", () => {
        const { services, networks } = composeOf(configOf("chronos"));
        assert.deepEqual(services.postgres.networks, ["database", "db-published"]);
        assert.deepEqual(networks["db-published"], {});
        const noCidrs = composeOf(configOf("chronos", (r) => ((r.database as Record<string, unknown>).allowedCidrs = [])));
        assert.equal(noCidrs.services.postgres.ports, undefined);
        assert.equal(noCidrs.networks["db-published"], undefined);
    });

    test("Chronos: the published PostgreSQL serves TLS with the program's certificate and its pg_hba.conf (exact command)", () => {
        assert.deepEqual(composeOf(configOf("chronos")).services.postgres.command, [
            "postgres",
            "-c",
            "shared_buffers=64MB",
            "-c",
            "max_connections=50",
            "-c",
            "ssl=on",
            "-c",
            "ssl_cert_file=/run/secrets/server.crt",
            "-c",
            "ssl_key_file=/run/secrets/server.key",
            "-c",
            "hba_file=/run/secrets/pg_hba.conf",
            "-c",
            "ssl_min_protocol_version=TLSv1.2",
        ]);
        // Not published: PostgreSQL as the image configures it.
        assert.deepEqual(composeOf(configOf("finances")).services.postgres.command, ["postgres", "-c", "shared_buffers=64MB", "-c", "max_connections=50"]);
    });

    test("FingerFlow: no proxy of ours; routed services join the external network", () => {
        const { services, networks } = composeOf(configOf("fingerflow"));
        assert.equal(services.proxy, undefined);
        assert.deepEqual(networks.proxy, { external: true, name: "proxy" });
        assert.deepEqual(services.backend.networks, ["database", "egress", "internal", "proxy"]);
        assert.deepEqual(services.frontend.networks, ["egress", "internal", "proxy"]);
        assert.equal(networks.edge, undefined);
        assert.equal(networks.web, undefined);
    });
});

describe("H9: health checks, restart policy, users, hardening", () => {
    for (const name of NAMES) {
        test(`${name}: every service restarts unless stopped (H9), logs rotate (H7), privileges are dropped`, () => {
            const { services } = composeOf(configOf(name));
            for (const [svc, def] of Object.entries(services)) {
                assert.equal(def.restart, "unless-stopped", svc);
                assert.deepEqual(def.security_opt, ["no-new-privileges:true"], svc);
                assert.deepEqual(def.cap_drop, ["ALL"], svc);
                assert.deepEqual(def.logging, { driver: "json-file", options: { "max-size": "10m", "max-file": "3" } }, svc);
                assert.match(String(def.mem_limit), /^\d+m$/, svc);
                assert.equal(typeof def.cpus, "number", svc);
                // H12: a pids limit everywhere, and a read-only root unless an app service opts out.
                assert.ok(Number.isInteger(def.pids_limit) && Number(def.pids_limit) >= 16, `${svc} pids_limit`);
            }
        });

        test(`${name}: H12 every container has a read-only root with /tmp in memory, unless an app service sets readOnly: false`, () => {
            const config = configOf(name);
            const { services } = composeOf(config);
            for (const [svc, def] of Object.entries(services)) {
                if (config.services[svc]?.readOnly === false) {
                    assert.equal(def.read_only, undefined, svc);
                    continue;
                }
                assert.equal(def.read_only, true, svc);
                assert.ok((def.tmpfs as string[]).includes("/tmp"), svc);
            }
        });

        test(`${name}: every built-in service and every service with health config has a health check`, () => {
            const config = configOf(name);
            const { services } = composeOf(config);
            for (const [svc, def] of Object.entries(services)) {
                if (BUILT_IN.includes(svc) || config.services[svc]?.health) {
                    assert.ok(def.healthcheck, `${svc} has no healthcheck`);
                }
            }
        });

        test(`${name}: app services run as their configured user and never get capabilities back`, () => {
            const config = configOf(name);
            const { services } = composeOf(config);
            for (const [svc, s] of Object.entries(config.services)) {
                assert.equal(services[svc].user, s.user ?? undefined, svc);
                assert.equal(services[svc].cap_add, undefined, svc);
            }
        });
    }

    test("H12: capAdd gives a service exactly its listed capabilities (sorted), every other one still dropped", () => {
        const config = configOf("fingerflow", (r) => {
            const frontend = (r.services as Record<string, Record<string, unknown>>).frontend;
            frontend.capAdd = ["SETUID", "NET_BIND_SERVICE", "CHOWN", "SETGID"];
        });
        const { services } = composeOf(config);
        assert.deepEqual(services.frontend.cap_drop, ["ALL"]);
        assert.deepEqual(services.frontend.cap_add, ["CHOWN", "NET_BIND_SERVICE", "SETGID", "SETUID"]);
        assert.deepEqual(services.frontend.security_opt, ["no-new-privileges:true"]);
        assert.equal(services.backend.cap_add, undefined, "another service gets nothing");
    });

    test("the default user is 10001:10001; user: null keeps the image's user", () => {
        const { services } = composeOf(configOf("fingerflow"));
        assert.equal(services.backend.user, "10001:10001");
        assert.equal(services.frontend.user, undefined);
    });

    test("H12: the proxy runs as a non-root user; binding 80/443 comes from its own network namespace, NET_BIND_SERVICE is its only capability", () => {
        const { services } = composeOf(configOf("cleaning"));
        assert.equal(services.proxy.user, "10080:10080");
        assert.deepEqual(services.proxy.sysctls, { "net.ipv4.ip_unprivileged_port_start": 80 });
        assert.deepEqual(services.proxy.cap_drop, ["ALL"]);
        assert.deepEqual(services.proxy.cap_add, ["NET_BIND_SERVICE"]);
        const status = composeOf(configOf("fingerflow")).services["backup-status"];
        assert.equal(status.user, "10080:10080");
        assert.equal(status.cap_add, undefined, "the status server listens on 8080: no capability at all");
    });

    test("H12: PostgreSQL writes only its data volume, its socket directory and /tmp; pids limits per service", () => {
        const { services } = composeOf(configOf("cleaning", (raw) => {
            (raw.services as Record<string, Record<string, unknown>>).api.pidsLimit = 64;
        }));
        assert.deepEqual(services.postgres.tmpfs, ["/tmp", "/var/run/postgresql"]);
        assert.equal(services.api.pids_limit, 64);
        assert.equal(services.worker.pids_limit, 256, "the default");
    });

    test("built-in services get back only the capabilities their entrypoints need", () => {
        const { services } = composeOf(configOf("cleaning"));
        assert.deepEqual(services.proxy.cap_add, ["NET_BIND_SERVICE"]);
        assert.deepEqual(services.postgres.cap_add, ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"]);
        assert.deepEqual(services.redis.cap_add, ["CHOWN", "SETGID", "SETUID"]);
    });

    test("an HTTP health path becomes a probe using the first HTTP client the image has (exact)", () => {
        assert.deepEqual(httpProbe(8000, "/health"), [
            "CMD-SHELL",
            "if command -v curl >/dev/null 2>&1; then exec curl -fsS -o /dev/null --max-time 5 http://127.0.0.1:8000/health; " +
                "elif command -v wget >/dev/null 2>&1; then exec wget -q -O /dev/null -T 5 http://127.0.0.1:8000/health; " +
                "elif command -v python3 >/dev/null 2>&1; then exec python3 -c 'import urllib.request; urllib.request.urlopen(\"http://127.0.0.1:8000/health\", timeout=5)'; " +
                "elif command -v node >/dev/null 2>&1; then exec node -e 'require(\"http\").get(\"http://127.0.0.1:8000/health\",(r)=>process.exit(r.statusCode<400?0:1)).on(\"error\",()=>process.exit(1))'; " +
                "else echo 'no curl, wget, python3 or node in the image; set health.command' >&2; exit 1; fi",
        ]);
        const { services } = composeOf(configOf("finances"));
        assert.deepEqual(services.api.healthcheck, { test: httpProbe(8000, "/health"), interval: "10s", timeout: "5s", retries: 3, start_period: "30s" });
        for (const def of Object.values(services)) {
            assert.equal(JSON.stringify(def.healthcheck).includes("$"), false, "probes must not contain $ (Compose would interpolate it)");
        }
    });

    test("a health command runs as given (exec form), e.g. the jobs runner's heartbeat", () => {
        const { services } = composeOf(configOf("cleaning"));
        assert.deepEqual(services.worker.healthcheck?.test, ["CMD", "python", "-m", "app.heartbeat", "--max-age", "120"]);
        assert.equal(services.worker.ports, undefined);
    });

    test("PostgreSQL is healthy only when it accepts TCP connections (not the init-time socket server)", () => {
        const { services } = composeOf(configOf("finances"));
        assert.deepEqual(services.postgres.healthcheck?.test, ["CMD", "pg_isready", "-q", "-h", "127.0.0.1", "-U", "finances", "-d", "finances"]);
        assert.deepEqual(composeOf(configOf("cleaning")).services.redis.healthcheck?.test, ["CMD", "redis-cli", "ping"]);
    });

    test("H12: app services are read-only by default with /tmp and their tmpfs paths in memory; readOnly: false opts out", () => {
        const { services } = composeOf(configOf("cleaning", (raw) => {
            const svcs = raw.services as Record<string, Record<string, unknown>>;
            svcs.web.readOnly = false;
            svcs.worker.tmpfs = ["/app/.cache"];
        }));
        assert.equal(services.api.read_only, true);
        assert.deepEqual(services.api.tmpfs, ["/tmp"]);
        assert.deepEqual(services.worker.tmpfs, ["/tmp", "/app/.cache"]);
        assert.equal(services.web.read_only, undefined);
        assert.equal(services.web.tmpfs, undefined);
    });
});

describe("environment, secrets and volumes", () => {
    test("env files are referenced at the real path, relocatable only for offline validation", () => {
        const { services } = composeOf(configOf("finances"));
        assert.deepEqual(services.api.env_file, ["${ONEBOX_CONFIG_DIR:-/etc/onebox/finances-prod}/env/api.env"]);
    });

    test("H11: database services get DATABASE_* (the URL without the password) and the password file, read-only; each secret as <NAME>_FILE; never a value", () => {
        const { services } = composeOf(configOf("finances"));
        assert.deepEqual(services.api.environment, {
            COOKIE_DOMAIN: ".example.com",
            CORS_ORIGINS: "https://app.example.com",
            DATABASE_HOST: "finances-prod-postgres",
            DATABASE_NAME: "finances",
            DATABASE_PASSWORD_FILE: "/run/secrets/database-password",
            DATABASE_PORT: "5432",
            DATABASE_URL: "postgresql://finances@finances-prod-postgres:5432/finances",
            DATABASE_USER: "finances",
            JWT_REFRESH_SECRET_FILE: "/run/secrets/JWT_REFRESH_SECRET",
            JWT_SECRET_FILE: "/run/secrets/JWT_SECRET",
        });
        // The directory, not the file: a rotated password is visible without recreating the container.
        assert.deepEqual(services.api.volumes, [
            {
                type: "bind",
                source: "${ONEBOX_CONFIG_DIR:-/etc/onebox/finances-prod}/secrets/api",
                target: "/run/secrets",
                read_only: true,
                bind: { create_host_path: false },
            },
        ]);
        assert.deepEqual(services.postgres.volumes?.[1], {
            type: "bind",
            source: "${ONEBOX_CONFIG_DIR:-/etc/onebox/finances-prod}/secrets/postgres",
            target: "/run/secrets",
            read_only: true,
            bind: { create_host_path: false },
        });
        assert.deepEqual(services.postgres.environment, { POSTGRES_DB: "finances", POSTGRES_PASSWORD_FILE: "/run/secrets/postgres-password", POSTGRES_USER: "finances" });
        assert.equal(services.web.environment?.DATABASE_HOST, undefined);
    });

    test("H11: secretsAsEnv moves a secret (or the URL with the password) to the env file: no _FILE variable, no passwordless URL", () => {
        const { services } = composeOf(configOf("finances", (raw) => {
            (raw.services as Record<string, Record<string, unknown>>).api.secretsAsEnv = ["JWT_SECRET", "DATABASE_URL"];
        }));
        const env = services.api.environment ?? {};
        assert.equal(env.JWT_SECRET_FILE, undefined);
        assert.equal(env.JWT_REFRESH_SECRET_FILE, "/run/secrets/JWT_REFRESH_SECRET");
        assert.equal(env.DATABASE_URL, undefined, "the env file's URL (with the password) is not overridden");
    });

    test("database contract per service: the app's own variable names, an async driver's scheme with its TLS parameter, no password file when the app reads none", () => {
        const config = configOf("finances", (raw) => {
            (raw.services as Record<string, Record<string, unknown>>).api.databaseEnv = {
                url: "SQLALCHEMY_DATABASE_URI",
                scheme: "postgresql+asyncpg",
                sslmode: "disable",
                host: "POSTGRES_HOST",
                port: null,
                name: "POSTGRES_DB",
                user: "POSTGRES_USER",
                passwordFile: null,
                password: "POSTGRES_PASSWORD",
            };
        });
        const { services } = composeOf(config);
        assert.deepEqual(services.api.environment, {
            COOKIE_DOMAIN: ".example.com",
            CORS_ORIGINS: "https://app.example.com",
            JWT_REFRESH_SECRET_FILE: "/run/secrets/JWT_REFRESH_SECRET",
            JWT_SECRET_FILE: "/run/secrets/JWT_SECRET",
            POSTGRES_DB: "finances",
            POSTGRES_HOST: "finances-prod-postgres",
            POSTGRES_USER: "finances",
            SQLALCHEMY_DATABASE_URI: "postgresql+asyncpg://finances@finances-prod-postgres:5432/finances?ssl=disable",
        });
        // The password reaches it through the env file only (H11 opt-in), never the compose file.
        assert.equal(
            renderServiceEnv(config, "api"),
            "# Secrets of service api (finances-prod) it reads from its environment (secretsAsEnv), rendered by onebox; root-only (H10).\nPOSTGRES_PASSWORD={{secret:POSTGRES_PASSWORD|env}}\n",
        );
        const files = step(buildSteps(config, contextFor(config)), "secrets").files.map((f) => f.path);
        assert.ok(!files.includes("/etc/onebox/finances-prod/secrets/api/database-password"), "no password file for an app that reads none");
        assert.ok(files.includes("/etc/onebox/finances-prod/secrets/api/JWT_SECRET"));
    });

    test("database contract: a libpq URL carries sslmode; the URL variable in secretsAsEnv takes the password, under its own name", () => {
        const config = configOf("finances", (raw) => {
            const api = (raw.services as Record<string, Record<string, unknown>>).api;
            api.databaseEnv = { url: "DB_DSN", scheme: "postgres", sslmode: "prefer" };
            api.secretsAsEnv = ["DB_DSN"];
        });
        const env = composeOf(config).services.api.environment ?? {};
        assert.equal(env.DB_DSN, undefined, "the env file's URL (with the password) is not overridden");
        assert.equal(env.DATABASE_URL, undefined);
        assert.equal(env.DATABASE_PASSWORD_FILE, "/run/secrets/database-password");
        assert.match(renderServiceEnv(config, "api"), /^DB_DSN='postgres:\/\/finances:\{\{secret:POSTGRES_PASSWORD\|url\}\}@finances-prod-postgres:5432\/finances\?sslmode=prefer'$/m);
    });

    test("Redis services get REDIS_URL; Redis persists and never evicts", () => {
        const { services } = composeOf(configOf("cleaning"));
        assert.equal(services.api.environment?.REDIS_URL, "redis://cleaning-prod-redis:6379/0");
        assert.equal(services.web.environment?.REDIS_URL, undefined);
        assert.deepEqual(services.redis.command, ["redis-server", "--appendonly", "yes", "--maxmemory", "96mb", "--maxmemory-policy", "noeviction"]);
    });

    test("volumes live under <dataPath>/<app>-<env>/volumes/<service>/<name> and must exist (no silent directory creation)", () => {
        const { services } = composeOf(configOf("cleaning"));
        assert.deepEqual(services.api.volumes?.[0], { type: "bind", source: "/mnt/data/cleaning-prod/volumes/api/uploads", target: "/app/uploads", bind: { create_host_path: false } });
        assert.deepEqual(composeOf(configOf("finances")).services.postgres.volumes?.[0], {
            type: "bind",
            source: "/mnt/data/finances-prod/postgres",
            target: "/var/lib/postgresql/data",
            bind: { create_host_path: false },
        });
    });

    test("PostgreSQL 18 mounts the parent directory its official image expects", () => {
        const { services } = composeOf(configOf("finances", (r) => ((r.database as Record<string, unknown>).version = 18)));
        assert.equal(services.postgres.volumes?.[0].target, "/var/lib/postgresql");
        assert.equal(services.postgres.image, "postgres:18");
    });

    test("$ in configured values is escaped for Compose ($$), so it reaches the container literally", () => {
        assert.equal(composeEscape("a$b${C}"), "a$$b$${C}");
        const yaml = renderCompose(configOf("cleaning"), ctxOf(configOf("cleaning")));
        assert.ok(yaml.includes("PRICE_NOTE: costs $$5\n"), yaml);
    });

    test("no YAML anchors or aliases: every service reads on its own", () => {
        assert.doesNotMatch(renderCompose(configOf("cleaning"), ctxOf(configOf("cleaning"))), /[&*]a\d/);
    });

    test("the postgres uid that reads the password file: 999, or 70 for Alpine images", () => {
        assert.equal(postgresUid("postgres:17"), "999:999");
        assert.equal(postgresUid("postgres:17-alpine"), "70:70");
        assert.equal(postgresUid("ghcr.io/acme/postgres:17"), "999:999");
    });
});

describe("traefik-external (FingerFlow)", () => {
    test("router rules match a path prefix exactly as Caddy does", () => {
        assert.equal(traefikRule("app.fingerflow.example", "/"), "Host(`app.fingerflow.example`)");
        assert.equal(traefikRule("app.fingerflow.example", "/api"), "Host(`app.fingerflow.example`) && (Path(`/api`) || PathPrefix(`/api/`))");
        assert.equal(traefikRule("a.example.com", "/api/"), "Host(`a.example.com`) && (Path(`/api`) || PathPrefix(`/api/`))");
    });

    test("backend labels: routers for /api, /auth and /health, headers and compression (exact)", () => {
        const labels = traefikLabels(configOf("fingerflow"), "fingerflow-prod", "backend");
        const m = "traefik.http.middlewares.fingerflow-prod-headers.headers";
        const router = (i: number, rule: string) => ({
            [`traefik.http.routers.fingerflow-prod-backend-${i}.entrypoints`]: "websecure",
            [`traefik.http.routers.fingerflow-prod-backend-${i}.middlewares`]: "fingerflow-prod-headers,fingerflow-prod-compress",
            [`traefik.http.routers.fingerflow-prod-backend-${i}.rule`]: rule,
            [`traefik.http.routers.fingerflow-prod-backend-${i}.service`]: "fingerflow-prod-backend",
            [`traefik.http.routers.fingerflow-prod-backend-${i}.tls`]: "true",
            [`traefik.http.routers.fingerflow-prod-backend-${i}.tls.certresolver`]: "letsencrypt",
        });
        assert.deepEqual(labels, {
            "traefik.docker.network": "proxy",
            "traefik.enable": "true",
            "traefik.http.middlewares.fingerflow-prod-compress.compress": "true",
            [`${m}.contentSecurityPolicy`]: "default-src 'self'; frame-ancestors 'none'; object-src 'none'; base-uri 'self'",
            [`${m}.contentTypeNosniff`]: "true",
            [`${m}.customResponseHeaders.Server`]: "",
            [`${m}.frameDeny`]: "true",
            [`${m}.referrerPolicy`]: "strict-origin-when-cross-origin",
            [`${m}.stsSeconds`]: "31536000",
            ...router(0, "Host(`app.fingerflow.example`) && (Path(`/api`) || PathPrefix(`/api/`))"),
            ...router(1, "Host(`app.fingerflow.example`) && (Path(`/auth`) || PathPrefix(`/auth/`))"),
            ...router(2, "Host(`app.fingerflow.example`) && (Path(`/health`) || PathPrefix(`/health/`))"),
            "traefik.http.services.fingerflow-prod-backend.loadbalancer.server.port": "8000",
        });
        assert.deepEqual(Object.keys(labels), Object.keys(labels).sort(), "labels are sorted");
    });

    test("header settings reach Traefik's middleware: frame options, referrer policy, HSTS includeSubDomains and preload", () => {
        const m = "traefik.http.middlewares.fingerflow-prod-headers.headers";
        const of = (proxy: Record<string, unknown>) =>
            traefikLabels(
                configOf("fingerflow", (r) => {
                    r.proxy = { ...(r.proxy as object), ...proxy };
                    r.routes = [...(r.routes as object[]), { host: "fingerflow.example", service: "frontend" }];
                }),
                "fingerflow-prod",
                "backend",
            );
        const same = of({ frameOptions: "SAMEORIGIN", referrerPolicy: "no-referrer", hstsIncludeSubdomains: true, hstsPreload: true });
        assert.equal(same[`${m}.frameDeny`], undefined);
        assert.equal(same[`${m}.customFrameOptionsValue`], "SAMEORIGIN");
        assert.equal(same[`${m}.referrerPolicy`], "no-referrer");
        assert.equal(same[`${m}.stsIncludeSubdomains`], "true");
        assert.equal(same[`${m}.stsPreload`], "true");
        const off = of({ frameOptions: "off" });
        assert.deepEqual(Object.keys(off).filter((k) => /frameDeny|customFrameOptionsValue|stsIncludeSubdomains|stsPreload/.test(k)), []);
    });

    test("the frontend gets the catch-all router; longer rules win by Traefik's default priority", () => {
        const labels = traefikLabels(configOf("fingerflow"), "fingerflow-prod", "frontend");
        assert.equal(labels["traefik.http.routers.fingerflow-prod-frontend-0.rule"], "Host(`app.fingerflow.example`)");
        assert.equal(labels["traefik.http.services.fingerflow-prod-frontend.loadbalancer.server.port"], "80");
        assert.equal(labels["traefik.http.routers.fingerflow-prod-frontend-0.priority"], undefined);
    });

    test("B3 behind Traefik: a small status server answers /healthz/backup on the app's host", () => {
        const { services } = composeOf(configOf("fingerflow"));
        const status = services["backup-status"];
        assert.equal(status.image, "caddy:2");
        assert.deepEqual(status.networks, ["proxy"]);
        assert.equal(status.labels?.["traefik.http.routers.fingerflow-prod-backup-status.rule"], "Host(`app.fingerflow.example`) && Path(`/healthz/backup`)");
        assert.equal(status.labels?.["traefik.http.routers.fingerflow-prod-backup-status.priority"], "10000");
        assert.deepEqual(status.volumes?.map((v) => [v.source, v.target, v.read_only]), [
            ["/srv/onebox/fingerflow-prod/proxy", "/etc/caddy", true],
            ["/var/lib/onebox/fingerflow-prod/status", "/srv/status", true],
        ]);
        const noBackups = composeOf(configOf("fingerflow", (r) => delete r.backups));
        assert.equal(noBackups.services["backup-status"], undefined);
    });
});

describe("proxy service and image sources", () => {
    test("the proxy mounts the live config directory (reloaded, never recreated), data, logs, status and origin certificates", () => {
        const { services } = composeOf(configOf("finances"));
        assert.deepEqual(services.proxy.volumes?.map((v) => [v.source, v.target, v.read_only ?? false]), [
            ["/srv/onebox/finances-prod/proxy", "/etc/caddy", true],
            ["/mnt/data/finances-prod/caddy/data", "/data", false],
            ["/mnt/data/finances-prod/caddy/config", "/config", false],
            ["/var/log/onebox/finances-prod/caddy", "/var/log/caddy", false],
            ["${ONEBOX_CONFIG_DIR:-/etc/onebox/finances-prod}/certs", "/etc/caddy/certs", true],
            ["/var/lib/onebox/finances-prod/status", "/srv/status", true],
        ]);
    });

    test("upload mode never pulls; registry mode leaves the pull policy alone", () => {
        const upload = composeOf(configOf("social", (r) => (r.deploy = { imageSource: "upload" })));
        for (const [svc, def] of Object.entries(upload.services)) {
            assert.equal(def.pull_policy, "never", svc);
        }
        for (const def of Object.values(composeOf(configOf("social")).services)) {
            assert.equal(def.pull_policy, undefined);
        }
    });

    test("composeImages lists every image once, built-ins first", () => {
        assert.deepEqual(composeImages(configOf("cleaning")), ["caddy:2", "postgres:16", "redis:7-alpine", "ghcr.io/clean/api:5.0.2", "ghcr.io/clean/web:5.0.2"]);
    });

    test("a user service named like a built-in one is refused", () => {
        const config = configOf("fingerflow");
        const clash = { ...config, services: { ...config.services, "backup-status": config.services.backend } };
        assert.throws(() => composeModel(clash, ctxOf(clash)), /built-in service/);
    });

    test("the compose file is the same whatever the order of services in the config", () => {
        const a = configOf("finances");
        const b = configOf("finances", (r) => {
            const s = r.services as Record<string, unknown>;
            r.services = { api: s.api, web: s.web };
        });
        assert.equal(renderCompose(a, ctxOf(a)), renderCompose(b, ctxOf(b)));
    });
});
