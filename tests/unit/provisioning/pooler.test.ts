/**
 * database.pooler: the schema's rules (path-naming errors), PgBouncer's rendered files
 * (transaction pooling, SCRAM auth file holding the verifier only, R3), its compose service
 * (database network only, nothing published, non-root, read-only, limits: H8, H12, H13), the
 * services that opt in (and only those) pointed at it, and the manifest line deploy.sh
 * reads to make it re-read its auth file after a rotation.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { parse } from "yaml";
import { ConfigError, validateConfig } from "../../../components/config/load";
import type { StackConfig } from "../../../components/config/schema";
import { appPaths } from "../../../components/provisioning/paths";
import { scramVerifier, substituteSecrets } from "../../../components/provisioning/placeholders";
import { composeImages, projectName, renderCompose } from "../../../components/provisioning/render/compose";
import { renderPgbouncerIni } from "../../../components/provisioning/render/pgbouncer";
import { renderManifest } from "../../../components/provisioning/render/release";
import { buildSteps, renderServiceEnv } from "../../../components/provisioning/steps";
import { digitalOceanRaw, withValue, type Raw } from "../../helpers/fixtures";
import { contextFor } from "./fixtures";

const POOLER = { enabled: true, image: "ghcr.io/example/pgbouncer:1.24.1", poolSize: 15, maxClientConnections: 300 };

/** The DigitalOcean fixture with the pooler on and the API connecting through it. */
function pooled(change: (r: Raw) => Raw = (r) => r): Raw {
    return change(withValue(withValue(digitalOceanRaw(), "database.pooler", POOLER), "services.api.databaseEnv", { pooler: true }));
}

function problemsOf(raw: Raw): { path: string; message: string }[] {
    try {
        validateConfig(raw);
    } catch (e) {
        assert.ok(e instanceof ConfigError, String(e));
        return e.problems;
    }
    return [];
}

type Service = Record<string, unknown> & { networks?: string[]; ports?: unknown; environment?: Record<string, string>; depends_on?: Record<string, unknown> };

function composeOf(config: StackConfig): { services: Record<string, Service> } {
    const dataPath = "/mnt/data";
    return parse(renderCompose(config, { project: projectName(config), paths: appPaths(projectName(config), dataPath) })) as never;
}

