/**
 * The consumer helper: a onebox stack's `onebox` output read through a
 * StackReference, validated, version-checked, and every mismatch reported with
 * the stack name and the field path.
 */
import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as pulumi from "@pulumi/pulumi";
import { RecordingMocks, unwrap } from "../../helpers/mocks";
import { parseOneboxOutputs, readOneboxOutputs } from "../../../components/outputs/consumer";
import { ONEBOX_OUTPUT_KEY, OUTPUTS_SCHEMA_VERSION } from "../../../components/outputs/contract";
import { sampleOutputs } from "./sample";

const STACK = "acme/onebox/prod";

/** Recording mocks that also answer StackReference reads with canned stack outputs. */
class StackMocks extends RecordingMocks {
    readonly stacks: Record<string, Record<string, unknown>> = {};

    override newResource(args: pulumi.runtime.MockResourceArgs): { id: string; state: Record<string, unknown> } {
        const result = super.newResource(args);
        if (args.type === "pulumi:pulumi:StackReference") {
            const name = String((args.inputs as { name: unknown }).name);
            return { id: name, state: { ...result.state, name, outputs: this.stacks[name] ?? {}, secretOutputNames: [] } };
        }
        return result;
    }
}

const mocks = new StackMocks();

before(async () => {
    await pulumi.runtime.setMocks(mocks, "consumer", "test", false);
    mocks.stacks[STACK] = { [ONEBOX_OUTPUT_KEY]: sampleOutputs(), unrelated: "x" };
    mocks.stacks["acme/onebox/staging"] = { [ONEBOX_OUTPUT_KEY]: { ...sampleOutputs(), environment: { app: "finances", environment: "staging" } } };
});

void describe("readOneboxOutputs", () => {
    void it("reads the onebox output of a stack named by string", async () => {
        assert.deepEqual(await unwrap(readOneboxOutputs(STACK)), sampleOutputs());
        assert.equal(mocks.one("pulumi:pulumi:StackReference", STACK).inputs.name, STACK);
    });

    void it("reads the onebox output through an existing StackReference", async () => {
        const ref = new pulumi.StackReference("staging-ref", { name: "acme/onebox/staging" });
        const out = await unwrap(readOneboxOutputs(ref));
        assert.equal(out.environment.environment, "staging");
    });
});

void describe("parseOneboxOutputs", () => {
    void it("accepts the contract as published", () => {
        assert.deepEqual(parseOneboxOutputs(sampleOutputs(), STACK), sampleOutputs());
    });

    void it("ignores fields added within the same version (forward compatible)", () => {
        const raw = { ...sampleOutputs(), monitoring: { url: "https://status.example.com" } };
        assert.deepEqual(parseOneboxOutputs(raw, STACK), sampleOutputs());
    });

    const tampered: [string, (o: Record<string, unknown>) => void, RegExp][] = [
        ["an invalid IPv4 address", (o) => ((o.host as Record<string, unknown>).ipv4 = "300.1.1.1"), /Invalid IPv4 address[\s\S]*at host\.ipv4/],
        ["a plain-http URL", (o) => ((o.urls as Record<string, unknown>[])[0].url = "http://app.example.com"), /https:\/\/ URL[\s\S]*at urls\[0\]\.url/],
        ["a missing field", (o) => delete (o.backups as Record<string, unknown>).bucket, /at backups\.bucket/],
        ["a wrong type", (o) => ((o.host as Record<string, unknown>).sshPort = "22"), /expected number[\s\S]*at host\.sshPort/],
        ["an upper-case hostname", (o) => ((o.urls as Record<string, unknown>[])[0].hostname = "App.example.com"), /not a DNS hostname[\s\S]*at urls\[0\]\.hostname/],
        ["an unknown record type", (o) => ((o.dns as Record<string, unknown>[])[1].type = "CNAME"), /at dns\[1\]\.type/],
    ];
    for (const [what, tamper, message] of tampered) {
        void it(`${what} fails naming the stack and the path`, () => {
            const raw = sampleOutputs() as unknown as Record<string, unknown>;
            tamper(raw);
            assert.throws(() => parseOneboxOutputs(raw, STACK), (e: Error) => {
                assert.match(e.message, /^stack "acme\/onebox\/prod": "onebox" output does not match schema v1/);
                assert.match(e.message, message);
                return true;
            });
        });
    }

    void it("refuses a newer major schemaVersion and says to upgrade the consumer", () => {
        const raw = { ...sampleOutputs(), schemaVersion: OUTPUTS_SCHEMA_VERSION + 1 };
        assert.throws(() => parseOneboxOutputs(raw, STACK), /stack "acme\/onebox\/prod" publishes onebox outputs schema v2, but this consumer understands v1; upgrade/);
    });

    void it("refuses an older schemaVersion and says to redeploy the stack", () => {
        const raw = { ...sampleOutputs(), schemaVersion: 0 };
        assert.throws(() => parseOneboxOutputs(raw, STACK), /schema v0, older than v1.*redeploy the stack/);
    });

    void it("refuses a value without a schemaVersion", () => {
        assert.throws(() => parseOneboxOutputs({ host: {} }, STACK), /has no integer schemaVersion/);
        assert.throws(() => parseOneboxOutputs("text", STACK), /has no integer schemaVersion/);
    });

    void it("says so when the stack has no onebox output at all", () => {
        assert.throws(() => parseOneboxOutputs(undefined, "acme/other/prod"), /stack "acme\/other\/prod" has no "onebox" output/);
    });
});
