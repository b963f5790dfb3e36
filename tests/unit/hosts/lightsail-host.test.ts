/**
 * LightsailHost under recording mocks: resource graph and the
 * security-relevant inputs (F1, F3, K1, K2, S5, R1, R6).
 *
 * Resource options are observed with a `transformations` recorder (see
 * digitalocean-host.test.ts); Lightsail names, which the engine would
 * autoname, are emulated by the test mocks.
 */
import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import * as pulumi from "@pulumi/pulumi";
import { isSecret, unwrap } from "../../helpers/mocks";
import {
    LIGHTSAIL_BLUEPRINTS,
    LIGHTSAIL_DATA_DISK_PATH,
    LIGHTSAIL_HOST_TYPE,
    LightsailHost,
    lightsailBundleProblem,
    type LightsailHostConfig,
} from "../../../components/hosts/lightsail-host";
import { HEREDOC } from "../../../components/hosts/first-boot";
import { DEPLOY_USER } from "../../../components/hosts/host";
import type { StackConfig } from "../../../components/config/schema";
import {
    ADMIN_KEY,
    CLOUDFLARE,
    LIGHTSAIL_HOST,
    LOCKDOWN_EXTRA,
    cloudflareCalls,
    heredoc,
    inputSecret,
    installHostMocks,
    settle,
    stackConfig,
    type HostMocks,
} from "./support";
import { OptionsRecorder } from "../../helpers/options-recorder";

const T = {
    instance: "aws:lightsail/instance:Instance",
    keyPair: "aws:lightsail/keyPair:KeyPair",
    disk: "aws:lightsail/disk:Disk",
    diskAttachment: "aws:lightsail/disk_attachment:Disk_attachment",
    staticIp: "aws:lightsail/staticIp:StaticIp",
    staticIpAttachment: "aws:lightsail/staticIpAttachment:StaticIpAttachment",
    ports: "aws:lightsail/instancePublicPorts:InstancePublicPorts",
    privateKey: "tls:index/privateKey:PrivateKey",
    identity: "onebox:hosts:SshIdentity",
};

interface PortInfo {
    protocol: string;
    fromPort: number;
    toPort: number;
    cidrs?: string[];
    ipv6Cidrs?: string[];
}

function build(name: string, config: StackConfig, transformation: pulumi.ResourceTransformation): LightsailHost {
    return new LightsailHost(name, { app: config.app, host: config.host as LightsailHostConfig, database: config.database }, { transformations: [transformation] });
}

/** The launch script the instance was created with, and whether it was a secret input. */
function userDataOf(mocks: HostMocks, instance: string): { secret: boolean; script: string } {
    const { secret, value } = inputSecret(mocks.one(T.instance, instance).inputs.userData);
    return { secret, script: String(value) };
}

