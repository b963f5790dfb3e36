/**
 * ExistingHost: described entirely by config, nothing created in any cloud.
 */
import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import * as pulumi from "@pulumi/pulumi";
import { isSecret, unwrap } from "../../helpers/mocks";
import { EXISTING_HOST_TYPE, ExistingHost, existingHostAddresses, type ExistingHostConfig } from "../../../components/hosts/existing-host";
import { EXISTING_HOST, installHostMocks, settle, stackConfig, type HostMocks } from "./support";

const PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nexisting-admin-key\n-----END OPENSSH PRIVATE KEY-----\n";

void describe("ExistingHost", () => {
    let mocks: HostMocks;
    let host: ExistingHost;
    let bare: ExistingHost;

    before(async () => {
        mocks = await installHostMocks();
        const config = stackConfig(EXISTING_HOST);
        host = new ExistingHost("fingerflow", { host: config.host as ExistingHostConfig, privateKey: PRIVATE_KEY });
        const minimal = stackConfig({ provider: "existing", address: "2001:db8::77", hostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMinimal", allowSshFromAnywhere: true });
        // Even a private key passed as a plain Output ends up secret.
        bare = new ExistingHost("bare", { host: minimal.host as ExistingHostConfig, privateKey: pulumi.output(PRIVATE_KEY) });
        await unwrap(host.connection.host);
        await settle(mocks);
    });

    void test("registers no cloud resource: only the component itself", () => {
        assert.deepEqual(
            mocks.resources.map((r) => `${r.type} ${r.name}`).sort(),
            [`${EXISTING_HOST_TYPE} bare`, `${EXISTING_HOST_TYPE} fingerflow`],
        );
        assert.deepEqual(host.readyResources, []);
    });

    void test("connection comes from config: address, port, user", async () => {
        assert.equal(await unwrap(host.connection.host), "198.51.100.77");
        assert.equal(host.connection.port, 2222);
        assert.equal(host.connection.user, "ops");
        assert.equal(await unwrap(host.ipv4Address), "198.51.100.77");
        assert.equal(await unwrap(host.ipv6Address), undefined);
    });

    void test("R1: connection.hostKey is the configured host key (comment dropped)", async () => {
        assert.equal(await unwrap(host.connection.hostKey), "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExistingServerHostKey");
    });

    void test("R6: the private key from the caller is a secret output", async () => {
        assert.equal(await isSecret(host.connection.privateKey), true);
        assert.equal(await isSecret(bare.connection.privateKey), true);
        assert.equal(await unwrap(host.connection.privateKey), PRIVATE_KEY);
    });

    void test("data path and device from config; defaults when absent", async () => {
        assert.equal(host.dataPath, "/srv/data");
        assert.equal(await unwrap(host.dataDevice), "/dev/sdb");
        assert.equal(bare.dataPath, "/mnt/data");
        assert.equal(await unwrap(bare.dataDevice), undefined);
        assert.equal(bare.connection.port, 22);
        assert.equal(bare.connection.user, "root");
    });

    void test("an IPv6 literal address is reported as the IPv6 address too", async () => {
        assert.equal(await unwrap(bare.ipv6Address), "2001:db8::77");
        assert.deepEqual(existingHostAddresses("server.example.com"), { ipv4: "server.example.com", ipv6: undefined });
        assert.deepEqual(existingHostAddresses("203.0.113.10"), { ipv4: "203.0.113.10", ipv6: undefined });
    });
});
