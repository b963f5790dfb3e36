/**
 * HostProvisioner under recording mocks: R1-R5 asserted on the recorded
 * `command:remote:Command` inputs (and, for resource options, through a
 * transformation that sees them).
 */
import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import * as pulumi from "@pulumi/pulumi";
import { FAKE_CLOUDFLARE_RANGES, GET_IP_RANGES, ipRangesHandler } from "../../helpers/cloudflare";
import { installMocks, unwrap, type RecordedResource, type RecordingMocks } from "../../helpers/mocks";
import type { Host } from "../../../components/hosts/host";
import type { StackConfig } from "../../../components/config/schema";
import { provisioningConfig } from "../../../components/config/load";
import { HOST_PROVISIONER_TYPE, HostProvisioner, SSH_DIAL_ERROR_LIMIT, SSH_PER_DIAL_TIMEOUT } from "../../../components/provisioning/host-provisioner";
import { buildSteps, renderRelease, stepSecrets, type StepName } from "../../../components/provisioning/steps";
import { configOf, contextFor, FAKE_SCRIPTS, FAKE_SECRET, fakeSecretValues, HOST_KEY } from "./fixtures";

const REMOTE = "command:remote:Command";
const LOCAL = "command:local:Command";
const PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nfake-deploy-key\n-----END OPENSSH PRIVATE KEY-----\n";
const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";

let mocks: RecordingMocks;
/** How many times the program looked Cloudflare's ranges up. */
let rangeLookups = 0;
before(async () => {
    mocks = await installMocks({}, { [GET_IP_RANGES]: ipRangesHandler(() => (rangeLookups += 1)) });
});

/** Strips the secret wrappers the mock monitor records ({<sig key>: <secret sig>, value}). */
function unsecret(v: unknown): unknown {
    if (Array.isArray(v)) {
        return v.map(unsecret);
    }
    if (v && typeof v === "object") {
        const o = v as Record<string, unknown>;
        if (Object.values(o).includes(SECRET_SIG) && "value" in o) {
            return unsecret(o.value);
        }
        return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, unsecret(x)]));
    }
    return v;
}

function isSecretInput(v: unknown): boolean {
    return Boolean(v && typeof v === "object" && Object.values(v).includes(SECRET_SIG));
}

class Ready extends pulumi.CustomResource {
    constructor(name: string) {
        super("test:index:Ready", name, {});
    }
}

function fakeHost(readyResources: pulumi.Resource[], user = "deploy", serverId = "412345678"): Host {
    return {
        serverId: pulumi.output(serverId),
        provider: "digitalocean",
        ipv4Address: pulumi.output("203.0.113.10"),
        ipv6Address: pulumi.output<string | undefined>(undefined),
        ipv6Stable: false,
        connection: { host: pulumi.output("203.0.113.10"), port: 22, user, privateKey: pulumi.secret(PRIVATE_KEY), hostKey: pulumi.output(HOST_KEY) },
        dataDevice: pulumi.output<string | undefined>("/dev/disk/by-id/scsi-0DO_Volume_data"),
        dataPath: "/mnt/data",
        readyResources,
    };
}

function secretsFor(config: StackConfig, override: Record<string, string> = {}): Record<string, pulumi.Input<string>> {
    const names = [...new Set(buildSteps(config, contextFor(config)).flatMap(stepSecrets))];
    return Object.fromEntries(Object.entries({ ...fakeSecretValues(names), ...override }).map(([k, v]) => [k, pulumi.secret(v)]));
}

interface Run {
    provisioner: HostProvisioner;
    ready: Ready;
    commands: RecordedResource[];
    options: Map<string, pulumi.CustomResourceOptions>;
}

