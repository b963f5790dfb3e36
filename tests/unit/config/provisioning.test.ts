/**
 * The provisioning part of a stack (what HostProvisioner takes) is mapped from
 * the stack configuration in one place (`provisioningConfig`), and the
 * provisioner validates it again with the same rules: the mapping of every
 * committed stack must come back from that validation unchanged (no default
 * or normalisation applied twice, nothing dropped).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { loadConfig, provisioningConfig, validateConfig, validateProvisioning } from "../../../components/config/load";
import { digitalOceanRaw, existingRaw, lightsailRaw, readStackFile } from "../../helpers/fixtures";

const STACKS = {
    digitalocean: () => validateConfig(digitalOceanRaw()).config,
    lightsail: () => validateConfig(lightsailRaw()).config,
    existing: () => validateConfig(existingRaw()).config,
    "Pulumi.prod.yaml": () => loadConfig(readStackFile("Pulumi.prod.yaml"), () => true, undefined).config,
};

describe("provisioning part of a stack", () => {
    for (const [name, load] of Object.entries(STACKS)) {
        it(`${name}: validating the mapped part returns it unchanged`, () => {
            const part = provisioningConfig(load());
            assert.deepEqual(validateProvisioning(part, "test"), part);
        });
    }

    it("holds no DNS settings and, of the host, only its hardening", () => {
        const part = provisioningConfig(validateConfig(digitalOceanRaw()).config);
        assert.equal("dns" in part, false);
        assert.deepEqual(Object.keys(part.host).sort(), ["allowSshFromAnywhere", "originLockdown", "sshAllowedCidrs", "swapMb"]);
    });
});
