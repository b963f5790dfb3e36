/**
 * The program loads as `pulumi up` loads it: Pulumi's Node.js language host
 * registers ts-node (type checking on) with the project's tsconfig and
 * TypeScript, then requires the entry point. A child process does exactly
 * that, without tsx, and runs the program under mocks.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { asPulumiConfig, digitalOceanRaw } from "../../helpers/fixtures";

const ROOT = path.resolve(__dirname, "../../..");

describe("program under Pulumi's Node.js runtime loader", () => {
    it("type-checks, compiles and runs index.ts for the DigitalOcean stack", () => {
        const r = spawnSync(process.execPath, [path.join(ROOT, "tests/helpers/pulumi-runtime-load.js"), JSON.stringify(asPulumiConfig(digitalOceanRaw()))], {
            cwd: ROOT,
            encoding: "utf8",
            timeout: 180_000,
            // Nothing from this test runner's loader may leak into the child.
            env: { ...process.env, NODE_OPTIONS: "" },
        });
        assert.equal(r.status, 0, `loader failed:\n${r.stderr}`);
        const result = JSON.parse(r.stdout.trim().split("\n").pop() ?? "{}") as { resources: number; types: string[]; outputs: string[] };
        assert.ok(result.resources > 20, `only ${result.resources} resources`);
        assert.ok(result.types.includes("digitalocean:index/droplet:Droplet"));
        assert.ok(result.types.includes("command:remote:Command"));
        // databasePassword is exported for published databases only; here it is undefined.
        assert.deepEqual(result.outputs.sort(), ["databasePassword", "onebox", "releaseId"]);
    });
});
