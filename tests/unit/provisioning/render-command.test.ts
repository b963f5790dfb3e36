/**
 * scripts/render.ts: exit status 2 with every config problem, the output
 * layout, determinism (two renders byte-identical) and that no secret value
 * from the stack file reaches the output.
 */
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { stringify } from "yaml";
import type { RawConfig } from "../../../components/config/load";
import { main, rawConfigFromStackFile, readCloudflareIps, render } from "../../../scripts/render";
import { FAKE_CLOUDFLARE_RANGES } from "../../helpers/cloudflare";
import { DEPLOYMENTS, FAKE_SCRIPTS, type DeploymentName } from "./fixtures";
import { BAD_CONFIGS } from "../../helpers/bad-configs";
import { digitalOceanRaw } from "../../helpers/fixtures";

const REPO = path.resolve(__dirname, "../../..");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "onebox-render-"));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** The fake host scripts as a scripts/host directory. */
const scriptsDir = path.join(tmp, "scripts");
for (const [name, content] of Object.entries(FAKE_SCRIPTS.bootstrap)) {
    fs.mkdirSync(path.join(scriptsDir, "bootstrap"), { recursive: true });
    fs.writeFileSync(path.join(scriptsDir, "bootstrap", name), content);
}
fs.mkdirSync(path.join(scriptsDir, "deploy"), { recursive: true });
fs.writeFileSync(path.join(scriptsDir, "deploy", "deploy.sh"), FAKE_SCRIPTS.deploy);
for (const [name, content] of Object.entries(FAKE_SCRIPTS.backup)) {
    fs.mkdirSync(path.join(scriptsDir, "backup"), { recursive: true });
    fs.writeFileSync(path.join(scriptsDir, "backup", name), content);
}

/** Saved response of Cloudflare's IP list API (the ranges the mocks return). */
const CLOUDFLARE_IPS = path.join(REPO, "tests/fixtures/cloudflare-ips.json");

const PLAIN_SECRET = "plain-Secret-In-Stack-File-8Jq2Wv5Xc";

/**
 * Writes a Pulumi.<stack>.yaml holding the raw config under the onebox: namespace,
 * secrets encrypted as `pulumi config set --secret` stores them (unless `plain`).
 */
function stackFile(name: string, raw: RawConfig, plain = false): string {
    const config: Record<string, unknown> = { "aws:region": "eu-central-1" };
    for (const [k, v] of Object.entries(encryptedSecrets(raw, plain))) {
        config[`onebox:${k}`] = v;
    }
    const file = path.join(tmp, `Pulumi.${name}.yaml`);
    fs.writeFileSync(file, stringify({ config }));
    return file;
}

function tree(dir: string): Record<string, string> {
    const out: Record<string, string> = {};
    const walk = (d: string) => {
        for (const e of fs.readdirSync(d, { withFileTypes: true })) {
            const p = path.join(d, e.name);
            if (e.isDirectory()) {
                walk(p);
            } else {
                out[path.relative(dir, p)] = fs.readFileSync(p, "utf8");
            }
        }
    };
    walk(dir);
    return out;
}

/** The raw config as a stack file holds it: every secret encrypted (`secure:`). */
function encryptedSecrets(raw: RawConfig, keepPlain: boolean): RawConfig {
    if (keepPlain) return raw;
    const out = structuredClone(raw);
    const encrypt = (v: unknown) => (typeof v === "string" ? { secure: "v1:c2VjcmV0" } : v);
    if (out.secrets && typeof out.secrets === "object") {
        out.secrets = Object.fromEntries(Object.entries(out.secrets).map(([n, v]) => [n, encrypt(v)]));
    }
    if (out.sshPrivateKey !== undefined) out.sshPrivateKey = encrypt(out.sshPrivateKey);
    return out;
}

/** Runs main() in this process and returns its exit status and stderr. */
function runMain(args: string[]): { status: number; stderr: string } {
    let stderr = "";
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string | Uint8Array) => {
        stderr += chunk.toString();
        return true;
    });
    try {
        return { status: main(args), stderr };
    } finally {
        process.stderr.write = write;
    }
}