describe("database.pooler: schema", () => {
    it("a pooled stack validates, defaults filled in", () => {
        const { config } = validateConfig(withValue(withValue(digitalOceanRaw(), "database.pooler", { enabled: true }), "services.api.databaseEnv", { pooler: true }));
        assert.deepEqual(config.database.pooler, { enabled: true, image: "edoburu/pgbouncer:v1.24.1-p1", poolSize: 20, maxClientConnections: 200, serverIdleTimeoutSeconds: 600, memoryMb: 64 });
        assert.equal(config.services.api.databaseEnv?.pooler, true);
    });

    it("off by default, and every service connects directly by default", () => {
        const { config } = validateConfig(digitalOceanRaw());
        assert.equal(config.database.pooler.enabled, false);
        assert.equal(validateConfig(withValue(digitalOceanRaw(), "services.api.databaseEnv", {})).config.services.api.databaseEnv?.pooler, false);
    });

    const bad: [string, Raw, string, RegExp][] = [
        ["a service through a pooler that is off", withValue(digitalOceanRaw(), "services.api.databaseEnv", { pooler: true }), "services.api.databaseEnv.pooler", /database\.pooler\.enabled is false/],
        ["a pooler nobody uses", withValue(digitalOceanRaw(), "database.pooler", { enabled: true }), "database.pooler.enabled", /no service connects through the pooler/],
        ["a pool that leaves no room for direct connections", pooled((r) => withValue(r, "database.pooler.poolSize", 45)), "database.pooler.poolSize", /fewer than 10 of max_connections \(50\)/],
        ["fewer client connections than the pool", pooled((r) => withValue(r, "database.pooler.maxClientConnections", 5)), "database.pooler.maxClientConnections", /fewer client connections \(5\) than the pool holds \(15\)/],
        ["TLS required through the pooler", pooled((r) => withValue(r, "services.api.databaseEnv", { pooler: true, sslmode: "require" })), "services.api.databaseEnv.sslmode", /pooler serves the internal network without TLS/],
        ["a service named like the pooler", pooled((r) => withValue(r, "services.pgbouncer", { image: "ghcr.io/example/x:1", health: { command: ["true"] } })), "services.pgbouncer", /pooler's service name/],
        ["an unpinned pooler image", pooled((r) => withValue(r, "database.pooler.image", "not an image")), "database.pooler.image", /not a valid image reference/],
        ["a pool size of zero", pooled((r) => withValue(r, "database.pooler.poolSize", 0)), "database.pooler.poolSize", /at least 1/],
        ["an unknown pooler setting", pooled((r) => withValue(r, "database.pooler.poolMode", "session")), "database.pooler", /poolMode/],
        ["pooler memory not below the droplet's", pooled((r) => withValue(r, "database.pooler.memoryMb", 1024)), "database.pooler.memoryMb", /s-1vcpu-1gb: 1024 MiB/],
    ];
    for (const [what, raw, path, message] of bad) {
        it(`refuses ${what}, naming ${path}`, () => {
            const problems = problemsOf(raw);
            const at = problems.filter((p) => p.path === path || p.path.startsWith(`${path}.`));
            assert.ok(at.some((p) => message.test(p.message)), JSON.stringify(problems));
        });
    }

    it("max_connections raised makes room for a bigger pool", () => {
        assert.deepEqual(problemsOf(pooled((r) => withValue(withValue(r, "database.pooler.poolSize", 45), "database.settings", { max_connections: 55 }))), []);
    });
});

describe("database.pooler: rendered files", () => {
    const { config } = validateConfig(pooled());

    it("pgbouncer.ini: transaction pooling, SCRAM against the auth file, no socket, no admin console (exact)", () => {
        assert.equal(
            renderPgbouncerIni(config, "finances-prod-postgres", "finances-prod"),
            [
                "; PgBouncer of finances-prod, rendered by onebox from database.pooler; do not edit on the host.",
                "[databases]",
                "finances = host=finances-prod-postgres port=5432 dbname=finances",
                "",
                "[pgbouncer]",
                "listen_addr = 0.0.0.0",
                "listen_port = 6432",
                "unix_socket_dir =",
                "auth_type = scram-sha-256",
                "auth_file = /run/secrets/userlist.txt",
                "pool_mode = transaction",
                "default_pool_size = 15",
                "max_db_connections = 15",
                "reserve_pool_size = 0",
                "max_client_conn = 300",
                "server_idle_timeout = 600",
                "ignore_startup_parameters = extra_float_digits",
                "admin_users =",
                "stats_users =",
                "log_connections = 0",
                "log_disconnections = 0",
                "",
            ].join("\n"),
        );
    });

    it("R3: the secrets step writes the auth file with the role's SCRAM verifier, never the password, 0400 for the pooler's user", () => {
        const steps = buildSteps(config, contextFor(config));
        const secrets = steps.find((s) => s.name === "secrets");
        assert.ok(secrets?.secret, "the secrets step is secret (R4)");
        const auth = secrets.files.find((f) => f.path === "/etc/onebox/finances-prod/secrets/pgbouncer/userlist.txt");
        assert.ok(auth);
        assert.equal(auth.mode, "0400");
        assert.equal(auth.owner, "10002:10002");
        const password = "Zx9-pooler-password-q7Rk2Lw8Pn4T";
        const filled = substituteSecrets(auth.content, { POSTGRES_PASSWORD: password });
        assert.equal(filled, `"finances" "${scramVerifier(password)}"\n`);
        assert.ok(!filled.includes(password));
        // The same verifier deploy.sh sets in PostgreSQL: SCRAM pass-through needs them identical.
        const pgScram = secrets.files.find((f) => f.path === "/etc/onebox/finances-prod/secrets/postgres/postgres-password.scram");
        assert.ok(pgScram);
        assert.equal(substituteSecrets(pgScram.content, { POSTGRES_PASSWORD: password }), scramVerifier(password));
        const ini = secrets.files.find((f) => f.path === "/etc/onebox/finances-prod/secrets/pgbouncer/pgbouncer.ini");
        assert.equal(ini?.mode, "0400");
        assert.ok(secrets.directories.some((d) => d.path === "/etc/onebox/finances-prod/secrets/pgbouncer" && d.mode === "0500" && d.owner === "10002:10002"));
    });

    it("without the pooler, no pooler files, no manifest line, no compose service", () => {
        const { config: plain } = validateConfig(digitalOceanRaw());
        const secrets = buildSteps(plain, contextFor(plain)).find((s) => s.name === "secrets");
        assert.ok(!secrets?.files.some((f) => f.path.includes("pgbouncer")));
        assert.doesNotMatch(renderManifest(plain, { project: "finances-prod", paths: appPaths("finances-prod", "/mnt/data") }), /POOLER/);
        assert.equal(composeOf(plain).services.pgbouncer, undefined);
    });

    it("the manifest names the pooler for deploy.sh", () => {
        assert.match(renderManifest(config, { project: "finances-prod", paths: appPaths("finances-prod", "/mnt/data") }), /^POOLER_SERVICE=pgbouncer$/m);
    });
});

describe("database.pooler: compose", () => {
    const { config } = validateConfig(pooled());
    const { services } = composeOf(config);

    it("H8/H13: the pooler is on the database network only and publishes nothing", () => {
        const p = services.pgbouncer;
        assert.deepEqual(p.networks, ["database"]);
        assert.equal(p.ports, undefined);
        assert.equal(p.container_name, "finances-prod-pgbouncer");
    });

    it("H12: its own non-root user, read-only root, all capabilities dropped, limits; runs the rendered ini", () => {
        const p = services.pgbouncer;
        assert.equal(p.user, "10002:10002");
        assert.equal(p.read_only, true);
        assert.deepEqual(p.cap_drop, ["ALL"]);
        assert.equal(p.cap_add, undefined);
        assert.deepEqual(p.security_opt, ["no-new-privileges:true"]);
        assert.equal(p.mem_limit, "64m");
        assert.deepEqual(p.entrypoint, ["pgbouncer"]);
        assert.deepEqual(p.command, ["/run/secrets/pgbouncer.ini"]);
        assert.deepEqual(p.volumes, [{ type: "bind", source: "${ONEBOX_CONFIG_DIR:-/etc/onebox/finances-prod}/secrets/pgbouncer", target: "/run/secrets", read_only: true, bind: { create_host_path: false } }]);
        assert.deepEqual(p.depends_on, { postgres: { condition: "service_healthy" } });
        assert.match(JSON.stringify(p.healthcheck), /pg_isready -q -h 127\.0\.0\.1 -p 6432 -U finances -d finances/);
    });

    it("a changed ini changes the pooler's label (compose recreates it at deploy)", () => {
        const other = composeOf(validateConfig(pooled((r) => withValue(r, "database.pooler.poolSize", 10))).config).services.pgbouncer;
        assert.notDeepEqual(other.labels, services.pgbouncer.labels);
    });

    it("the service that opts in gets the pooler's host and port, and waits for it", () => {
        assert.equal(services.api.environment?.DATABASE_HOST, "finances-prod-pgbouncer");
        assert.equal(services.api.environment?.DATABASE_PORT, "6432");
        assert.equal(services.api.environment?.DATABASE_URL, "postgresql://finances@finances-prod-pgbouncer:6432/finances");
        assert.deepEqual(services.api.depends_on, { pgbouncer: { condition: "service_healthy" }, postgres: { condition: "service_healthy" } });
    });

    it("a service that does not opt in (migrations, session features) connects directly", () => {
        const twoRaw = pooled((r) => withValue(r, "services.migrate", { image: "ghcr.io/example/api:1.0.0", health: { command: ["true"] }, database: true }));
        const two = composeOf(validateConfig(twoRaw).config).services;
        assert.equal(two.migrate.environment?.DATABASE_HOST, "finances-prod-postgres");
        assert.equal(two.migrate.environment?.DATABASE_PORT, "5432");
        assert.deepEqual(two.migrate.depends_on, { postgres: { condition: "service_healthy" } });
    });

    it("the URL with the password (secretsAsEnv) points at the pooler too", () => {
        const { config: c } = validateConfig(pooled((r) => withValue(r, "services.api.secretsAsEnv", ["DATABASE_URL"])));
        assert.match(renderServiceEnv(c, "api"), /^DATABASE_URL='postgresql:\/\/finances:\{\{secret:POSTGRES_PASSWORD\|url\}\}@finances-prod-pgbouncer:6432\/finances'$/m);
    });

    it("the pooler's image is uploaded with the others", () => {
        assert.ok(composeImages(config).includes("ghcr.io/example/pgbouncer:1.24.1"));
    });
});
