/**
 * examples/library: an outside program importing the built package ("onebox",
 * resolved through package.json `exports`) type-checks against the emitted
 * declarations and deploys under mocks. Run by `npm run test:example`, which
 * builds the library first.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { installMocks } from "../helpers/mocks";
import { settle } from "../helpers/program";

const ROOT = path.resolve(__dirname, "../..");
const EXAMPLE = path.join(ROOT, "examples/library");

describe("examples/library: a program built on the published surface", () => {
    it("the package's entry points are the built library, not the program", () => {
        const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")) as { main: string; exports: Record<string, { default: string }> };
        assert.equal(pkg.main, "dist/components/index.js");
        assert.ok(fs.existsSync(path.join(ROOT, pkg.exports["."].default)), "npm run build has emitted the library");
        assert.equal(require.resolve("onebox"), path.join(ROOT, "dist/components/index.js"));
    });

    it("type-checks against the emitted declarations", () => {
        const r = spawnSync(process.execPath, [path.join(ROOT, "node_modules/typescript/bin/tsc"), "--noEmit", "-p", path.join(EXAMPLE, "tsconfig.json")], { encoding: "utf8" });
        assert.equal(r.status, 0, r.stdout + r.stderr);
    });

    it("deploys under mocks: an existing server and its provisioning steps, nothing else", async () => {
        const mocks = await installMocks({
            "project:sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----\nexample\n-----END OPENSSH PRIVATE KEY-----\n",
        }, {}, { project: "project" });
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const program = require(path.join(EXAMPLE, "index.ts")) as { url: { apply: (f: (v: string) => void) => void } };
        const url = await new Promise<string>((resolve) => program.url.apply(resolve));
        assert.equal(url, "https://hello.example.com (via 203.0.113.10)");
        await settle(mocks);
        const types = new Set(mocks.resources.map((r) => r.type));
        assert.ok(types.has("onebox:hosts:ExistingHost"), [...types].join(", "));
        assert.ok([...types].some((t) => t.startsWith("command:remote:")), "provisioning steps are registered");
        assert.ok(![...types].some((t) => /^(aws|digitalocean|cloudflare):/.test(t)), "no cloud resource");
    });
});