describe("render command: every bad configuration exits 2 naming the setting, writing nothing", () => {
    BAD_CONFIGS.forEach(([name, change, expectedPath], i) => {
        test(name, () => {
            // Value checks of secrets need the values: those cases keep them in clear
            // text (and are refused for that too); every other case encrypts them.
            const plain = expectedPath.startsWith("secrets.") || expectedPath === "sshPrivateKey";
            const out = path.join(tmp, `bad-${i}`);
            const r = runMain(["--stack-file", stackFile(`bad${i}`, change(digitalOceanRaw()), plain), "--out", out, "--scripts-dir", scriptsDir, "--cloudflare-ips", CLOUDFLARE_IPS]);
            assert.equal(r.status, 2, r.stderr);
            assert.ok(r.stderr.includes(`onebox:${expectedPath}`), r.stderr);
            assert.equal(fs.existsSync(out), false, "nothing is written");
        });
    });

    test("a secret in clear text in the stack file", () => {
        const r = runMain(["--stack-file", stackFile("plain", digitalOceanRaw(), true), "--out", path.join(tmp, "plain"), "--scripts-dir", scriptsDir]);
        assert.equal(r.status, 2, r.stderr);
        assert.match(r.stderr, /onebox:secrets\.SMTP_PASSWORD: is stored in clear text .*pulumi config set --secret --path 'secrets\.SMTP_PASSWORD'/);
    });

    test("duplicate keys in the YAML", () => {
        const file = path.join(tmp, "Pulumi.dup.yaml");
        fs.writeFileSync(file, "config:\n  onebox:app:\n    name: a1\n    name: a2\n");
        const r = runMain(["--stack-file", file, "--out", path.join(tmp, "dup")]);
        assert.equal(r.status, 2, r.stderr);
        assert.match(r.stderr, /\(stack file\): is not valid YAML/);
    });

    test("a valid stack file renders (the checks above can fail)", () => {
        const r = runMain(["--stack-file", stackFile("good", digitalOceanRaw()), "--out", path.join(tmp, "good"), "--scripts-dir", scriptsDir, "--cloudflare-ips", CLOUDFLARE_IPS]);
        assert.equal(r.status, 0, r.stderr);
    });

    test("a stack proxied by Cloudflare needs Cloudflare's ranges (the proxy trusts only them for the client address)", () => {
        const out = path.join(tmp, "no-cf");
        const r = runMain(["--stack-file", stackFile("no-cf", digitalOceanRaw()), "--out", out, "--scripts-dir", scriptsDir]);
        assert.equal(r.status, 1, r.stderr);
        assert.match(r.stderr, /dns\.proxied is on.*--cloudflare-ips FILE/);
        assert.equal(fs.existsSync(out), false, "nothing is written");
    });
});