/** Builds a provisioner, waits until every step is registered, returns what the mocks saw. */
async function provision(config: StackConfig, opts: { secrets?: Record<string, string>; user?: string; dependsOn?: pulumi.Resource[]; serverId?: string } = {}): Promise<Run> {
    mocks.reset();
    const options = new Map<string, pulumi.CustomResourceOptions>();
    const ready = new Ready("ready");
    const provisioner = new HostProvisioner(
        "prod",
        { config: provisioningConfig(config), host: fakeHost([ready], opts.user, opts.serverId), secretValues: secretsFor(config, opts.secrets), scripts: FAKE_SCRIPTS },
        {
            dependsOn: opts.dependsOn,
            transformations: [
                (a) => {
                    options.set(a.name, a.opts);
                    return undefined;
                },
            ],
        },
    );
    await Promise.all(Object.values(provisioner.steps).map((r) => unwrap(r.id)));
    const commands = mocks.resources.filter((r) => r.type === REMOTE || r.type === LOCAL);
    return { provisioner, ready, commands, options };
}

function command(run: Run, step: StepName): RecordedResource {
    const found = run.commands.find((r) => r.name === `prod-${step}`);
    assert.ok(found, `no command for step ${step}; have ${run.commands.map((r) => r.name).join(", ")}`);
    return found;
}

function triggers(run: Run): Record<string, unknown> {
    return Object.fromEntries(run.commands.map((r) => [r.name, unsecret(r.inputs.triggers)]));
}

/** The files a step script installs, decoded from its base64 here-documents, joined. */
function installedFiles(stdin: string): string {
    return [...stdin.matchAll(/<<'ONEBOX_EOF'\n([A-Za-z0-9+/=\n]*?)ONEBOX_EOF/g)].map((m) => Buffer.from(m[1].replace(/\n/g, ""), "base64").toString("utf8")).join("\n");
}

describe("HostProvisioner: the client address behind Cloudflare", () => {
    test("dns.proxied: the deployed Caddyfile trusts exactly Cloudflare's looked-up ranges and reads CF-Connecting-IP", async () => {
        rangeLookups = 0;
        const run = await provision(configOf("finances"));
        assert.equal(rangeLookups, 1);
        const stdin = installedFiles(String(unsecret(command(run, "deploy").inputs.stdin)));
        const all = [...FAKE_CLOUDFLARE_RANGES.ipv4, ...FAKE_CLOUDFLARE_RANGES.ipv6].join(" ");
        assert.equal(stdin.match(/trusted_proxies static .*/g)?.join("\n"), `trusted_proxies static ${all}`);
        assert.match(stdin, /\tclient_ip_headers CF-Connecting-IP\n/);
    });

    test("not proxied: no lookup, and the Caddyfile trusts nobody", async () => {
        rangeLookups = 0;
        const run = await provision(configOf("chronos"));
        assert.equal(rangeLookups, 0);
        const stdin = installedFiles(String(unsecret(command(run, "deploy").inputs.stdin)));
        assert.match(stdin, /reverse_proxy /);
        assert.doesNotMatch(stdin, /trusted_proxies|client_ip_headers|\{client_ip\}/);
    });
});

describe("HostProvisioner: SSH connections", () => {
    test("one remote command per step, children of the component", async () => {
        const run = await provision(configOf("finances"));
        assert.deepEqual(run.commands.map((r) => [r.type, r.name]), [
            [REMOTE, "prod-wait-ready"],
            [REMOTE, "prod-bootstrap"],
            [REMOTE, "prod-secrets"],
            [REMOTE, "prod-deploy"],
            [REMOTE, "prod-backup"],
            [REMOTE, "prod-jobs"],
        ]);
        assert.equal(mocks.resources.filter((r) => r.type === HOST_PROVISIONER_TYPE).length, 1);
        // finances is proxied by Cloudflare: its Caddyfile (so the release id) holds the looked-up ranges.
        assert.equal(await unwrap(run.provisioner.releaseId), renderRelease(configOf("finances"), "/mnt/data", FAKE_CLOUDFLARE_RANGES).id);
    });

    test("R1: every connection pins the host key", async () => {
        const run = await provision(configOf("finances"));
        for (const r of run.commands) {
            const c = unsecret(r.inputs.connection) as Record<string, unknown>;
            assert.equal(c.hostKey, HOST_KEY, r.name);
            assert.equal(c.host, "203.0.113.10");
            assert.equal(c.port, 22);
            assert.equal(c.user, "deploy");
            assert.equal(c.privateKey, PRIVATE_KEY);
        }
    });

    test("R2: connections retry while the server boots", async () => {
        const run = await provision(configOf("finances"));
        assert.equal(SSH_DIAL_ERROR_LIMIT, 30);
        for (const r of run.commands) {
            const c = unsecret(r.inputs.connection) as Record<string, unknown>;
            assert.equal(c.dialErrorLimit, SSH_DIAL_ERROR_LIMIT, r.name);
            assert.equal(c.perDialTimeout, SSH_PER_DIAL_TIMEOUT, r.name);
        }
    });

    test("steps wait for the host's ready resources and for the previous step", async () => {
        const run = await provision(configOf("finances"));
        const order: StepName[] = ["wait-ready", "bootstrap", "secrets", "deploy", "backup"];
        order.forEach((name, i) => {
            const deps = run.options.get(`prod-${name}`)?.dependsOn as pulumi.Resource[];
            const expected = i === 0 ? [run.ready] : [run.ready, run.provisioner.steps[order[i - 1]]];
            assert.deepEqual(deps.length, expected.length, name);
            expected.forEach((e, j) => assert.equal(deps[j], e, `${name} depends on ${j}`));
        });
    });
});

