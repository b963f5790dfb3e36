/**
 * Runs one example (examples/<NNN-name>/index.ts, the way `pulumi up` loads that
 * project) under recording mocks and prints, as JSON, every registered resource
 * and the stack outputs. Its stack file's config is used as written, plus a
 * stand-in value for each secret its README sets with `pulumi config set
 * --secret`. Run in its own process (the program module loads once per process):
 *
 *   tsx tests/helpers/run-example.ts <NNN-name> [<stack>]
 *
 * tests/unit/examples/plans.test.ts asserts on the output.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type * as pulumi from "@pulumi/pulumi";
import { parse } from "yaml";
import { exampleStacks, readmeSecrets, type ExampleStack } from "../../scripts/examples";
import { EXISTING_DEPLOY_KEY } from "./fixtures";
import { installMocks, unwrap, type RecordedResource } from "./mocks";
import { PROGRAM_CALLS, settle } from "./program";

/** The value a secret set from the README stands for in tests (never a real one). */
export function standInSecret(name: string): string {
    return `standin-${name.toLowerCase().replace(/_/g, "-")}-Kq7Zx3Vw9Lm2`;
}

/** An example stack's config in Pulumi's `namespace:key` → text form, with the README's secrets as stand-ins. */
export function exampleConfig(stack: ExampleStack): Record<string, string> {
    const doc = parse(fs.readFileSync(stack.file, "utf8")) as { config?: Record<string, unknown> };
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(doc.config ?? {})) {
        out[k] = typeof v === "string" ? v : JSON.stringify(v);
    }
    const secrets = readmeSecrets(fs.readFileSync(path.join(stack.dir, "README.md"), "utf8"));
    if (secrets.names.length > 0) {
        out["onebox:secrets"] = JSON.stringify(Object.fromEntries(secrets.names.map((n) => [n, standInSecret(n)])));
    }
    if (secrets.sshPrivateKey) {
        out["onebox:sshPrivateKey"] = EXISTING_DEPLOY_KEY;
    }
    return out;
}

export interface ExampleRun {
    resources: RecordedResource[];
    outputs: Record<string, unknown>;
}

async function main(): Promise<void> {
    const [example, stackName = "prod"] = process.argv.slice(2);
    const stack = exampleStacks().find((s) => s.example === example && s.stack === stackName);
    if (!stack) {
        throw new Error(`no example ${example ?? ""} with a stack ${stackName}`);
    }
    const mocks = await installMocks(exampleConfig(stack), PROGRAM_CALLS, { stack: stack.stack });
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const exports = require(path.join(stack.dir, "index.ts")) as Record<string, pulumi.Output<unknown>>;
    const outputs: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(exports)) {
        outputs[k] = await unwrap(v);
    }
    await settle(mocks);
    const run: ExampleRun = { resources: mocks.resources, outputs };
    process.stdout.write(JSON.stringify(run));
}

if (require.main === module) {
    main().catch((err: unknown) => {
        process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
        process.exit(1);
    });
}
