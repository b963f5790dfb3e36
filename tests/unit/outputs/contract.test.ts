/**
 * The outputs contract: what buildOutputs publishes for each kind of stack,
 * that it never carries anything secret, and that outputs.schema.json is the
 * generated JSON Schema of the zod contract (the CI `--check`).
 */
import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { installMocks, unwrap } from "../../helpers/mocks";
import { digitalOceanRaw, existingRaw, lightsailRaw, withValue, type Raw } from "../../helpers/fixtures";
import { validateConfig } from "../../../components/config/load";
import { HOST_PROVIDERS } from "../../../components/config/schema";
import {
    BACKUP_STATUS_PATH,
    OUTPUTS_SCHEMA_VERSION,
    backupStatusHost,
    backupsOutputs,
    buildOutputs,
    checkOutputs,
    outputsJsonSchema,
    routedUrls,
    secretLeaks,
    stackOutputsSchema,
    versionsOutputs,
    type OutputsHost,
    type StackOutputs,
} from "../../../components/outputs/contract";
import { sampleOutputs } from "./sample";

const ROOT = path.resolve(__dirname, "../../..");
const HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyOfTheServer0000000000000000000000";

function host(overrides: Partial<OutputsHost> = {}): OutputsHost {
    return {
        provider: "digitalocean",
        ipv4Address: pulumi.output("203.0.113.20"),
        ipv6Address: pulumi.output<string | undefined>("2001:db8::10"),
        connection: { user: "deploy", port: 22, hostKey: pulumi.output(`${HOST_KEY}\n`) },
        ...overrides,
    };
}

const RECORDS = [
    { hostname: "app.example.com", type: "A" as const, content: "203.0.113.20", proxied: true },
    { hostname: "api.example.com", type: "A" as const, content: "203.0.113.20", proxied: true },
];

function configOf(raw: Raw) {
    return validateConfig(raw).config;
}

/** Every key path and string value of a JSON value. */
function walk(value: unknown, at = ""): { keys: string[]; strings: [string, string][] } {
    const out = { keys: [] as string[], strings: [] as [string, string][] };
    if (typeof value === "string") {
        out.strings.push([at, value]);
    } else if (Array.isArray(value)) {
        value.forEach((v, i) => {
            const w = walk(v, `${at}[${i}]`);
            out.keys.push(...w.keys);
            out.strings.push(...w.strings);
        });
    } else if (value !== null && typeof value === "object") {
        for (const [k, v] of Object.entries(value)) {
            out.keys.push(k);
            const w = walk(v, at ? `${at}.${k}` : k);
            out.keys.push(...w.keys);
            out.strings.push(...w.strings);
        }
    }
    return out;
}

before(async () => {
    await installMocks();
});

