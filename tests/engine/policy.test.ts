/**
 * The policy pack under the real engine: `pulumi preview --policy-pack policy`
 * (the automation API's `policyPacks`) on a local file-backend stack. A
 * 1024-bit RSA key is a mandatory violation (onebox-key-strength) and stops the
 * preview; the ED25519 key the program generates passes. The stack policies
 * that read values unknown before creation still judge the rest (no "can't run
 * policy during preview").
 *
 * How the CLI runs a Node.js policy pack: `--policy-pack <dir>` (what CI
 * passes) starts the pack through the `nodejs` language plugin, which the
 * module proxy refuses here (see toolchain.sh); the CLI 3.276 also accepts an
 * executable file as the pack and runs it as a binary analyzer plugin with the
 * engine's address. The suite gives it a three-line launcher that does what
 * the language plugin does: run `@pulumi/pulumi/cmd/run-policy-pack` with node
 * on the pack's directory (its dependencies are the repository's). The
 * policies, the analyzer protocol and the engine's verdict are the real ones.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as tls from "@pulumi/tls";
import { LocalWorkspace, PulumiCommand, type Stack } from "@pulumi/pulumi/automation";

const ROOT = path.resolve(__dirname, "../..");
const BIN = process.env.ONEBOX_ENGINE_BIN ?? execFileSync("bash", [path.join(ROOT, "tests/engine/toolchain.sh")], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] }).trim().split("\n").pop()!;
const work = fs.mkdtempSync(path.join(os.tmpdir(), "onebox-policy-engine-"));
const PACK_DIR = path.join(ROOT, "policy");
const PACK = path.join(work, "onebox-policy-pack");

const env = {
    PATH: `${BIN}:${process.env.PATH ?? "/usr/bin:/bin"}`,
    PULUMI_BACKEND_URL: `file://${path.join(work, "state")}`,
    PULUMI_CONFIG_PASSPHRASE: "policy-suite-passphrase-Wm4",
    PULUMI_HOME: path.join(work, "home"),
    PULUMI_SKIP_UPDATE_CHECK: "true",
    PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
};

let pulumiCommand: PulumiCommand;

async function stackWith(name: string, weak: boolean): Promise<Stack> {
    return LocalWorkspace.createOrSelectStack(
        {
            stackName: name,
            projectName: "onebox-policy-engine",
            program: () => {
                const key = new tls.PrivateKey("deploy-key", weak ? { algorithm: "RSA", rsaBits: 1024 } : { algorithm: "ED25519" });
                return Promise.resolve({ publicKey: key.publicKeyOpenssh });
            },
        },
        { pulumiCommand, workDir: work, envVars: env },
    );
}

before(async () => {
    fs.mkdirSync(path.join(work, "state"), { recursive: true });
    fs.writeFileSync(path.join(work, "Pulumi.yaml"), "name: onebox-policy-engine\nruntime: nodejs\n");
    const runner = require.resolve("@pulumi/pulumi/cmd/run-policy-pack", { paths: [PACK_DIR] });
    fs.writeFileSync(PACK, `#!/bin/sh\n# $1: the engine's address\nexec node '${runner}' --pwd '${PACK_DIR}' "$1" .\n`, { mode: 0o755 });
    pulumiCommand = await PulumiCommand.get({ root: path.dirname(BIN), skipVersionCheck: false });
});

after(() => {
    fs.rmSync(work, { recursive: true, force: true });
});

describe("engine: the policy pack stops a preview", { concurrency: false }, () => {
    it("a weak key is a mandatory violation that fails the preview", async () => {
        const stack = await stackWith("violating", true);
        const error = await stack.preview({ policyPacks: [PACK] }).then(
            () => undefined,
            (e: unknown) => e as Error,
        );
        assert.ok(error, "the preview succeeded despite the violation");
        assert.match(error.message, /\[mandatory\]\s+onebox-key-strength/);
        assert.match(error.message, /deploy-key: RSA of 1024 bits is too weak/);
        assert.doesNotMatch(error.message, /can't run policy/);
    });

    it("the program's ED25519 key passes the pack", async () => {
        const stack = await stackWith("compliant", false);
        const pv = await stack.preview({ policyPacks: [PACK] });
        assert.equal(pv.changeSummary.create, 2, JSON.stringify(pv.changeSummary));
        assert.match(pv.stdout, /onebox@v0\.1\.0/, "the pack ran");
        assert.doesNotMatch(pv.stdout, /mandatory|can't run policy/);
    });
});
