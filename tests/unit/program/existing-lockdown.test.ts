/**
 * index.ts under mocks for an existing server with origin lockdown: it has no
 * cloud firewall, so the server's own firewall (ufw + DOCKER-USER, set by the
 * bootstrap) is what admits only Cloudflare to 80/443 (F1).
 */
import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { CLOUDFLARE_RANGES, runProgram, type ProgramRun } from "../../helpers/program";
import { existingRaw } from "../../helpers/fixtures";
import { plain, remoteCommands } from "./common";

/** The content a step script installs at `file` (the scripts carry files base64-encoded in here-documents). */
function installedFile(script: string, file: string): string {
    const match = new RegExp(`put_file ${file.replace(/[.]/g, "\\.")} \\S+ \\S+ <<'(\\w+)'\\n([\\s\\S]*?)\\n\\1\\n`).exec(script);
    assert.ok(match, `the script installs ${file}`);
    return Buffer.from(match[2], "base64").toString("utf8");
}

describe("program: existing server with origin lockdown (F1 without a cloud firewall)", () => {
    let locked: ProgramRun;

    before(async () => {
        const raw = existingRaw();
        delete raw.proxy;
        locked = await runProgram({
            ...raw,
            host: { ...(raw.host as object), originLockdown: true },
            dns: { provider: "cloudflare", zone: "fingerflow.example.net", proxied: true },
            tls: { mode: "cloudflare-origin" },
        });
    });

    it("has no cloud firewall to lock down, so the bootstrap admits only Cloudflare's ranges to 80/443 on the server", () => {
        assert.deepEqual(locked.mocks.types().filter((t) => /firewall|instancePublicPorts/i.test(t)), []);
        const bootstrap = remoteCommands(locked.mocks).find((c) => c.name === "provision-bootstrap");
        assert.ok(bootstrap, "the bootstrap step exists");
        const env = installedFile(plain<string>(bootstrap.inputs.stdin), "/etc/onebox/fingerflow-prod/bootstrap.env");
        assert.match(env, /^ONEBOX_PUBLIC_TCP_PORTS=''$/m);
        const cidrs = [...CLOUDFLARE_RANGES.ipv4, ...CLOUDFLARE_RANGES.ipv6];
        const expected = [80, 443].flatMap((port) => cidrs.map((c) => `${port}:${c}`)).join(" ");
        assert.ok(env.includes(`ONEBOX_RESTRICTED_PORTS='${expected}'\n`), env);
    });
});
