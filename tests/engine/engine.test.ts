/**
 * The real Pulumi engine (CLI built by tests/engine/toolchain.sh) on the part
 * of the program it can run here: the generated secrets (random), the
 * published database's TLS (tls), the existing-server host component and the
 * outputs contract, on a local file backend with a passphrase, plus README's
 * consumer example (examples/consumer) reading the outputs through a
 * StackReference.
 *
 * What is NOT covered, and why (see tests/engine/toolchain.sh): the module
 * proxy refuses the command provider and the Node.js language host, so the
 * host steps (`@pulumi/command`) cannot run under the engine here, and the
 * program runs as an inline program of the automation API (which brings its
 * own language server) instead of `pulumi up` on index.ts.
 *
 * Run: `npm run test:engine` (builds the library for the consumer example, and
 * builds or reuses the cached toolchain).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { LocalWorkspace, PulumiCommand, type Stack } from "@pulumi/pulumi/automation";
import { parse } from "yaml";
import { AppSecrets, buildOutputs, DatabaseTls, ExistingHost, rotationLabel, validateConfig, type StackOutputs } from "../../components";
import { parseOneboxOutputs } from "../../components/outputs/consumer";

const ROOT = path.resolve(__dirname, "../..");
/** README's consumer example, run as the other team would run it. */
const CONSUMER = path.join(ROOT, "examples/consumer");
const BIN = process.env.ONEBOX_ENGINE_BIN ?? execFileSync("bash", [path.join(ROOT, "tests/engine/toolchain.sh")], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] }).trim().split("\n").pop()!;
const work = fs.mkdtempSync(path.join(os.tmpdir(), "onebox-engine-"));
const PROJECT = "onebox-engine";
const PASSPHRASE = "engine-suite-passphrase-Jq7";
const USER_SECRET = "user-Supplied-Smtp-Secret-8Kq2Xw5";
const DEPLOY_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nengine-suite-deploy-key-Zt4Pw9\n-----END OPENSSH PRIVATE KEY-----\n";
const HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEngineSuiteHostKey000000000000000000000000";

const env = {
    PATH: `${BIN}:${process.env.PATH ?? "/usr/bin:/bin"}`,
    PULUMI_BACKEND_URL: `file://${path.join(work, "state")}`,
    PULUMI_CONFIG_PASSPHRASE: PASSPHRASE,
    PULUMI_HOME: path.join(work, "home"),
    PULUMI_SKIP_UPDATE_CHECK: "true",
    PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
};

/** The stack configuration of the suite: an existing server with PostgreSQL published over TLS. */
function stackConfig(rotation: number) {
    return validateConfig(
        {
            app: { name: "shop", environment: "engine" },
            host: { provider: "existing", address: "203.0.113.10", user: "root", hostKey: HOST_KEY, sshAllowedCidrs: ["198.51.100.0/24"] },
            dns: { provider: "none", zone: "shop.example.test" },
            tls: { mode: "internal" },
            services: { api: { image: "ghcr.io/example/api:1.0.0", port: 8000, health: { path: "/health" }, database: true, secrets: ["APP_SECRET", "SMTP_PASSWORD"] } },
            routes: [{ host: "api.shop.example.test", service: "api" }],
            database: { allowedCidrs: ["198.51.100.0/24"], passwordRotationDays: rotation },
            generatedSecrets: ["APP_SECRET"],
            secrets: { SMTP_PASSWORD: USER_SECRET },
        },
        { deployKeyElsewhere: true },
    ).config;
}

/** The program, as index.ts wires it, without the host steps (no command provider here). */
function program(rotation: { days: number; at: Date }) {
    return () => {
        const config = stackConfig(rotation.days);
        const cfg = new pulumi.Config();
        const secrets = new AppSecrets("secrets", {
            generatedSecrets: config.generatedSecrets,
            userSecrets: { SMTP_PASSWORD: cfg.requireSecret("smtpPassword") },
            databasePassword: true,
            databasePasswordRotation: rotationLabel(config.database.passwordRotationDays, rotation.at),
        });
        if (config.host.provider !== "existing") throw new Error("unreachable");
        const host = new ExistingHost("server", { host: config.host, privateKey: cfg.requireSecret("sshPrivateKey") });
        const databaseTls = new DatabaseTls("database-tls", { app: config.app, address: host.ipv4Address });
        return Promise.resolve({
            onebox: buildOutputs({ config, host, databaseCaCertPem: databaseTls.caCertPem }),
            databasePassword: secrets.databasePassword,
            appSecret: secrets.values.APP_SECRET,
            databaseKey: databaseTls.privateKeyPem,
        });
    };
}

