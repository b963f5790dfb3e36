/**
 * index.ts under mocks for a database-only Lightsail stack (plan 001, Chronos, its
 * frontend hosted elsewhere): no service, no route. Cloudflare DNS creates nothing,
 * Lightsail opens SSH and PostgreSQL only (F1, F3), no step installs a proxy, and
 * the outputs say how backup freshness is seen (heartbeat, status file).
 */
import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { runProgram, type ProgramRun } from "../../helpers/program";
import { unwrap } from "../../helpers/mocks";
import { lightsailRaw } from "../../helpers/fixtures";
import type { StackOutputs } from "../../../components/outputs/contract";
import { assertOutputsClean, plain, remoteCommands, secretValuesIn } from "./common";

let run: ProgramRun;

before(async () => {
    const raw = lightsailRaw();
    raw.services = {};
    delete raw.routes;
    raw.backups = { ...(raw.backups as Record<string, unknown>), heartbeatUrl: "https://hc.example.com/ping/4f1e0c" };
    run = await runProgram(raw);
});

describe("program: database-only Lightsail stack", () => {
    it("Cloudflare DNS creates no record: the stack serves no hostname", () => {
        assert.deepEqual(run.mocks.types().filter((t) => t.startsWith("cloudflare:")), []);
    });

    it("F1/F3: InstancePublicPorts opens SSH and PostgreSQL only, never 80 or 443", () => {
        const ports = run.mocks.one("aws:lightsail/instancePublicPorts:InstancePublicPorts");
        const infos = ports.inputs.portInfos as { fromPort: number; cidrs?: string[] }[];
        assert.deepEqual(infos.map((p) => p.fromPort), [22, 5432]);
        assert.deepEqual(infos[1].cidrs, ["76.76.21.0/24", "198.51.100.7/32"]);
    });

    it("no step renders a proxy: no Caddyfile, no proxy service, ufw opens no public port", () => {
        const commands = remoteCommands(run.mocks);
        assert.ok(commands.length >= 4, "the steps are registered");
        // Every file a step writes travels base64-encoded in a here-document of its script.
        const text = commands
            .map((c) => String(plain<string>(c.inputs.stdin) ?? ""))
            .flatMap((script) => [...script.matchAll(/<<'ONEBOX_EOF'\n([A-Za-z0-9+/=\n]*)\nONEBOX_EOF/g)].map((m) => Buffer.from(m[1], "base64").toString("utf8")))
            .join("\n");
        assert.match(text, /compose\.yaml of chronos-prod/, "the decoded files include the release");
        assert.doesNotMatch(text, /Caddyfile of /, "no Caddyfile is rendered");
        assert.doesNotMatch(text, /caddy:2/, "the proxy image is neither pulled nor run");
        assert.match(text, /ONEBOX_PUBLIC_TCP_PORTS=''/);
    });

    it("outputs: no status URL, the heartbeat and the status file instead; no URL, no DNS record", async () => {
        const outputs = (await unwrap(run.exports.onebox)) as StackOutputs;
        assertOutputsClean(outputs, secretValuesIn(run.mocks, []));
        assert.deepEqual(outputs.urls, []);
        assert.deepEqual(outputs.dns, []);
        assert.equal(outputs.backups?.statusUrl, null);
        assert.equal(outputs.backups?.heartbeat, true);
        assert.equal(outputs.backups?.statusFile, "/var/lib/onebox/chronos-prod/status/backup.json");
        assert.equal(outputs.database?.port, 5432);
    });
});
