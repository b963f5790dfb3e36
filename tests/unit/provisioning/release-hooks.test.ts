/**
 * Release hooks (deploy.release, preflight, smoke, backupBeforeRelease): what the schema
 * accepts and fills in, the manifest lines deploy.sh reads, and the files the deploy step
 * installs for them.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { configuredEnvNames } from "../../../components/config/release-hooks-schema";
import { BACKUP_LIB_DIR, appPaths } from "../../../components/provisioning/paths";
import { DUMP_VERIFY_LIB, releaseHookLines, renderManifest } from "../../../components/provisioning/render/release";
import { buildSteps, renderRelease } from "../../../components/provisioning/steps";
import { FAKE_CLOUDFLARE_RANGES } from "../../helpers/cloudflare";
import { configOf, contextFor, FAKE_SCRIPTS } from "./fixtures";

const paths = appPaths("finances-prod", "/mnt/data");
const ctx = { project: "finances-prod", paths };

const withHooks = configOf("finances", (r) => {
    r.deploy = {
        release: { service: "api", command: ["python", "-c", "print('a b')", "--flag=\"x\""], timeoutSeconds: 120 },
        preflight: { requiredEnv: { web: ["NODE_ENV"], api: ["JWT_SECRET", "DATABASE_URL", "COOKIE_DOMAIN"] } },
        smoke: [
            { host: "api.example.com", path: "/health?deep=1", bodyMatches: "\"status\": ?\"ok\"" },
            { host: "app.example.com", path: "/", status: 200, bodyContains: "Finances app", attempts: 2 },
            { host: "api.example.com", path: "/missing", status: 404 },
        ],
        backupBeforeRelease: true,
    };
});

describe("release hooks: schema", () => {
    test("defaults: no release command, no preflight, no smoke checks, no dump", () => {
        const d = configOf("finances").deploy;
        assert.equal(d.release, undefined);
        assert.equal(d.preflight, undefined);
        assert.deepEqual(d.smoke, []);
        assert.equal(d.backupBeforeRelease, false);
    });

    test("filled in: the release timeout and a smoke check's status and attempts", () => {
        const d = withHooks.deploy;
        assert.equal(d.release?.timeoutSeconds, 120);
        assert.equal(configOf("finances", (r) => (r.deploy = { release: { service: "api", command: ["migrate"] } })).deploy.release?.timeoutSeconds, 600);
        assert.deepEqual(d.smoke[0], { host: "api.example.com", path: "/health?deep=1", status: 200, bodyMatches: "\"status\": ?\"ok\"", attempts: 5 });
    });

    test("the variables a service gets: env, secrets (as NAME_FILE or NAME), the database's names, REDIS_URL", () => {
        const names = configuredEnvNames(
            { env: { A: "1" }, secrets: ["S1", "S2"], secretsAsEnv: ["S2"], database: true, redis: true },
            ["DATABASE_URL", null, "DATABASE_USER"],
        );
        assert.deepEqual([...names].sort(), ["A", "DATABASE_URL", "DATABASE_USER", "REDIS_URL", "S1", "S1_FILE", "S2"]);
        // Without database or redis their names are not given, whatever the contract says.
        assert.deepEqual([...configuredEnvNames({ env: {}, secrets: [], secretsAsEnv: [], database: false, redis: false }, ["DATABASE_URL"])], []);
    });
});

describe("release hooks: manifest", () => {
    test("no hook, no line: a stack without hooks keeps its release ids", () => {
        assert.deepEqual(releaseHookLines(configOf("finances"), ctx), []);
        assert.doesNotMatch(renderManifest(configOf("finances"), ctx), /^(PREFLIGHT|RELEASE_|SMOKE|DUMP_|SECRETS_DIR|DATABASE_NAME)/m);
    });

    test("every hook (exact): preflight per service in name order, the command as JSON, smoke checks in order", () => {
        assert.deepEqual(releaseHookLines(withHooks, ctx), [
            "PREFLIGHT=api JWT_SECRET",
            "PREFLIGHT=api DATABASE_URL",
            "PREFLIGHT=api COOKIE_DOMAIN",
            "PREFLIGHT=web NODE_ENV",
            "SECRETS_DIR=/etc/onebox/finances-prod/secrets",
            'RELEASE_SERVICE=api',
            'RELEASE_COMMAND=["python","-c","print(\'a b\')","--flag=\\"x\\""]',
            "RELEASE_TIMEOUT=120",
            "DATABASE_NAME=finances",
            `DUMP_VERIFY_LIB=${BACKUP_LIB_DIR}/lib.sh`,
            'SMOKE=api.example.com /health?deep=1 200 5 matches "status": ?"ok"',
            "SMOKE=app.example.com / 200 2 contains Finances app",
            "SMOKE=api.example.com /missing 404 5 any",
        ]);
        // The hook lines end the manifest, one value per line.
        assert.ok(renderManifest(withHooks, ctx).endsWith('SMOKE=api.example.com /missing 404 5 any\n'));
    });

    test("a hook is part of the release: changing the command makes a new release (its command runs once)", () => {
        const a = renderRelease(withHooks, "/mnt/data", FAKE_CLOUDFLARE_RANGES);
        const changed = structuredClone(withHooks);
        changed.deploy.release = { service: "api", command: ["migrate", "--all"], timeoutSeconds: 120 };
        assert.notEqual(renderRelease(changed, "/mnt/data", FAKE_CLOUDFLARE_RANGES).id, a.id);
        assert.equal(renderRelease(structuredClone(withHooks), "/mnt/data", FAKE_CLOUDFLARE_RANGES).id, a.id);
    });
});

describe("release hooks: deploy step", () => {

    test("backupBeforeRelease installs the backup library whose dump check it reuses", () => {
        const deploy = buildSteps(withHooks, contextFor(withHooks)).find((s) => s.name === "deploy");
        const lib = deploy?.files.find((f) => f.path === DUMP_VERIFY_LIB);
        assert.equal(lib?.content, FAKE_SCRIPTS.backup["lib.sh"]);
        assert.equal(lib?.mode, "0755");
        assert.ok(deploy?.directories.some((d) => d.path === BACKUP_LIB_DIR));
    });

    test("without it, the deploy step installs no backup file", () => {
        const deploy = buildSteps(configOf("finances"), contextFor(configOf("finances"))).find((s) => s.name === "deploy");
        assert.equal(deploy?.files.some((f) => f.path.startsWith(BACKUP_LIB_DIR)), false);
    });

    test("a missing lib.sh is an error, not a dump without its check", () => {
        const scripts = { ...FAKE_SCRIPTS, backup: { "backup.sh": "#!/usr/bin/env bash\n" } };
        assert.throws(() => buildSteps(withHooks, contextFor(withHooks, { scripts })), /lacks lib\.sh/);
    });
});
