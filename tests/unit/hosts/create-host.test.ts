/**
 * createHost picks the implementation from `host.provider`.
 */
import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { unwrap } from "../../helpers/mocks";
import { DigitalOceanHost, ExistingHost, LightsailHost, createHost } from "../../../components/hosts";
import { DO_HOST, EXISTING_HOST, LIGHTSAIL_HOST, installHostMocks, settle, stackConfig, type HostMocks } from "./support";

void describe("createHost", () => {
    let mocks: HostMocks;

    before(async () => {
        mocks = await installHostMocks();
    });

    const cases = [
        { provider: "digitalocean", host: DO_HOST, cls: DigitalOceanHost, server: "digitalocean:index/droplet:Droplet" },
        { provider: "lightsail", host: LIGHTSAIL_HOST, cls: LightsailHost, server: "aws:lightsail/instance:Instance" },
        { provider: "existing", host: EXISTING_HOST, cls: ExistingHost, server: undefined },
    ] as const;

    for (const c of cases) {
        void test(`provider ${c.provider} gives a ${c.cls.name}`, async () => {
            const name = `pick-${c.provider}`;
            const host = createHost(name, stackConfig(c.host), undefined, { existingPrivateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nk\n-----END OPENSSH PRIVATE KEY-----\n" });
            assert.ok(host instanceof c.cls);
            assert.equal(host.provider, c.provider);
            await unwrap(host.connection.host);
            await settle(mocks);
            const servers = mocks.resources.filter((r) => r.name.startsWith(`${name}-`) && (r.type.endsWith(":Droplet") || r.type.endsWith(":Instance")));
            assert.deepEqual(servers.map((s) => s.type), c.server ? [c.server] : []);
        });
    }

    void test("provider existing without the private key fails with the fix", () => {
        assert.throws(() => createHost("no-key", stackConfig(EXISTING_HOST)), /pulumi config set --secret sshPrivateKey/);
    });
});
