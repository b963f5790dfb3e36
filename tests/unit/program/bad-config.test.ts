/**
 * index.ts with invalid configurations: for every entry of the bad-config
 * table the program fails before registering a single resource.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { installMocks } from "../../helpers/mocks";
import { asPulumiConfig, digitalOceanRaw, withValue } from "../../helpers/fixtures";
import { BAD_CONFIGS, PLAINTEXT_SECRETS } from "../../helpers/bad-configs";
import { PROGRAM_CALLS, settle } from "../../helpers/program";
import { ConfigError } from "../../../components/config/load";

const INDEX = path.resolve(__dirname, "../../../index.ts");

/** Loads index.ts afresh (the module cache would otherwise return the first load). */
function loadProgram(): unknown {
    delete require.cache[require.resolve(INDEX)];
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require(INDEX);
}

describe("program: bad configuration registers nothing", () => {
    it("reports every problem at once", async () => {
        let raw = withValue(digitalOceanRaw(), "host.sshAllowedCidrs", ["0.0.0.0/0"]);
        raw = withValue(raw, "backups.retentionDays", 0);
        const mocks = await installMocks(asPulumiConfig(raw), PROGRAM_CALLS);
        assert.throws(loadProgram, (e: unknown) => e instanceof ConfigError && e.problems.length === 2 && /host\.sshAllowedCidrs\[0\]/.test(e.message));
        await settle(mocks);
        assert.equal(mocks.resources.length, 0);
    });

    for (const [name, change, expectedPath] of BAD_CONFIGS) {
        it(name, async () => {
            const mocks = await installMocks(asPulumiConfig(change(digitalOceanRaw())), PROGRAM_CALLS);
            assert.throws(loadProgram, (e: unknown) => e instanceof ConfigError && e.problems.some((p) => p.path.startsWith(expectedPath)));
            await settle(mocks);
            assert.equal(mocks.resources.length, 0, `registered: ${mocks.resources.map((r) => r.name).join(", ")}`);
        });
    }

    for (const [name, raw, plaintextKeys, expectedPath] of PLAINTEXT_SECRETS) {
        it(`secret in clear text: ${name}`, async () => {
            const mocks = await installMocks(asPulumiConfig(raw()), PROGRAM_CALLS, { plaintextKeys });
            assert.throws(loadProgram, (e: unknown) => e instanceof ConfigError && e.problems.some((p) => p.path === expectedPath && /clear text.*pulumi config set --secret/.test(p.message)));
            await settle(mocks);
            assert.equal(mocks.resources.length, 0, `registered: ${mocks.resources.map((r) => r.name).join(", ")}`);
        });
    }

    it("a valid configuration does register resources (the check above can fail)", async () => {
        const mocks = await installMocks(asPulumiConfig(digitalOceanRaw()), PROGRAM_CALLS);
        const exports = loadProgram() as { onebox: pulumi.Output<unknown> };
        await new Promise<void>((resolve) => exports.onebox.apply(() => resolve()));
        await settle(mocks);
        assert.ok(mocks.resources.length > 20);
    });
});
