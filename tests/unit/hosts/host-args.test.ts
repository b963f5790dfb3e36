/**
 * The host components take arguments of their own: the `host` settings as a
 * program writes them (defaults left out), validated by the component before
 * it registers anything, with errors naming the component and each setting.
 */
import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { unwrap } from "../../helpers/mocks";
import { DigitalOceanHost } from "../../../components/hosts/digitalocean-host";
import { ExistingHost } from "../../../components/hosts/existing-host";
import { LightsailHost } from "../../../components/hosts/lightsail-host";
import { installHostMocks, settle, type HostMocks } from "./support";

const APP = { name: "hello", environment: "demo" };
const HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleHostKeyOfTheServer00000000000000000";

void describe("host components: arguments of their own", () => {
    let mocks: HostMocks;
    before(async () => {
        mocks = await installHostMocks();
    });

    void test("defaults apply to settings left out (no provider, size, os or volume size given)", async () => {
        mocks.reset();
        const host = new DigitalOceanHost("lib", { app: APP, host: { region: "fra1", sshAllowedCidrs: ["198.51.100.0/24"] } });
        await unwrap(host.ipv4Address);
        await settle(mocks);
        const droplet = mocks.one("digitalocean:index/droplet:Droplet");
        assert.equal(droplet.inputs.size, "s-1vcpu-1gb");
        assert.equal(droplet.inputs.image, "ubuntu-24-04-x64");
        assert.equal(mocks.one("digitalocean:index/volume:Volume").inputs.size, 10);
        // No database publication given: the firewall opens 22 (admins), 80 and 443 only.
        const ports = (mocks.one("digitalocean:index/firewall:Firewall").inputs.inboundRules as { portRange: string }[]).map((r) => r.portRange);
        assert.deepEqual([...new Set(ports)].sort(), ["22", "443", "80"]);
    });

    void test("F1: SSH from the whole internet is refused by the component itself, naming the setting; nothing is registered", () => {
        mocks.reset();
        assert.throws(
            () => new DigitalOceanHost("lib", { app: APP, host: { region: "fra1", sshAllowedCidrs: ["0.0.0.0/0"] } }),
            /invalid DigitalOceanHost "lib" arguments \(1 problem\):\n {2}- host\.sshAllowedCidrs\[0\]: 0\.0\.0\.0\/0 opens SSH to every public IPv4 address/,
        );
        assert.throws(
            () => new LightsailHost("lib", { app: APP, host: { region: "eu-central-1", zone: "q", sshAllowedCidrs: ["198.51.100.0/24"] } }),
            /invalid LightsailHost "lib" arguments[\s\S]*host\.zone: zone "q" does not exist in eu-central-1/,
        );
        assert.throws(
            () => new ExistingHost("lib", { host: { address: "203.0.113.10:2222", hostKey: HOST_KEY, allowSshFromAnywhere: true }, privateKey: "k" }),
            /invalid ExistingHost "lib" arguments[\s\S]*host\.address: "203\.0\.113\.10:2222" includes a port/,
        );
        assert.deepEqual(mocks.resources, []);
    });
});