void describe("LightsailHost", () => {
    let mocks: HostMocks;
    let recorder: OptionsRecorder;
    let chronos: LightsailHost;
    let locked: LightsailHost;
    const cf = cloudflareCalls();

    before(async () => {
        mocks = await installHostMocks(cf.calls);
        recorder = new OptionsRecorder();
        // Chronos: PostgreSQL open to the frontend host's ranges and one admin address.
        chronos = build("chronos", stackConfig(LIGHTSAIL_HOST, { database: { allowedCidrs: ["76.76.21.0/24", "203.0.113.7/32"] } }), recorder.transformation);
        locked = build("locked", stackConfig({ ...LIGHTSAIL_HOST, originLockdown: true, os: "ubuntu-24.04" }, LOCKDOWN_EXTRA), recorder.transformation);
        for (const host of [chronos, locked]) {
            await Promise.all(host.readyResources.map((r) => unwrap(r.urn)));
        }
        await settle(mocks);
    });

    void test("resource graph: exactly these children, each parented to the host (keys under the identity)", () => {
        const graph = recorder.seen
            .filter((s) => s.name === "chronos" || s.name.startsWith("chronos-"))
            .map((s) => `${s.type} ${s.name} <- ${s.parent ?? "(root)"}`);
        assert.deepEqual(graph.sort(), [
            `${LIGHTSAIL_HOST_TYPE} chronos <- (root)`,
            `${T.keyPair} chronos-deploy-key <- chronos`,
            `${T.disk} chronos-data <- chronos`,
            `${T.instance} chronos-server <- chronos`,
            `${T.staticIp} chronos-ip <- chronos`,
            `${T.staticIpAttachment} chronos-ip-attachment <- chronos`,
            `${T.diskAttachment} chronos-data-attachment <- chronos`,
            `${T.ports} chronos-ports <- chronos`,
            `${T.identity} chronos-ssh <- chronos`,
            `${T.privateKey} chronos-ssh-deploy-key <- chronos-ssh`,
            `${T.privateKey} chronos-ssh-host-key <- chronos-ssh`,
        ].sort());
        const registered = mocks.resources.filter((r) => r.name === "chronos" || r.name.startsWith("chronos-")).map((r) => r.name);
        assert.deepEqual(registered.sort(), graph.map((g) => g.split(" ")[1]).sort());
    });

    void test("the instance: blueprint per os, bundle, availability zone = region + zone, dual stack, region on every resource", () => {
        const inputs = mocks.one(T.instance, "chronos-server").inputs;
        assert.equal(inputs.blueprintId, "debian_12");
        assert.equal(inputs.bundleId, "small_3_0");
        assert.equal(inputs.availabilityZone, "eu-central-1b");
        assert.equal(inputs.ipAddressType, "dualstack");
        assert.deepEqual(inputs.tags, { onebox: "true", app: "finances", env: "prod" });
        assert.equal(mocks.one(T.instance, "locked-server").inputs.blueprintId, "ubuntu_24_04");
        for (const r of mocks.resources.filter((x) => x.name.startsWith("chronos-") && x.type.startsWith("aws:"))) {
            assert.equal(r.inputs.region, "eu-central-1", `${r.type} ${r.name} region`);
        }
    });

    void test("blueprint ids for every supported os", () => {
        assert.deepEqual(LIGHTSAIL_BLUEPRINTS, { "ubuntu-22.04": "ubuntu_22_04", "ubuntu-24.04": "ubuntu_24_04", "debian-12": "debian_12", "debian-13": "debian_13" });
    });

    void test("F3: exactly one InstancePublicPorts per instance, for that instance", () => {
        const ports = mocks.ofType(T.ports);
        assert.deepEqual(ports.map((p) => p.name).sort(), ["chronos-ports", "locked-ports"]);
        assert.equal(mocks.one(T.ports, "chronos-ports").inputs.instanceName, "chronos-server-autoname");
    });

    void test("F1/F3: Chronos opens SSH to admins, 80/443 to the world and PostgreSQL to its listed CIDRs only, each port with explicit cidrs and ipv6Cidrs", () => {
        const infos = mocks.one(T.ports, "chronos-ports").inputs.portInfos as PortInfo[];
        assert.deepEqual(infos, [
            { protocol: "tcp", fromPort: 22, toPort: 22, cidrs: ["203.0.113.7/32"], ipv6Cidrs: ["::1/128"] },
            { protocol: "tcp", fromPort: 80, toPort: 80, cidrs: ["0.0.0.0/0"], ipv6Cidrs: ["::/0"] },
            { protocol: "tcp", fromPort: 443, toPort: 443, cidrs: ["0.0.0.0/0"], ipv6Cidrs: ["::/0"] },
            { protocol: "tcp", fromPort: 5432, toPort: 5432, cidrs: ["76.76.21.0/24", "203.0.113.7/32"], ipv6Cidrs: ["::1/128"] },
        ]);
    });

    void test("F3: every declared port, on every instance, carries non-empty cidrs and ipv6Cidrs", () => {
        for (const ports of mocks.ofType(T.ports)) {
            for (const info of ports.inputs.portInfos as PortInfo[]) {
                assert.ok((info.cidrs ?? []).length > 0, `${ports.name} ${info.fromPort}: cidrs`);
                assert.ok((info.ipv6Cidrs ?? []).length > 0, `${ports.name} ${info.fromPort}: ipv6Cidrs`);
            }
        }
    });

    void test("F1: origin lockdown admits only Cloudflare on 80/443, and never opens 5432 when no CIDR is listed", () => {
        const infos = mocks.one(T.ports, "locked-ports").inputs.portInfos as PortInfo[];
        assert.deepEqual(infos.map((i) => i.fromPort), [22, 80, 443]);
        for (const info of infos.filter((i) => i.fromPort !== 22)) {
            assert.deepEqual(info.cidrs, CLOUDFLARE.ipv4);
            assert.deepEqual(info.ipv6Cidrs, CLOUDFLARE.ipv6);
        }
        assert.equal(cf.count(), 1, "Cloudflare's ranges are looked up for the locked-down host only");
    });

    void test("K1: the instance is created with the imported deploy key pair; admins get the deploy user's authorized_keys", async () => {
        const keyPair = mocks.one(T.keyPair, "chronos-deploy-key");
        const deployPublic = await unwrap(keyPair.inputs.publicKey as string);
        assert.equal(deployPublic, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForchronossshdeploykey onebox-deploy");
        assert.equal(mocks.one(T.instance, "chronos-server").inputs.keyPairName, "chronos-deploy-key-autoname");
        assert.equal(heredoc(userDataOf(mocks, "chronos-server").script, HEREDOC.authorizedKeys), `${deployPublic}\n${ADMIN_KEY}\n`);
    });

    void test("K2: userData, blueprintId (and creation-only keyPairName) changes are ignored, so they never replace the instance", () => {
        const ignored = recorder.named("chronos-server").opts.ignoreChanges ?? [];
        for (const property of ["userData", "blueprintId", "keyPairName"]) {
            assert.ok(ignored.includes(property), `${property} ignored`);
        }
    });

    void test("K2: the connection address and ipv4Address are the static IP, attached to the instance", async () => {
        assert.equal(await unwrap(chronos.connection.host), "198.51.100.20");
        assert.equal(await unwrap(chronos.ipv4Address), "198.51.100.20");
        const attachment = mocks.one(T.staticIpAttachment, "chronos-ip-attachment").inputs;
        assert.equal(attachment.staticIpName, "chronos-ip-autoname");
        assert.equal(attachment.instanceName, "chronos-server-autoname");
        assert.equal(recorder.named("chronos-ip-attachment").opts.deleteBeforeReplace, true);
        assert.equal(await unwrap(chronos.ipv6Address), "2001:db8::20");
    });

    void test("S5: the data disk is protected and retained on delete, attached as /dev/xvdf", async () => {
        const opts = recorder.named("chronos-data").opts;
        assert.equal(opts.protect, true);
        assert.equal(opts.retainOnDelete, true);
        const disk = mocks.one(T.disk, "chronos-data").inputs;
        assert.equal(disk.sizeInGb, 10);
        assert.equal(disk.availabilityZone, "eu-central-1b");
        const attachment = mocks.one(T.diskAttachment, "chronos-data-attachment").inputs;
        assert.deepEqual(
            { diskName: attachment.diskName, instanceName: attachment.instanceName, diskPath: attachment.diskPath },
            { diskName: "chronos-data-autoname", instanceName: "chronos-server-autoname", diskPath: "/dev/xvdf" },
        );
        assert.equal(recorder.named("chronos-data-attachment").opts.deleteBeforeReplace, true);
        assert.equal(await unwrap(chronos.dataDevice), LIGHTSAIL_DATA_DISK_PATH);
        assert.equal(chronos.dataPath, "/mnt/data");
    });

    void test("R1: connection.hostKey is the generated host public key, and the launch script installs the matching private key", async () => {
        const hostKey = await unwrap(chronos.connection.hostKey);
        assert.equal(hostKey, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForchronossshhostkey");
        const script = userDataOf(mocks, "chronos-server").script;
        assert.ok(script.startsWith("#!/bin/sh\n"), "Lightsail gets the /bin/sh wrapper");
        const inner = heredoc(script, HEREDOC.script);
        assert.equal(heredoc(inner, HEREDOC.hostPublicKey), `${hostKey}\n`);
        assert.equal(heredoc(inner, HEREDOC.hostPrivateKey), "-----BEGIN OPENSSH PRIVATE KEY-----\nfake-chronos-ssh-host-key\n-----END OPENSSH PRIVATE KEY-----\n");
        assert.ok(inner.includes("readonly DATA_DEVICE=/dev/xvdf\n"));
    });

    void test("R6: the launch script (host private key) is a secret input; the deploy private key is a secret output", async () => {
        assert.equal(userDataOf(mocks, "chronos-server").secret, true);
        assert.equal(await isSecret(chronos.connection.privateKey), true);
        assert.match(await unwrap(chronos.connection.privateKey), /fake-chronos-ssh-deploy-key/);
    });

    void test("the connection logs in as the deploy user on port 22; readyResources are the attachments and the ports", () => {
        assert.equal(chronos.connection.user, DEPLOY_USER);
        assert.equal(chronos.connection.port, 22);
        assert.deepEqual(chronos.readyResources.map((r) => (r as unknown as { __name: string }).__name), ["chronos-ip-attachment", "chronos-data-attachment", "chronos-ports"]);
    });
});

void describe("Lightsail bundles", () => {
    void test("IPv6-only bundles are refused (no static IPv4, K2); dual-stack bundles pass", () => {
        assert.match(lightsailBundleProblem("nano_ipv6_3_0") ?? "", /IPv6-only/);
        assert.match(lightsailBundleProblem("micro_3_0_ipv6") ?? "", /IPv6-only/);
        assert.equal(lightsailBundleProblem("micro_3_0"), undefined);
    });
});
