/**
 * database.settings: known PostgreSQL parameters with typed values and units, the ones
 * the stack relies on refused, memory checks against the container and the server, and
 * the exact `-c` arguments the compose file gives PostgreSQL.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { ConfigError, validateConfig } from "../../../components/config/load";
import { postgresSettingArgs, RESERVED_POSTGRES_SETTINGS } from "../../../components/config/postgres-settings";
import { composeModel, projectName } from "../../../components/provisioning/render/compose";
import { appPaths } from "../../../components/provisioning/paths";
import type { StackConfig } from "../../../components/config/schema";
import { digitalOceanRaw, existingRaw, withValue, type Raw } from "../../helpers/fixtures";

function problemsOf(raw: Raw): { path: string; message: string }[] {
    try {
        validateConfig(raw);
    } catch (e) {
        assert.ok(e instanceof ConfigError, `expected ConfigError, got ${String(e)}`);
        return e.problems;
    }
    return [];
}

const withSettings = (settings: Record<string, unknown>, raw: Raw = digitalOceanRaw()) => withValue(raw, "database.settings", settings);

function postgresCommand(config: StackConfig): string[] {
    const dataPath = "/mnt/data";
    const model = composeModel(config, { project: projectName(config), paths: appPaths(projectName(config), dataPath) }) as { services: { postgres: { command: string[]; pids_limit: number } } };
    return model.services.postgres.command;
}

describe("database.settings: values", () => {
    const good: [string, unknown][] = [
        ["work_mem", "2MB"],
        ["shared_buffers", "128MB"],
        ["max_connections", 60],
        ["log_min_duration_statement", "500ms"],
        ["log_min_duration_statement", -1],
        ["statement_timeout", "30s"],
        ["statement_timeout", 0],
        ["idle_in_transaction_session_timeout", "5min"],
        ["log_connections", true],
        ["log_lock_waits", false],
        ["random_page_cost", 1.1],
        ["log_temp_files", "10MB"],
        ["log_statement", "ddl"],
        ["checkpoint_completion_target", 0.9],
    ];
    for (const [name, value] of good) {
        it(`accepts ${name}: ${JSON.stringify(value)}`, () => {
            assert.deepEqual(problemsOf(withSettings({ [name]: value })), []);
        });
    }

    const bad: [string, unknown, RegExp][] = [
        ["work_mem", "8mb", /size with a unit \(kB, MB, GB, TB; case matters\)/],
        ["work_mem", 8192, /bare number would mean PostgreSQL's own unit/],
        ["work_mem", "10GB", /between 64kB and 2097152kB/],
        ["max_connections", "100", /whole number, not "100"/],
        ["max_connections", 2.5, /whole number/],
        ["max_connections", 2, /between 5 and 1000/],
        ["log_min_duration_statement", "1 s", /duration with a unit/],
        ["log_min_duration_statement", -2, /or -1 for off/],
        ["statement_timeout", -1, /or 0 for off/],
        ["log_connections", "yes", /true or false, not "yes"/],
        ["random_page_cost", "1.1", /is a number, not "1.1"/],
        ["random_page_cost", -1, /between 0 and 1000/],
        ["log_statement", "everything", /one of none, ddl, mod, all/],
        ["checkpoint_timeout", "5s", /between 30000ms/],
    ];
    for (const [name, value, message] of bad) {
        it(`refuses ${name}: ${JSON.stringify(value)}, naming database.settings.${name}`, () => {
            const problems = problemsOf(withSettings({ [name]: value }));
            assert.ok(problems.length > 0);
            assert.deepEqual(problems.map((p) => p.path), problems.map(() => `database.settings.${name}`), JSON.stringify(problems));
            assert.match(problems[0].message, message);
        });
    }

    it("refuses an unknown name, listing the known ones", () => {
        const [p] = problemsOf(withSettings({ work_memory: "8MB" }));
        assert.equal(p.path, "database.settings.work_memory");
        assert.match(p.message, /not a PostgreSQL setting onebox knows.*known: .*work_mem/);
    });

    it("refuses every setting the stack relies on, saying why", () => {
        for (const name of [...Object.keys(RESERVED_POSTGRES_SETTINGS), "ssl", "ssl_min_protocol_version", "ssl_ciphers"]) {
            const problems = problemsOf(withSettings({ [name]: "x" }));
            assert.equal(problems.length, 1, name);
            assert.equal(problems[0].path, `database.settings.${name}`);
            assert.match(problems[0].message, new RegExp(`^${name} cannot be set: .{20,}`));
        }
        assert.match(problemsOf(withSettings({ archive_command: "true" }))[0].message, /point-in-time recovery/);
        assert.match(problemsOf(withSettings({ listen_addresses: "*" }))[0].message, /internal network/);
    });
});

describe("database.settings: memory and version", () => {
    it("shared_buffers must be below the container's memory", () => {
        const [p] = problemsOf(withSettings({ shared_buffers: "256MB" }));
        assert.equal(p.path, "database.settings.shared_buffers");
        assert.match(p.message, /not below the database container's memory \(database\.memoryMb: 256 MiB\)/);
        assert.deepEqual(problemsOf(withSettings({ shared_buffers: "255MB" })), []);
    });

    it("max_connections × work_mem must stay below the container's memory", () => {
        // 50 × 4 MiB (PostgreSQL's default work_mem) = 200 MiB fits 256 MiB; 50 × 8 MiB does not.
        const [p] = problemsOf(withSettings({ work_mem: "8MB" }));
        assert.equal(p.path, "database.settings.work_mem");
        assert.match(p.message, /max_connections \(50\) × work_mem \(8 MiB\) = 400 MiB is not below the database container's memory \(database\.memoryMb: 256 MiB\)/);
        const [q] = problemsOf(withSettings({ max_connections: 64 }));
        assert.equal(q.path, "database.settings.max_connections");
        assert.deepEqual(problemsOf(withSettings({ max_connections: 63 })), []);
        assert.deepEqual(problemsOf(withValue(withSettings({ work_mem: "8MB" }), "database.memoryMb", 512)), []);
    });

    it("effective_cache_size is judged against the server's memory where it is known", () => {
        const [p] = problemsOf(withSettings({ effective_cache_size: "2GB" }));
        assert.equal(p.path, "database.settings.effective_cache_size");
        assert.match(p.message, /host\.size s-1vcpu-1gb: 1024 MiB/);
        // An existing server's memory is unknown: not judged.
        assert.deepEqual(problemsOf(withSettings({ effective_cache_size: "2GB" }, existingRaw())), []);
    });

    it("a setting newer than database.version is refused", () => {
        const raw = withValue(withSettings({ idle_session_timeout: "10min" }), "database.version", 13);
        const [p] = problemsOf(raw);
        assert.equal(p.path, "database.settings.idle_session_timeout");
        assert.match(p.message, /from PostgreSQL 14; database\.version is 13/);
    });

    it("settings without the database are refused", () => {
        const raw = withValue(withValue(withValue(withSettings({ work_mem: "1MB" }), "database.enabled", false), "services.api.database", false), "backups", undefined);
        const problems = problemsOf(raw);
        assert.ok(problems.some((p) => p.path === "database.settings" && /database\.enabled is false/.test(p.message)), JSON.stringify(problems));
    });
});

describe("database.settings: the server's command line", () => {
    it("defaults keep every existing stack as it was", () => {
        assert.deepEqual(postgresSettingArgs({ memoryMb: 256, settings: {} }), ["shared_buffers=64MB", "max_connections=50"]);
    });

    it("settings replace the defaults and follow them by name; booleans as on/off", () => {
        const { config } = validateConfig(withValue(withSettings({ log_lock_waits: true, max_connections: 40, jit: false, work_mem: "2MB", shared_buffers: "96MB" }), "database.memoryMb", 256));
        assert.deepEqual(postgresCommand(config), [
            "postgres",
            "-c",
            "shared_buffers=96MB",
            "-c",
            "max_connections=40",
            "-c",
            "jit=off",
            "-c",
            "log_lock_waits=on",
            "-c",
            "work_mem=2MB",
        ]);
    });

    it("the pids limit grows with max_connections (one process per connection, H12)", () => {
        const dataPath = "/mnt/data";
        const pids = (settings: Record<string, unknown>) => {
            const { config } = validateConfig(withValue(withSettings(settings), "database.memoryMb", 900));
            const m = composeModel(config, { project: projectName(config), paths: appPaths(projectName(config), dataPath) }) as { services: { postgres: { pids_limit: number } } };
            return m.services.postgres.pids_limit;
        };
        assert.equal(pids({}), 256);
        assert.equal(pids({ max_connections: 400, work_mem: "1MB" }), 500);
    });
});