void describe("buildOutputs", () => {
    void it("DigitalOcean stack behind Cloudflare: exactly the expected contract", async () => {
        const out = await unwrap(buildOutputs({ config: configOf(digitalOceanRaw()), host: host(), dnsRecords: RECORDS }));
        assert.deepEqual(out, sampleOutputs());
        assert.equal(out.schemaVersion, OUTPUTS_SCHEMA_VERSION);
    });

    void it("the program version is the one in package.json", async () => {
        const out = await unwrap(buildOutputs({ config: configOf(digitalOceanRaw()), host: host() }));
        const pkg = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")) as { version: string };
        assert.equal(out.versions.program, pkg.version);
    });

    void it("holds no secrets: no password/secret/privateKey/token key, no PEM, and stays a readable (non-secret) output", async () => {
        const built = buildOutputs({ config: configOf(digitalOceanRaw()), host: host(), dnsRecords: RECORDS });
        const { keys, strings } = walk(await unwrap(built));
        assert.ok(keys.length > 20, "walked the whole contract");
        assert.deepEqual(keys.filter((k) => /password|secret|private|token|credential/i.test(k)), []);
        assert.deepEqual(strings.filter(([, v]) => /-----BEGIN|PRIVATE KEY|AGE-SECRET-KEY/.test(v)), []);
        // The digitalOcean fixture has a user-supplied SMTP_PASSWORD: its value must not leak.
        assert.ok(!JSON.stringify(await unwrap(built)).includes("Vq3-smtp-Hx9T2pLw7eRk"));
        assert.equal(await pulumi.isSecret(built), false);
    });

    void it("existing server behind Traefik: one hostname, paths longest first, no DNS, custom endpoint, no IPv6", async () => {
        const out = await unwrap(
            buildOutputs({
                config: configOf(existingRaw()),
                host: host({ provider: "existing", ipv4Address: "203.0.113.50", ipv6Address: undefined, connection: { user: "deploy", port: 2222, hostKey: HOST_KEY } }),
            }),
        );
        assert.deepEqual(out.urls, [
            {
                hostname: "fingerflow.example.net",
                url: "https://fingerflow.example.net",
                routes: [
                    { path: "/health", service: "backend" },
                    { path: "/auth", service: "backend" },
                    { path: "/api", service: "backend" },
                    { path: "/", service: "frontend" },
                ],
            },
        ]);
        assert.deepEqual(out.dns, []);
        assert.deepEqual(out.host, { provider: "existing", ipv4: "203.0.113.50", ipv6: null, sshUser: "deploy", sshPort: 2222, sshHostKey: HOST_KEY });
        assert.deepEqual(out.backups, {
            bucket: "ff-backups",
            region: "eu-central-003",
            prefix: "fingerflow/prod",
            endpoint: "https://s3.eu-central-003.backblazeb2.com",
            schedule: "30 3 * * *",
            retentionDays: 7,
            weeklyRetentionWeeks: 4,
            statusUrl: "https://fingerflow.example.net/healthz/backup",
            heartbeat: false,
            statusFile: "/var/lib/onebox/fingerflow-prod/status/backup.json",
        });
    });

    void it("Lightsail stack: retention from config, postgres version, AAAA records carried through", async () => {
        const out = await unwrap(
            buildOutputs({
                config: configOf(lightsailRaw()),
                host: host({ provider: "lightsail", ipv4Address: pulumi.output("198.51.100.20") }),
                dnsRecords: [
                    { hostname: "api.chronos.example.org", type: "A", proxied: true },
                    { hostname: "api.chronos.example.org", type: "AAAA", proxied: true },
                ],
                databaseCaCertPem: "-----BEGIN CERTIFICATE-----\nfake-ca\n-----END CERTIFICATE-----\n",
            }),
        );
        assert.equal(out.backups?.retentionDays, 30);
        // Published PostgreSQL: where to connect, how to verify it; never the password.
        assert.deepEqual(out.database, {
            host: "198.51.100.20",
            port: 5432,
            name: "app",
            user: "app",
            sslmode: "verify-full",
            caCertificate: "-----BEGIN CERTIFICATE-----\nfake-ca\n-----END CERTIFICATE-----",
            allowedCidrs: ["76.76.21.0/24", "198.51.100.7/32"],
        });
        assert.equal(out.versions.postgres, 17);
        assert.deepEqual(out.versions.images, { api: "ghcr.io/chronos/api:2.3.1" });
        assert.deepEqual(out.dns.map((d) => d.type), ["A", "AAAA"]);
    });

    void it("backups is null when there are none or they are off", () => {
        assert.notEqual(backupsOutputs(configOf(digitalOceanRaw())), null);
        assert.equal(backupsOutputs(configOf(withValue(digitalOceanRaw(), "backups", undefined))), null);
        assert.equal(backupsOutputs(configOf(withValue(digitalOceanRaw(), "backups.enabled", false))), null);
    });

    void it("versions.postgres is null without a database", () => {
        let raw = withValue(digitalOceanRaw(), "backups", undefined);
        raw = withValue(withValue(raw, "services.api.database", false), "database.enabled", false);
        assert.equal(versionsOutputs(configOf(raw)).postgres, null);
        assert.equal(versionsOutputs(configOf(digitalOceanRaw())).postgres, 16);
    });
});

void describe("backup status URL", () => {
    const cases: [string, Raw, string | undefined][] = [
        ["host of the database service, even when it is not the first route", digitalOceanRaw(), "api.example.com"],
        [
            "first route when no routed service uses the database",
            withValue(withValue(digitalOceanRaw(), "services.api.database", false), "database.enabled", false),
            "app.example.com",
        ],
        // Without routes nothing serves it: the heartbeat is required instead (a database-only server).
        ["none without routes", withValue(withValue(digitalOceanRaw(), "routes", []), "backups.heartbeatUrl", "https://hc.example.com/ping/abc"), undefined],
    ];
    for (const [what, raw, expected] of cases) {
        void it(what, () => {
            const config = configOf(withValue(raw, "services.api.volumes", [{ name: "uploads", mountPath: "/data" }]));
            assert.equal(backupStatusHost(config), expected);
            assert.equal(backupsOutputs(config)?.statusUrl, expected ? `https://${expected}${BACKUP_STATUS_PATH}` : null);
            assert.equal(backupsOutputs(config)?.heartbeat, expected === undefined, "the heartbeat is how a stack without routes reports");
            assert.equal(backupsOutputs(config)?.statusFile, "/var/lib/onebox/finances-prod/status/backup.json");
        });
    }

    void it("is served at /healthz/backup", () => {
        assert.equal(BACKUP_STATUS_PATH, "/healthz/backup");
    });
});

void describe("routedUrls", () => {
    void it("groups routes by hostname in first-seen order", () => {
        const urls = routedUrls({
            routes: [
                { host: "b.example.com", path: "/", service: "web" },
                { host: "a.example.com", path: "/", service: "api" },
                { host: "b.example.com", path: "/api", service: "api" },
            ],
        });
        assert.deepEqual(urls.map((u) => [u.url, u.routes.map((r) => r.path)]), [
            ["https://b.example.com", ["/api", "/"]],
            ["https://a.example.com", ["/"]],
        ]);
    });
});

