/**
 * The policy pack against the real program: index.ts runs under recording mocks
 * for the DigitalOcean production fixture, every resource's inputs and options
 * (protect, ignoreChanges, additionalSecretOutputs, read by a stack
 * transformation) become the PolicyResources the analyzer would get, and no
 * mandatory policy reports anything. Weakening one resource of that graph is
 * then reported, so the pack judges what the program really registers.
 */
import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { runInPulumiStack } from "@pulumi/pulumi/runtime/stack";
import { installMocks, unwrap, type RecordingMocks } from "../../helpers/mocks";
import { asPulumiConfig, digitalOceanRaw } from "../../helpers/fixtures";
import { PROGRAM_CALLS, settle } from "../../helpers/program";
import { POLICIES, TYPES, carriesSecret, productionGuards, secretStepsHidden, secretValues } from "../../../policy/policies";
import { policyResources, violations, type Fake } from "./support";

interface SeenOptions {
    protect: boolean;
    ignoreChanges: string[];
    additionalSecretOutputs: string[];
}

let mocks: RecordingMocks;
const options = new Map<string, SeenOptions>();

/** A value with every secret wrapper of the mocks removed. */
function deepPlain(v: unknown): unknown {
    if (pulumi.Output.isInstance(v)) {
        throw new Error("unexpected Output in recorded inputs");
    }
    if (Array.isArray(v)) return v.map(deepPlain);
    if (v !== null && typeof v === "object") {
        const o = v as Record<string, unknown>;
        if (o["4dabf18193072939515e22adb298388d"] === "1b47061264138c4ac30d75fd1eb44270") return deepPlain(o.value);
        return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, deepPlain(x)]));
    }
    return v;
}

/** The program's resources as the analyzer sees them in the stack "prod". */
function graph(): Fake[] {
    const byId = new Map(mocks.resources.map((r) => [r.id, r.name]));
    return mocks.resources.filter((r) => r.type !== "pulumi:pulumi:Stack").map((r) => {
        const props = deepPlain(r.inputs) as Record<string, unknown>;
        if (r.type === TYPES.randomPassword) {
            // What the mocks answer as the generated value (tests/helpers/mocks.ts).
            props.result = `generated-${r.name}-Zq8w1Xr5Tn3Vb7Mk2Lp9Hs4Jd6Fg0`;
        }
        const deps: Record<string, string[]> = {};
        for (const [k, v] of Object.entries(props)) {
            const target = typeof v === "string" ? byId.get(v) : undefined;
            if (target) deps[k] = [target];
        }
        const o = options.get(`${r.type}::${r.name}`);
        assert.ok(o, `no options recorded for ${r.type} ${r.name}`);
        return { type: r.type, name: r.name, props, opts: o, deps, stack: "prod" };
    });
}

before(async () => {
    mocks = await installMocks(asPulumiConfig(digitalOceanRaw()), PROGRAM_CALLS);
    await runInPulumiStack(async () => {
        pulumi.runtime.registerStackTransformation((a) => {
            const o = a.opts as pulumi.CustomResourceOptions;
            options.set(`${a.type}::${a.name}`, {
                protect: o.protect ?? false,
                ignoreChanges: [...(o.ignoreChanges ?? [])],
                additionalSecretOutputs: [...(o.additionalSecretOutputs ?? [])],
            });
            return undefined;
        });
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const exports = require(path.resolve(__dirname, "../../../index.ts")) as Record<string, pulumi.Output<unknown>>;
        for (const value of Object.values(exports)) {
            await unwrap(value);
        }
        return exports;
    });
    await settle(mocks);
});

describe("policy pack on the program's DigitalOcean production graph", () => {
    it("the graph holds what the policies judge", () => {
        const types = new Set(graph().map((f) => f.type));
        for (const t of [TYPES.doFirewall, TYPES.doDroplet, TYPES.doVolume, TYPES.bucket, TYPES.publicAccessBlock, TYPES.encryption, TYPES.remoteCommand, "aws:iam/groupPolicy:GroupPolicy"]) {
            assert.ok(types.has(t), `no ${t}`);
        }
        const resources = policyResources(graph());
        const secrets = secretValues(resources);
        assert.ok(secrets.length >= 2, "generated passwords and keys are known");
        const carrying = resources.filter((r) => r.type === TYPES.remoteCommand && typeof r.props.stdin === "string" && carriesSecret(r.props.stdin, secrets));
        assert.ok(carrying.length >= 1, "a step carries a secret on stdin, so R4 is exercised");
    });

    for (const policy of POLICIES.filter((p) => p.enforcementLevel === "mandatory")) {
        it(`${policy.name}: no violation`, async () => {
            assert.deepEqual(await violations(policy, graph()), []);
        });
    }

    it("a secret step that logs is reported (R4)", async () => {
        const g = graph();
        const secrets = secretValues(policyResources(g));
        const step = g.find((f) => f.type === TYPES.remoteCommand && carriesSecret(String(f.props.stdin), secrets));
        assert.ok(step);
        step.props.logging = "stdoutAndStderr";
        const found = await violations(secretStepsHidden, g);
        assert.equal(found.length, 1);
        assert.match(found[0], new RegExp(`command ${step.name} sends a secret on stdin but logs`));
    });

    it("a droplet without its ignoreChanges and a volume without protect are reported (K2, S5)", async () => {
        const g = graph();
        const droplet = g.find((f) => f.type === TYPES.doDroplet);
        const volume = g.find((f) => f.type === TYPES.doVolume);
        assert.ok(droplet?.opts && volume?.opts);
        droplet.opts.ignoreChanges = [];
        volume.opts.protect = false;
        const found = await violations(productionGuards, g);
        assert.equal(found.length, 2, JSON.stringify(found));
    });
});