describe("render command", () => {
    test("invalid configuration: exit status 2 and every problem on stderr", () => {
        const raw = structuredClone<RawConfig>(DEPLOYMENTS.finances);
        raw.routes = [{ host: "*.example.com", service: "web" }, { host: "api.example.com", service: "nope" }];
        const file = stackFile("broken", raw);
        const r = spawnSync(process.execPath, ["--import", "tsx", path.join(REPO, "scripts", "render.ts"), "--stack-file", file, "--out", path.join(tmp, "broken")], {
            cwd: REPO,
            encoding: "utf8",
        });
        assert.equal(r.status, 2, r.stderr);
        assert.match(r.stderr, /invalid stack configuration \(2 problems\)/);
        assert.match(r.stderr, /onebox:routes\[0\]\.host: "\*\.example\.com" is a wildcard/);
        assert.match(r.stderr, /onebox:routes\[1\]\.service: no service named "nope"/);
        assert.equal(fs.existsSync(path.join(tmp, "broken")), false, "nothing is written");
    });

    test("usage errors exit 1", () => {
        assert.equal(main(["--out", path.join(tmp, "x")]), 1);
        assert.equal(main(["--bogus"]), 1);
    });

    for (const name of Object.keys(DEPLOYMENTS) as DeploymentName[]) {
        test(`${name}: two renders are byte-identical`, () => {
            const file = stackFile(name, DEPLOYMENTS[name]);
            render(file, path.join(tmp, `${name}-1`), { scriptsDir, webSources: FAKE_CLOUDFLARE_RANGES });
            render(file, path.join(tmp, `${name}-2`), { scriptsDir, webSources: FAKE_CLOUDFLARE_RANGES });
            assert.deepEqual(tree(path.join(tmp, `${name}-1`)), tree(path.join(tmp, `${name}-2`)));
        });
    }

    test("layout: every step file under <out>/<step>/<path>, masked stdin scripts, steps.json, validate.sh", () => {
        const out = path.join(tmp, "finances-1");
        const files = Object.keys(tree(out));
        for (const expected of [
            "wait-ready.stdin.sh",
            "bootstrap.stdin.sh",
            "bootstrap/etc/onebox/finances-prod/bootstrap.env",
            "bootstrap/usr/local/lib/onebox/migrate-layout.sh",
            "bootstrap/usr/local/lib/onebox/bootstrap.sh",
            "secrets.stdin.sh",
            "secrets/etc/onebox/finances-prod/env/api.env",
            "secrets/etc/onebox/finances-prod/certs/origin.key",
            "deploy.stdin.sh",
            "deploy/usr/local/lib/onebox/deploy.sh",
            "backup/etc/onebox/finances-prod/backup.env",
            "backup/etc/systemd/system/onebox-finances-prod-backup.timer",
            "steps.json",
            "validate.sh",
        ]) {
            assert.ok(files.includes(expected), `missing ${expected}`);
        }
        const summary = JSON.parse(fs.readFileSync(path.join(out, "steps.json"), "utf8")) as { steps: Record<string, unknown>[]; releaseId: string };
        assert.ok(files.includes(`deploy/srv/onebox/finances-prod/releases/${summary.releaseId}/compose.yaml`));
        assert.deepEqual(summary.steps.map((s) => [s.name, s.secret, s.command]), [
            ["wait-ready", false, "sudo -n bash -s"],
            ["bootstrap", false, "sudo -n bash -s"],
            ["secrets", true, "sudo -n bash -s"],
            ["deploy", false, "sudo -n bash -s"],
            ["backup", true, "sudo -n bash -s"],
            ["jobs", false, "sudo -n bash -s"],
        ]);
        const secrets = summary.steps[2] as { trigger: unknown; files: { path: string; mode: string; owner: string; sha256: string; masked: boolean }[] };
        assert.equal(secrets.trigger, null, "secret triggers depend on values the render never sees");
        const jwt = "/etc/onebox/finances-prod/secrets/api/JWT_SECRET";
        assert.deepEqual(secrets.files.find((f) => f.path === jwt), {
            path: jwt,
            mode: "0400",
            owner: "10001:10001",
            sha256: secrets.files.find((f) => f.path === jwt)?.sha256,
            masked: true,
        });
        assert.match(String((summary.steps[1] as { trigger: string }).trigger), /^[0-9a-f]{64}$/);
        assert.equal(fs.readFileSync(path.join(out, `secrets${jwt}`), "utf8"), "********");
        // H11: the env file holds no secret unless the service opts in.
        assert.equal(secrets.files.find((f) => f.path === "/etc/onebox/finances-prod/env/api.env")?.masked, false);
        assert.equal(spawnSync("bash", ["-n", path.join(out, "validate.sh")]).status, 0);
    });

    test("encrypted secrets in the stack file count as present and never reach the output; a plain one is refused", () => {
        const raw = structuredClone<RawConfig>(DEPLOYMENTS.fingerflow);
        raw.secrets = { BACKUP_S3_ACCESS_KEY_ID: { secure: "v1:AAAA" }, BACKUP_S3_SECRET_ACCESS_KEY: PLAIN_SECRET };
        raw.sshPrivateKey = { secure: "v1:BBBB" };
        assert.throws(() => render(stackFile("ff-plain", raw, true), path.join(tmp, "ff-plain"), { scriptsDir }), /secrets\.BACKUP_S3_SECRET_ACCESS_KEY: is stored in clear text/);
        raw.secrets.BACKUP_S3_SECRET_ACCESS_KEY = { secure: "v1:CCCC" };
        const out = path.join(tmp, "ff-secure");
        render(stackFile("ff-secure", raw), out, { scriptsDir });
        for (const [file, content] of Object.entries(tree(out))) {
            assert.ok(!content.includes(PLAIN_SECRET), `${file} holds a secret from the stack file`);
            assert.ok(!content.includes("encrypted-in-stack-file") && !content.includes("v1:AAAA") && !content.includes("v1:CCCC"), file);
        }
        assert.match(fs.readFileSync(path.join(out, "backup/etc/onebox/fingerflow-prod/backup.env"), "utf8"), /^BACKUP_S3_SECRET_ACCESS_KEY='\*{8}'$/m);
    });

    test("reads only the onebox: namespace; a whole encrypted secrets map is refused with the fix", () => {
        assert.deepEqual(Object.keys(rawConfigFromStackFile("config:\n  aws:region: x\n  onebox:app:\n    name: a1\n")), ["app"]);
        assert.throws(() => rawConfigFromStackFile("config:\n  onebox:secrets:\n    secure: v1:x\n"), /--path 'secrets\.NAME'/);
    });

    test("origin lockdown: the bootstrap admits only Cloudflare's ranges to 80/443, read from --cloudflare-ips", () => {
        assert.deepEqual(readCloudflareIps(CLOUDFLARE_IPS), FAKE_CLOUDFLARE_RANGES);
        const file = stackFile("finances", DEPLOYMENTS.finances);
        const out = path.join(tmp, "finances-cli");
        assert.equal(main(["--stack-file", file, "--out", out, "--scripts-dir", scriptsDir, "--cloudflare-ips", CLOUDFLARE_IPS]), 0);
        const env = fs.readFileSync(path.join(out, "bootstrap/etc/onebox/finances-prod/bootstrap.env"), "utf8");
        assert.match(env, /^ONEBOX_PUBLIC_TCP_PORTS=''$/m);
        const cidrs = [...FAKE_CLOUDFLARE_RANGES.ipv4, ...FAKE_CLOUDFLARE_RANGES.ipv6];
        assert.match(env, new RegExp(`^ONEBOX_RESTRICTED_PORTS='${[80, 443].flatMap((p) => cidrs.map((c) => `${p}:${c}`)).join(" ")}'$`, "m"));
    });

    test("origin lockdown without --cloudflare-ips, or with a bad file: exit 1, the fix named, nothing written", () => {
        const file = stackFile("finances", DEPLOYMENTS.finances);
        const out = path.join(tmp, "finances-no-ips");
        const r = spawnSync(process.execPath, ["--import", "tsx", path.join(REPO, "scripts", "render.ts"), "--stack-file", file, "--out", out], { cwd: REPO, encoding: "utf8" });
        assert.equal(r.status, 1, r.stderr);
        assert.match(r.stderr, /host\.originLockdown is on.*--cloudflare-ips FILE/);
        assert.equal(fs.existsSync(out), false);
        const bad = path.join(tmp, "bad-ips.json");
        for (const [content, message] of [
            ["not json", /--cloudflare-ips .*bad-ips\.json: /],
            [JSON.stringify({ result: { ipv4_cidrs: ["104.16.0.1/13"], ipv6_cidrs: [] } }), /ipv4_cidrs: "104\.16\.0\.1\/13" has host bits set/],
            [JSON.stringify({ result: { ipv4_cidrs: [] } }), /ipv6_cidrs must be a list of CIDRs/],
            [JSON.stringify({ ipv4_cidrs: [], ipv6_cidrs: [] }), /no ranges; origin lockdown would admit nobody/],
        ] as const) {
            fs.writeFileSync(bad, content);
            assert.throws(() => readCloudflareIps(bad), message);
        }
    });

    test("an existing directory that is not an earlier render is left alone (exit 1)", () => {
        const out = path.join(tmp, "precious");
        fs.mkdirSync(out);
        fs.writeFileSync(path.join(out, "notes.txt"), "keep me");
        assert.equal(main(["--stack-file", stackFile("social", DEPLOYMENTS.social), "--out", out, "--scripts-dir", scriptsDir]), 1);
        assert.equal(fs.readFileSync(path.join(out, "notes.txt"), "utf8"), "keep me");
    });
});
