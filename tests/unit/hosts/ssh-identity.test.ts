/**
 * The generated SSH identities (R1, R6) and the key-line helpers.
 */
import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { isSecret, unwrap } from "../../helpers/mocks";
import { PRIVATE_KEY_OUTPUTS, SSH_IDENTITY_TYPE, SshIdentity, authorizedKeyLine, openSshKeyFields } from "../../../components/hosts/ssh-identity";
import { installHostMocks, settle, type HostMocks } from "./support";
import { OptionsRecorder } from "../../helpers/options-recorder";

const KEY_TYPE = "tls:index/privateKey:PrivateKey";

void describe("SshIdentity", () => {
    let mocks: HostMocks;
    let identity: SshIdentity;
    let recorder: OptionsRecorder;

    before(async () => {
        mocks = await installHostMocks();
        recorder = new OptionsRecorder();
        identity = new SshIdentity("id", {}, { transformations: [recorder.transformation] });
        await unwrap(identity.hostPublicKey);
        await settle(mocks);
    });

    void test("generates exactly two ED25519 keys, children of the component", () => {
        assert.deepEqual(
            mocks.ofType(KEY_TYPE).map((r) => [r.name, r.inputs.algorithm]),
            [
                ["id-deploy-key", "ED25519"],
                ["id-host-key", "ED25519"],
            ],
        );
        assert.equal(recorder.named("id").type, SSH_IDENTITY_TYPE);
        for (const name of ["id-deploy-key", "id-host-key"]) {
            assert.equal(recorder.named(name).parent, "id");
        }
    });

    void test("R6: both private keys are secret outputs, and the resources mark every private output secret", async () => {
        assert.equal(await isSecret(identity.deployPrivateKey), true);
        assert.equal(await isSecret(identity.hostPrivateKey), true);
        assert.match(await unwrap(identity.hostPrivateKey), /^-----BEGIN OPENSSH PRIVATE KEY-----\nfake-id-host-key\n/);
        for (const name of ["id-deploy-key", "id-host-key"]) {
            const secretOutputs = recorder.named(name).opts as { additionalSecretOutputs?: string[] };
            for (const output of PRIVATE_KEY_OUTPUTS) {
                assert.ok(secretOutputs.additionalSecretOutputs?.includes(output), `${name}: ${output} must be secret`);
            }
        }
    });

    void test("R1: the host public key is the host key's public half, without newline or comment", async () => {
        assert.equal(await unwrap(identity.hostPublicKey), "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForidhostkey");
        assert.equal(await unwrap(identity.deployPublicKey), "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForiddeploykey onebox-deploy");
        assert.equal(await isSecret(identity.hostPublicKey), false);
    });
});

void describe("key line helpers", () => {
    void test("openSshKeyFields drops comment and whitespace", () => {
        assert.equal(openSshKeyFields("  ssh-ed25519 AAAAC3Nz+/= root@web extra words\n"), "ssh-ed25519 AAAAC3Nz+/=");
        assert.equal(openSshKeyFields("ssh-rsa AAAAB3Nz"), "ssh-rsa AAAAB3Nz");
    });

    void test("openSshKeyFields refuses anything else", () => {
        for (const bad of ["", "ssh-ed25519", "-----BEGIN OPENSSH PRIVATE KEY-----", "ssh-ed25519 AAAA\nrm -rf /", "ssh-dss AAAA"]) {
            assert.throws(() => openSshKeyFields(bad), /not an OpenSSH public key/, bad);
        }
    });

    void test("authorizedKeyLine appends a safe comment only", () => {
        assert.equal(authorizedKeyLine("ssh-ed25519 AAAA old-comment\n", "onebox-deploy"), "ssh-ed25519 AAAA onebox-deploy");
        assert.throws(() => authorizedKeyLine("ssh-ed25519 AAAA", "a b"), /comment/);
    });
});