const ROTATION_DAYS = 90;
/** One instant, so the rotation label is the same for every run unless a test moves it. */
const AT = new Date("2026-11-01T00:00:00Z");
let pulumiCommand: PulumiCommand;
let stack: Stack;

async function openStack(name: string, fn: () => Promise<Record<string, unknown>>): Promise<Stack> {
    const s = await LocalWorkspace.createOrSelectStack({ stackName: name, projectName: PROJECT, program: fn }, { pulumiCommand, workDir: work, envVars: env });
    await s.setConfig("sshPrivateKey", { value: DEPLOY_KEY, secret: true });
    await s.setConfig("smtpPassword", { value: USER_SECRET, secret: true });
    return s;
}

function cli(args: string[]): { status: number; out: string } {
    try {
        const out = execFileSync(path.join(BIN, "pulumi"), args, { cwd: work, env: { ...process.env, ...env }, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
        return { status: 0, out };
    } catch (e) {
        const err = e as { status: number; stdout: string; stderr: string };
        return { status: err.status, out: `${err.stdout}${err.stderr}` };
    }
}

before(async () => {
    fs.mkdirSync(path.join(work, "state"), { recursive: true });
    fs.writeFileSync(path.join(work, "Pulumi.yaml"), `name: ${PROJECT}\nruntime: nodejs\n`);
    pulumiCommand = await PulumiCommand.get({ root: path.dirname(BIN), skipVersionCheck: false });
    stack = await openStack("engine", program({ days: ROTATION_DAYS, at: AT }));
});

after(() => {
    fs.rmSync(work, { recursive: true, force: true });
});

describe("engine: preview, up, no-op, export, refresh, consumer, rotation, destroy", { concurrency: false }, () => {
    let outputs: StackOutputs;

    it("the CLI is the pinned build", () => {
        assert.equal(pulumiCommand.version?.toString(), "3.276.0");
    });

    it("preview of the new stack lists the resources to create and succeeds", async () => {
        const pv = await stack.preview();
        const counts = pv.changeSummary;
        // stack + 3 components + 2 passwords + DatabaseTls's 2 keys, CA, CSR and certificate
        assert.equal(counts.create, 1 + 3 + 2 + 5, JSON.stringify(counts));
    });

    it("up creates them; the outputs contract parses with the consumer's own reader", async () => {
        const up = await stack.up();
        assert.equal(up.summary.result, "succeeded");
        outputs = parseOneboxOutputs(up.outputs.onebox.value, "engine");
        assert.equal(outputs.host.ipv4, "203.0.113.10");
        assert.equal(outputs.host.sshHostKey, HOST_KEY);
        assert.equal(outputs.database?.sslmode, "verify-full");
        assert.match(outputs.database?.caCertificate ?? "", /^-----BEGIN CERTIFICATE-----/);
        assert.equal(up.outputs.databasePassword.secret, true, "the database password output is secret");
        assert.equal(up.outputs.appSecret.secret, true);
    });

    it("a second preview changes nothing, and `pulumi preview --expect-no-changes` passes", async () => {
        const pv = await stack.preview();
        assert.deepEqual(Object.keys(pv.changeSummary), ["same"]);
        // The CLI's own flag fails the command on any change (the PR-check use).
        const up = await stack.up({ expectNoChanges: true });
        assert.equal(up.summary.result, "succeeded");
    });

    it("R6: the exported state holds no secret in plain text", async () => {
        // `pulumi stack export` as a user runs it (the automation API's exportStack
        // adds --show-secrets), and the state files on the backend as they lie on disk.
        const exported = cli(["stack", "export", "--stack", "engine"]);
        assert.equal(exported.status, 0, exported.out);
        const files = fs.readdirSync(path.join(work, "state"), { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".json"));
        assert.ok(files.length > 0, "the backend holds state files");
        const text = [exported.out, ...files.map((f) => fs.readFileSync(path.join(work, "state", f), "utf8"))].join("\n");
        const up = await stack.outputs();
        const values: [string, string][] = [
            ["database password", String(up.databasePassword.value)],
            ["generated APP_SECRET", String(up.appSecret.value)],
            ["database TLS private key", String(up.databaseKey.value).split("\n")[1]],
            ["user secret", USER_SECRET],
            ["deploy key", "engine-suite-deploy-key-Zt4Pw9"],
        ];
        for (const [what, value] of values) {
            assert.ok(value.length >= 16, `${what} is too short to search for`);
            const at = text.indexOf(value);
            assert.equal(at, -1, `${what} is in the state in plain text: ...${text.slice(Math.max(0, at - 300), at + 40)}`);
        }
        assert.match(text, /"4dabf18193072939515e22adb298388d":\s*"1b47061264138c4ac30d75fd1eb44270",\s*"ciphertext"/, "secrets are stored as ciphertext objects");
    });

    it("refresh of the unchanged stack reports no change", async () => {
        const r = await stack.refresh();
        assert.equal(r.summary.result, "succeeded");
        assert.deepEqual(Object.keys(r.summary.resourceChanges ?? {}), ["same"]);
    });

    it("README's consumer example (examples/consumer) reads the outputs through a StackReference", async () => {
        // The example as a project of its own (its Pulumi.yaml, so its config namespace), its
        // index.ts as the program; "onebox" resolves to the built library (npm run build).
        const dir = path.join(work, "consumer");
        fs.mkdirSync(dir, { recursive: true });
        fs.copyFileSync(path.join(CONSUMER, "Pulumi.yaml"), path.join(dir, "Pulumi.yaml"));
        const project = (parse(fs.readFileSync(path.join(CONSUMER, "Pulumi.yaml"), "utf8")) as { name: string }).name;
        const entry = require.resolve(path.join(CONSUMER, "index.ts"));
        const consumer = await LocalWorkspace.createOrSelectStack(
            {
                stackName: "consumer",
                projectName: project,
                program: () => {
                    // A module runs its top level once per process: load it afresh for this program.
                    delete require.cache[entry];
                    // eslint-disable-next-line @typescript-eslint/no-require-imports
                    return Promise.resolve({ ...(require(entry) as Record<string, unknown>) });
                },
            },
            { pulumiCommand, workDir: dir, envVars: env },
        );
        await consumer.setConfig("oneboxStack", { value: `organization/${PROJECT}/engine` });
        const up = await consumer.up();
        assert.equal(up.summary.result, "succeeded");
        assert.deepEqual(Object.keys(up.outputs).sort(), ["apiUrl", "database", "knownHost", "schemaVersion"]);
        assert.equal(up.outputs.apiUrl.value, "https://api.shop.example.test");
        assert.equal(up.outputs.knownHost.value, `203.0.113.10 ${HOST_KEY}`);
        assert.deepEqual(up.outputs.database.value, { host: "203.0.113.10", port: outputs.database?.port, sslmode: "verify-full" });
        assert.equal(typeof outputs.database?.port, "number");
        assert.equal(up.outputs.schemaVersion.value, outputs.schemaVersion);

        await consumer.destroy();
        await consumer.workspace.removeStack("consumer");
    });

    it("docs/RUNBOOK.md's rotation command, with this stack's names, replaces the database password and nothing else", async () => {
        // The runbook writes URNs with <stack> and <project>; the engine must accept the shape as is.
        const runbook = fs.readFileSync(path.join(ROOT, "docs/RUNBOOK.md"), "utf8");
        const m = /pulumi up --replace '(urn:pulumi:<stack>::<project>::[^']*::secrets-database-password)'/.exec(runbook);
        assert.ok(m, "the runbook tells how to rotate the database password now");
        const urn = m[1].replace("<stack>", "engine").replace("<project>", PROJECT);
        const pv = await stack.preview({ replace: [urn], diff: true });
        assert.equal(pv.changeSummary.replace, 1, JSON.stringify(pv.changeSummary));
        assert.match(pv.stdout, /secrets-database-password/);
        assert.equal(pv.changeSummary.create ?? 0, 0);
        assert.equal(pv.changeSummary.delete ?? 0, 0);
    });

    it("a new rotation period replaces the database password and nothing else", async () => {
        const next = new Date(AT.getTime() + ROTATION_DAYS * 86_400_000);
        const rotated = await openStack("engine", program({ days: ROTATION_DAYS, at: next }));
        const pv = await rotated.preview({ diff: true });
        assert.equal(pv.changeSummary.replace, 1, JSON.stringify(pv.changeSummary));
        assert.match(pv.stdout, /secrets-database-password/);
        assert.equal(pv.changeSummary.create ?? 0, 0);
        assert.equal(pv.changeSummary.delete ?? 0, 0);
    });

    it("cli: `pulumi stack ls` sees the stack on the file backend (no cloud login)", () => {
        const r = cli(["stack", "ls", "--non-interactive"]);
        assert.equal(r.status, 0, r.out);
        assert.match(r.out, /engine/);
    });

    it("destroy removes every resource of the stack", async () => {
        const d = await stack.destroy();
        assert.equal(d.summary.result, "succeeded");
        const state = await stack.exportStack();
        assert.equal((state.deployment as { resources?: unknown[] }).resources?.length ?? 0, 0);
    });
});