void describe("secretLeaks and checkOutputs", () => {
    void it("a clean contract has no leaks and passes", () => {
        assert.deepEqual(secretLeaks(sampleOutputs()), []);
        assert.deepEqual(checkOutputs(sampleOutputs()), sampleOutputs());
    });

    const leaks: [string, (o: Record<string, unknown>) => void, string][] = [
        ["a privateKey field", (o) => ((o.host as Record<string, unknown>).privateKey = "x"), "host.privateKey"],
        ["a databasePassword field", (o) => (o.databasePassword = "x"), "databasePassword"],
        ["a token field", (o) => ((o.backups as Record<string, unknown>).apiToken = "x"), "backups.apiToken"],
        ["a secretAccessKey field", (o) => ((o.backups as Record<string, unknown>).secretAccessKey = "x"), "backups.secretAccessKey"],
        ["a PEM private key", (o) => ((o.host as Record<string, unknown>).sshHostKey = "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----"), "host.sshHostKey"],
        ["an EC private key", (o) => ((o.versions as { images: Record<string, string> }).images.web = "-----BEGIN EC PRIVATE KEY-----\nx\n-----END EC PRIVATE KEY-----"), "versions.images.web"],
        ["an age identity", (o) => ((o.versions as { images: Record<string, string> }).images.web = "AGE-SECRET-KEY-1XYZ"), "versions.images.web"],
    ];
    for (const [what, tamper, at] of leaks) {
        void it(`${what} is found at ${at} and refused`, () => {
            const o = sampleOutputs() as unknown as Record<string, unknown>;
            tamper(o);
            assert.deepEqual(secretLeaks(o), [at]);
            assert.throws(() => checkOutputs(o as unknown as StackOutputs), new RegExp(`must not contain secrets; remove: ${at.replace(/[.[\]]/g, "\\$&")}`));
        });
    }

    void it("a certificate is public: a published database's CA certificate passes", () => {
        const o = sampleOutputs();
        o.database = { host: "198.51.100.20", port: 5432, name: "app", user: "app", sslmode: "verify-full", caCertificate: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", allowedCidrs: ["198.51.100.7/32"] };
        assert.deepEqual(secretLeaks(o), []);
        assert.deepEqual(checkOutputs(o), o);
    });

    void it("a value that breaks the schema is refused with its path", () => {
        const o = sampleOutputs();
        o.urls[1].url = "http://api.example.com";
        assert.throws(() => checkOutputs(o), /must be an https:\/\/ URL[\s\S]*at urls\[1\]\.url/);
    });
});

void describe("outputs.schema.json", () => {
    const script = path.join(ROOT, "scripts/generate-outputs-schema.ts");
    const runScript = (...args: string[]) =>
        spawnSync(process.execPath, ["--import", "tsx", script, ...args], { cwd: ROOT, encoding: "utf8" });

    void it("the committed file is the generated schema", () => {
        assert.equal(readFileSync(path.join(ROOT, "outputs.schema.json"), "utf8"), outputsJsonSchema());
    });

    void it("`--check` passes on the committed file (what CI runs)", () => {
        const r = runScript("--check");
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.stdout, /up to date/);
    });

    void it("`--check` fails on a stale file and says how to fix it", () => {
        const dir = mkdtempSync(path.join(tmpdir(), "onebox-schema-"));
        const stale = path.join(dir, "outputs.schema.json");
        writeFileSync(stale, outputsJsonSchema().replace('"const": 1', '"const": 0'));
        const r = runScript("--check", "--file", stale);
        assert.equal(r.status, 1);
        assert.match(r.stderr, /out of date; run `npm run schema:outputs`/);
        const missing = runScript("--check", "--file", path.join(dir, "absent.json"));
        assert.equal(missing.status, 1);
        assert.match(missing.stderr, /missing/);
    });

    void it("writing produces the generated schema", () => {
        const file = path.join(mkdtempSync(path.join(tmpdir(), "onebox-schema-")), "out.json");
        const r = runScript("--file", file);
        assert.equal(r.status, 0, r.stderr);
        assert.equal(readFileSync(file, "utf8"), outputsJsonSchema());
    });

    void it("pins schemaVersion, lets consumers ignore added fields, and names no secret-like property", () => {
        const schema = JSON.parse(outputsJsonSchema()) as { properties: { schemaVersion: unknown }; additionalProperties?: unknown };
        assert.deepEqual(schema.properties.schemaVersion, { type: "number", const: OUTPUTS_SCHEMA_VERSION });
        assert.equal(schema.additionalProperties, undefined);
        const { keys } = walk(schema);
        assert.deepEqual(keys.filter((k) => /password|secret|private|token/i.test(k)), []);
    });

    void it("the zod schema accepts the sample and rejects a wrong version", () => {
        assert.equal(stackOutputsSchema.safeParse(sampleOutputs()).success, true);
        assert.equal(stackOutputsSchema.safeParse({ ...sampleOutputs(), schemaVersion: 2 }).success, false);
    });
});

describe("outputs contract: host providers", () => {
    it("the contract's provider enum lists exactly the providers the configuration accepts", () => {
        const shape = stackOutputsSchema.shape.host;
        const providers = (shape as unknown as { shape: { provider: { options: string[] } } }).shape.provider.options;
        assert.deepEqual([...providers].sort(), [...HOST_PROVIDERS].sort());
    });
});