test("every step also waits for what the component depends on (e.g. DNS records)", async () => {
    const dns = new Ready("dns");
    const run = await provision(configOf("finances"), { dependsOn: [dns] });
    for (const name of ["wait-ready", "bootstrap", "secrets", "deploy", "backup"]) {
        assert.equal((run.options.get(`prod-${name}`)?.dependsOn as pulumi.Resource[])[0], dns, name);
    }
});

describe("HostProvisioner: secrets (R3, R4)", () => {
    test("R3: the command string is constant, and no secret value appears in any input but stdin", async () => {
        const run = await provision(configOf("finances"));
        for (const r of run.commands) {
            assert.equal(r.inputs.create, "sudo -n bash -s", r.name);
            const { stdin, ...rest } = r.inputs;
            void stdin;
            assert.ok(!JSON.stringify(unsecret(rest)).includes(FAKE_SECRET), `${r.name} leaks a secret outside stdin`);
        }
        const stdin = String(unsecret(command(run, "secrets").inputs.stdin));
        const decoded = [...stdin.matchAll(/<<'ONEBOX_EOF'\n([^]*?)ONEBOX_EOF/g)].map((m) => Buffer.from(m[1].replace(/\n/g, ""), "base64").toString("utf8")).join("");
        assert.ok(decoded.includes(`${FAKE_SECRET}-JWT_SECRET`), "the secrets step's stdin carries the values");
    });

    test("root logs in directly: bash -s without sudo", async () => {
        const run = await provision(configOf("finances"), { user: "root" });
        assert.ok(run.commands.every((r) => r.inputs.create === "bash -s"));
    });

    test("R4: secret steps log nothing, their stdin is secret and their outputs are marked secret", async () => {
        const run = await provision(configOf("finances"));
        const secretSteps = ["prod-secrets", "prod-backup"];
        for (const r of run.commands) {
            const secret = secretSteps.includes(r.name);
            assert.equal(r.inputs.logging, secret ? "none" : "stdoutAndStderr", r.name);
            assert.equal(isSecretInput(r.inputs.stdin), secret, `${r.name} stdin secret`);
            const extra = run.options.get(r.name)?.additionalSecretOutputs ?? [];
            assert.equal(extra.includes("stdout") && extra.includes("stderr"), secret, `${r.name} additionalSecretOutputs`);
            assert.equal(r.inputs.addPreviousOutputInEnv, false, r.name);
        }
    });

    test("a referenced secret without a value fails before anything is registered", () => {
        mocks.reset();
        const config = configOf("finances");
        assert.throws(
            () => new HostProvisioner("prod", { config: provisioningConfig(config), host: fakeHost([]), secretValues: { JWT_SECRET: "x" }, scripts: FAKE_SCRIPTS }),
            /no value for secrets BACKUP_S3_ACCESS_KEY_ID, BACKUP_S3_SECRET_ACCESS_KEY, JWT_REFRESH_SECRET, POSTGRES_PASSWORD, TLS_ORIGIN_CERT, TLS_ORIGIN_KEY/,
        );
        assert.deepEqual(mocks.resources, []);
    });
});

