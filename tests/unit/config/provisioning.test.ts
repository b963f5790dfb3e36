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
import { planOf } from "../../../components/config/plan";
import { provisioningSchema } from "../../../components/config/schema";
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
        assert.deepEqual(Object.keys(part.host).sort(), ["allowSshFromAnywhere", "behindCloudflare", "originLockdown", "sshAllowedCidrs", "swapMb"]);
    });
});

describe("the edge in front of the provisioned part", () => {
    it("a stack behind Cloudflare's proxy hands that fact to the provisioning part, which plans the same", () => {
        const raw = digitalOceanRaw();
        const stack = validateConfig(raw).config;
        const part = provisioningConfig(stack);
        assert.equal(stack.dns?.provider === "cloudflare" && stack.dns.proxied, true, "the fixture is proxied (Cloudflare's default)");
        assert.equal(part.host.behindCloudflare, true);
        assert.equal(planOf(part).behindCloudflare, true);
        assert.equal(planOf(stack).behindCloudflare, true);
        const direct = provisioningConfig(validateConfig({ ...raw, dns: { ...(raw.dns as object), proxied: false } }).config);
        assert.equal(direct.host.behindCloudflare, false);
        assert.equal(planOf(direct).behindCloudflare, false);
    });

    it("origin lockdown in the provisioning part alone needs host.behindCloudflare", () => {
        const part = provisioningConfig(validateConfig(digitalOceanRaw()).config);
        const r = provisioningSchema.safeParse({ ...part, host: { ...part.host, originLockdown: true, behindCloudflare: false } });
        assert.equal(r.success, false);
        assert.ok(r.error?.issues.some((i) => i.path.join(".") === "host.originLockdown" && /behindCloudflare/.test(i.message)));
    });
});
