/** index.ts under mocks for an existing server behind an existing Traefik: nothing created in a cloud. */
import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { runProgram, type ProgramRun } from "../../helpers/program";
import { unwrap } from "../../helpers/mocks";
import { EXISTING_DEPLOY_KEY, existingRaw } from "../../helpers/fixtures";
import { assertNoSecretInCommands, assertOutputsClean, plain, remoteCommands, secretValuesIn } from "./common";

let run: ProgramRun;
const SUPPLIED = ["003a9c1e5b7d2f40000000001", "K003xY8qP2mN5vR7tW9zB1cD4fG6hJ"];

before(async () => {
    run = await runProgram(existingRaw());
});

describe("program: existing server", () => {
    it("creates no cloud resource (no server, firewall, DNS or bucket)", () => {
        const cloud = run.mocks.types().filter((t) => /^(digitalocean|aws|cloudflare):/.test(t));
        assert.deepEqual(cloud, []);
    });

    it("R1: connects with the configured address, port, user and pinned host key", () => {
        const commands = remoteCommands(run.mocks);
        assert.ok(commands.length >= 4);
        for (const cmd of commands) {
            const conn = plain<Record<string, unknown>>(cmd.inputs.connection);
            assert.equal(conn.host, "203.0.113.50");
            assert.equal(conn.port, 2222);
            assert.equal(conn.user, "deploy");
            assert.equal(conn.hostKey, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyOfTheExistingServer0000000000000");
            assert.equal(conn.privateKey, EXISTING_DEPLOY_KEY);
        }
    });

    it("R3: neither the deploy key nor the supplied bucket credentials appear in a command string", () => {
        assertNoSecretInCommands(run.mocks, [...secretValuesIn(run.mocks, SUPPLIED), "fixture"]);
    });

    it("exports the outputs contract without secrets", async () => {
        const outputs = await unwrap(run.exports.onebox);
        assertOutputsClean(outputs, secretValuesIn(run.mocks, SUPPLIED));
        const o = outputs as { host: { provider: string; sshPort: number }; backups?: { endpoint?: string } };
        assert.equal(o.host.provider, "existing");
        assert.equal(o.host.sshPort, 2222);
    });
});