describe("HostProvisioner: triggers (R5)", () => {
    test("triggers are sha256 content hashes; the deploy step's include the secrets step's", async () => {
        const t = triggers(await provision(configOf("finances")));
        for (const [name, value] of Object.entries(t)) {
            assert.ok(Array.isArray(value), name);
            for (const h of value as string[]) {
                assert.match(h, /^[0-9a-f]{64}$/, name);
            }
        }
        assert.deepEqual((t["prod-deploy"] as string[])[1], (t["prod-secrets"] as string[])[0]);
    });

    test("a replaced server (same address and host key, new machine) re-runs every step; the same one re-runs none", async () => {
        const a = triggers(await provision(configOf("finances"), { serverId: "412345678" }));
        const same = triggers(await provision(configOf("finances"), { serverId: "412345678" }));
        const b = triggers(await provision(configOf("finances"), { serverId: "498765432" }));
        assert.deepEqual(same, a);
        const remote = Object.keys(a).filter((n) => Array.isArray(a[n]));
        assert.ok(remote.length >= 4, remote.join(", "));
        for (const name of remote) {
            assert.notDeepEqual(b[name], a[name], `${name} runs again on the new server`);
            // Only the server's part changed: the content hashes are the same.
            assert.deepEqual((b[name] as string[]).slice(0, -1), (a[name] as string[]).slice(0, -1), name);
        }
    });

    test("an unchanged configuration re-runs nothing: two runs give the same triggers", async () => {
        const a = triggers(await provision(configOf("finances")));
        const b = triggers(await provision(configOf("finances")));
        assert.deepEqual(a, b);
    });

    test("a changed image re-runs the deploy step only", async () => {
        const a = triggers(await provision(configOf("finances")));
        const b = triggers(await provision(configOf("finances", (r) => ((r.services as Record<string, { image: string }>).api.image = "ghcr.io/example/finances-api:1.0.1"))));
        assert.deepEqual(Object.keys(a).filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k])), ["prod-deploy"]);
    });

    test("a changed secret re-runs the secrets step and restarts the containers (deploy), nothing else", async () => {
        const a = triggers(await provision(configOf("finances")));
        const b = triggers(await provision(configOf("finances"), { secrets: { JWT_SECRET: `${FAKE_SECRET}-rotated` } }));
        assert.deepEqual(Object.keys(a).filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k])), ["prod-secrets", "prod-deploy"]);
    });

    test("secret steps' triggers are secret (they hash secret values)", async () => {
        const run = await provision(configOf("finances"));
        assert.equal(isSecretInput(command(run, "secrets").inputs.triggers), true);
        assert.equal(isSecretInput(command(run, "bootstrap").inputs.triggers), false);
    });
});

describe("HostProvisioner: image upload", () => {
    test("a local command streams the images; the key travels in its environment, the host key is pinned", async () => {
        const config = configOf("social", (r) => (r.deploy = { imageSource: "upload" }));
        const run = await provision(config);
        const upload = command(run, "images");
        assert.equal(upload.type, LOCAL);
        assert.equal(upload.inputs.create, "bash scripts/host/deploy/upload-images.sh");
        const env = unsecret(upload.inputs.environment) as Record<string, string>;
        assert.deepEqual(env, {
            ONEBOX_SSH_HOST: "203.0.113.10",
            ONEBOX_SSH_PORT: "22",
            ONEBOX_SSH_USER: "deploy",
            ONEBOX_SSH_PRIVATE_KEY: PRIVATE_KEY,
            ONEBOX_SSH_HOST_KEY: HOST_KEY,
            ONEBOX_IMAGES: "caddy:2 postgres:17 ghcr.io/social/api:0.9.0 ghcr.io/social/web:0.9.0",
        });
        assert.ok(isSecretInput(upload.inputs.environment), "the environment holding the key is secret");
        assert.deepEqual(upload.inputs.triggers, ["caddy:2", "postgres:17", "ghcr.io/social/api:0.9.0", "ghcr.io/social/web:0.9.0"]);
        const deps = run.options.get("prod-deploy")?.dependsOn as pulumi.Resource[];
        assert.equal(deps.at(-1), run.provisioner.steps.images);
    });
});

describe("HostProvisioner: arguments of its own (not the whole stack configuration)", () => {
    test("takes the provisioning part alone, settings left out take the stack configuration's defaults", async () => {
        mocks.reset();
        const provisioner = new HostProvisioner("lib", {
            config: {
                app: { name: "hello", environment: "demo" },
                host: { sshAllowedCidrs: ["198.51.100.0/24"] },
                tls: { mode: "internal" },
                services: { web: { image: "ghcr.io/example/hello:1.0.0", port: 8080, health: { path: "/health" } } },
                routes: [{ host: "hello.example.com", service: "web" }],
                database: { enabled: false },
            },
            host: fakeHost([]),
            secretValues: {},
            scripts: FAKE_SCRIPTS,
        });
        await unwrap(provisioner.urn);
        await settleMocks();
        const names = mocks.ofType(REMOTE).map((r) => r.name).sort();
        assert.deepEqual(names, ["lib-backup", "lib-bootstrap", "lib-deploy", "lib-jobs", "lib-secrets", "lib-wait-ready"]);
        const bootstrap = mocks.ofType(REMOTE).find((r) => r.name === "lib-bootstrap");
        const stdin = String(unsecret(bootstrap?.inputs.stdin));
        const env = /put_file \/etc\/onebox\/hello-demo\/bootstrap\.env \S+ \S+ <<'(\w+)'\n([\s\S]*?)\n\1\n/.exec(stdin);
        assert.ok(env, "the bootstrap installs its settings file");
        const settings = Buffer.from(env[2], "base64").toString("utf8");
        // Defaults of the stack configuration: a 1024 MiB swap file; the SSH port is the host's.
        assert.match(settings, /^ONEBOX_SWAP_MB='?1024'?$/m);
        assert.match(settings, /^ONEBOX_SSH_PORT='?22'?$/m);
        assert.match(settings, /198\.51\.100\.0\/24/);
    });

    test("F1: bad arguments throw naming each path, and nothing is registered", () => {
        mocks.reset();
        assert.throws(
            () =>
                new HostProvisioner("lib", {
                    config: {
                        app: { name: "hello", environment: "demo" },
                        host: { sshAllowedCidrs: ["0.0.0.0/0"] },
                        services: { web: { image: "ghcr.io/example/hello:1.0.0", port: 70000 } },
                    },
                    host: fakeHost([]),
                    secretValues: {},
                    scripts: FAKE_SCRIPTS,
                }),
            (err: Error) => {
                assert.match(err.message, /^invalid HostProvisioner "lib" arguments/);
                assert.match(err.message, /host\.sshAllowedCidrs\[0\]: 0\.0\.0\.0\/0 opens SSH to every public IPv4 address/);
                assert.match(err.message, /services\.web\.port: must be between 1 and 65535/);
                return true;
            },
        );
        assert.deepEqual(mocks.resources, []);
    });

    test("an empty SSH list on the server's own firewall needs the explicit opt-in (F1)", () => {
        mocks.reset();
        assert.throws(
            () =>
                new HostProvisioner("lib", {
                    config: { app: { name: "hello", environment: "demo" }, services: { web: { image: "ghcr.io/example/hello:1.0.0" } }, database: { enabled: false } },
                    host: fakeHost([]),
                    secretValues: {},
                    scripts: FAKE_SCRIPTS,
                }),
            /host\.sshAllowedCidrs: list the admin CIDRs allowed to SSH \(ufw\), or set host\.allowSshFromAnywhere: true/,
        );
        assert.deepEqual(mocks.resources, []);
    });
});

/** Waits until the number of recorded resources stops changing (bounded: 5 s). */
async function settleMocks(): Promise<void> {
    let last = -1;
    for (let i = 0, stable = 0; i < 500 && stable < 10; i++) {
        await new Promise((r) => setTimeout(r, 10));
        stable = mocks.resources.length === last ? stable + 1 : 0;
        last = mocks.resources.length;
    }
}
