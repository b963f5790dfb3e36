/**
 * DigitalOceanHost under recording mocks: resource graph and the
 * security-relevant inputs (F1, F2, K1, K2, S5, R1, R6).
 *
 * Resource OPTIONS (ignoreChanges, protect, retainOnDelete, parent) are not
 * part of MockResourceArgs; they are observed with a `transformations`
 * recorder passed to the component, which Pulumi applies to every descendant
 * with the exact options each child is created with.
 */
import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import * as pulumi from "@pulumi/pulumi";
import { isSecret, unwrap } from "../../helpers/mocks";
import {
    DIGITALOCEAN_HOST_TYPE,
    DIGITALOCEAN_IMAGES,
    DigitalOceanHost,
    dataVolumeName,
    type DigitalOceanHostConfig,
} from "../../../components/hosts/digitalocean-host";
import { HEREDOC } from "../../../components/hosts/first-boot";
import { DEPLOY_USER } from "../../../components/hosts/host";
import type { StackConfig } from "../../../components/config/schema";
import {
    ADMIN_KEY,
    CLOUDFLARE,
    DO_HOST,
    DROPLET_ID,
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
    droplet: "digitalocean:index/droplet:Droplet",
    sshKey: "digitalocean:index/sshKey:SshKey",
    volume: "digitalocean:index/volume:Volume",
    volumeAttachment: "digitalocean:index/volumeAttachment:VolumeAttachment",
    reservedIp: "digitalocean:index/reservedIp:ReservedIp",
    reservedIpAssignment: "digitalocean:index/reservedIpAssignment:ReservedIpAssignment",
    firewall: "digitalocean:index/firewall:Firewall",
    project: "digitalocean:index/project:Project",
    privateKey: "tls:index/privateKey:PrivateKey",
    identity: "onebox:hosts:SshIdentity",
};

function build(name: string, config: StackConfig, transformation: pulumi.ResourceTransformation): DigitalOceanHost {
    return new DigitalOceanHost(name, { app: config.app, host: config.host as DigitalOceanHostConfig, database: config.database }, { transformations: [transformation] });
}

/** The first-boot script the droplet was created with, and whether it was a secret input. */
function userDataOf(mocks: HostMocks, droplet: string): { secret: boolean; script: string } {
    const { secret, value } = inputSecret(mocks.one(T.droplet, droplet).inputs.userData);
    return { secret, script: String(value) };
}

void describe("DigitalOceanHost", () => {
    let mocks: HostMocks;
    let recorder: OptionsRecorder;
    let web: DigitalOceanHost;
    let locked: DigitalOceanHost;
    const cf = cloudflareCalls();

    before(async () => {
        mocks = await installHostMocks(cf.calls);
        recorder = new OptionsRecorder();
        web = build("web", stackConfig(DO_HOST), recorder.transformation);
        locked = build(
            "locked",
            stackConfig({ ...DO_HOST, originLockdown: true, project: "Finances", os: "debian-13", ipv6: false }, {
                ...LOCKDOWN_EXTRA,
                database: { allowedCidrs: ["198.51.100.0/24"] },
            }),
            recorder.transformation,
        );
        for (const host of [web, locked]) {
            await Promise.all(host.readyResources.map((r) => unwrap(r.urn)));
        }
        await settle(mocks);
    });

    void test("resource graph: exactly these children, each parented to the host (keys under the identity)", () => {
        const graph = recorder.seen.filter((s) => s.name === "web" || s.name.startsWith("web-")).map((s) => `${s.type} ${s.name} <- ${s.parent ?? "(root)"}`);
        assert.deepEqual(graph.sort(), [
            `${DIGITALOCEAN_HOST_TYPE} web <- (root)`,
            `${T.firewall} web-firewall <- web`,
            `${T.droplet} web-server <- web`,
            `${T.reservedIp} web-ip <- web`,
            `${T.reservedIpAssignment} web-ip-assignment <- web`,
            `${T.sshKey} web-deploy-key <- web`,
            `${T.volume} web-data <- web`,
            `${T.volumeAttachment} web-data-attachment <- web`,
            `${T.identity} web-ssh <- web`,
            `${T.privateKey} web-ssh-deploy-key <- web-ssh`,
            `${T.privateKey} web-ssh-host-key <- web-ssh`,
        ].sort());
        // and they all reached the (mock) engine
        const registered = mocks.resources.filter((r) => r.name === "web" || r.name.startsWith("web-")).map((r) => r.name);
        assert.deepEqual(registered.sort(), graph.map((g) => g.split(" ")[1]).sort());
    });

    void test("the droplet: image per os, size, region, IPv6, monitoring on, tags, hostname", () => {
        const inputs = mocks.one(T.droplet, "web-server").inputs;
        assert.equal(inputs.image, "ubuntu-22-04-x64");
        assert.equal(inputs.size, "s-1vcpu-1gb");
        assert.equal(inputs.region, "fra1");
        assert.equal(inputs.ipv6, true);
        assert.equal(inputs.monitoring, true);
        assert.equal(inputs.backups, false);
        assert.equal(inputs.name, "finances-prod");
        assert.deepEqual(inputs.tags, ["onebox", "app:finances", "env:prod", "team-a"]);
        assert.equal(mocks.one(T.droplet, "locked-server").inputs.image, "debian-13-x64");
        assert.equal(mocks.one(T.droplet, "locked-server").inputs.ipv6, false);
    });

    void test("image slugs for every supported os", () => {
        assert.deepEqual(DIGITALOCEAN_IMAGES, {
            "ubuntu-22.04": "ubuntu-22-04-x64",
            "ubuntu-24.04": "ubuntu-24-04-x64",
            "debian-12": "debian-12-x64",
            "debian-13": "debian-13-x64",
        });
    });

    void test("F1: inbound rules are SSH from admin CIDRs and 80/443 from the world, nothing else", () => {
        assert.deepEqual(mocks.one(T.firewall, "web-firewall").inputs.inboundRules, [
            { protocol: "tcp", portRange: "22", sourceAddresses: ["203.0.113.7/32", "2001:db8:1::/48"] },
            { protocol: "tcp", portRange: "80", sourceAddresses: ["0.0.0.0/0", "::/0"] },
            { protocol: "tcp", portRange: "443", sourceAddresses: ["0.0.0.0/0", "::/0"] },
        ]);
    });

    void test("F1: origin lockdown admits only Cloudflare on 80/443; the database port only from its listed CIDRs", () => {
        const cfSources = [...CLOUDFLARE.ipv4, ...CLOUDFLARE.ipv6];
        assert.deepEqual(mocks.one(T.firewall, "locked-firewall").inputs.inboundRules, [
            { protocol: "tcp", portRange: "22", sourceAddresses: ["203.0.113.7/32", "2001:db8:1::/48"] },
            { protocol: "tcp", portRange: "80", sourceAddresses: cfSources },
            { protocol: "tcp", portRange: "443", sourceAddresses: cfSources },
            { protocol: "tcp", portRange: "5432", sourceAddresses: ["198.51.100.0/24"] },
        ]);
        assert.equal(cf.count(), 1, "Cloudflare's ranges are looked up for the locked-down host only");
    });

    void test("F2: explicit outbound rules (DNS, HTTP/S, NTP, SMTP submission) to 0.0.0.0/0 and ::/0", () => {
        const world = ["0.0.0.0/0", "::/0"];
        assert.deepEqual(mocks.one(T.firewall, "web-firewall").inputs.outboundRules, [
            { protocol: "udp", portRange: "53", destinationAddresses: world },
            { protocol: "tcp", portRange: "53", destinationAddresses: world },
            { protocol: "tcp", portRange: "80", destinationAddresses: world },
            { protocol: "tcp", portRange: "443", destinationAddresses: world },
            { protocol: "udp", portRange: "123", destinationAddresses: world },
            { protocol: "tcp", portRange: "587", destinationAddresses: world },
            { protocol: "tcp", portRange: "465", destinationAddresses: world },
        ]);
    });

    void test("F1/F2: the firewall is attached to the droplet", () => {
        assert.deepEqual(mocks.one(T.firewall, "web-firewall").inputs.dropletIds, [DROPLET_ID]);
    });

    void test("K1: the droplet is created with the uploaded deploy key; admins get the deploy user's authorized_keys", async () => {
        const key = mocks.one(T.sshKey, "web-deploy-key");
        assert.equal(mocks.ofType(T.sshKey).filter((k) => k.name.startsWith("web-")).length, 1, "admin keys are not uploaded (DigitalOcean refuses duplicates)");
        assert.deepEqual(mocks.one(T.droplet, "web-server").inputs.sshKeys, [key.id]);
        const deployPublic = await unwrap(key.inputs.publicKey as string);
        assert.equal(deployPublic, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForwebsshdeploykey onebox-deploy");
        assert.equal(heredoc(userDataOf(mocks, "web-server").script, HEREDOC.authorizedKeys), `${deployPublic}\n${ADMIN_KEY}\n`);
    });

    void test("K2: userData, image (and creation-only sshKeys) changes are ignored, so they never replace the droplet", () => {
        const ignored = recorder.named("web-server").opts.ignoreChanges ?? [];
        for (const property of ["userData", "image", "sshKeys"]) {
            assert.ok(ignored.includes(property), `${property} ignored`);
        }
    });

    void test("K2: the connection address and ipv4Address are the reserved IP, assigned to the droplet", async () => {
        const reserved = mocks.one(T.reservedIp, "web-ip");
        assert.equal(reserved.inputs.region, "fra1");
        assert.equal(await unwrap(web.connection.host), "203.0.113.20");
        assert.equal(await unwrap(web.ipv4Address), "203.0.113.20");
        assert.deepEqual(mocks.one(T.reservedIpAssignment, "web-ip-assignment").inputs, { ipAddress: "203.0.113.20", dropletId: DROPLET_ID });
        assert.equal(recorder.named("web-ip-assignment").opts.deleteBeforeReplace, true);
        assert.equal(await unwrap(web.ipv6Address), "2001:db8::10");
        assert.equal(await unwrap(locked.ipv6Address), undefined);
    });

    void test("S5: the data volume is protected and retained on delete, ext4, attached to the droplet", async () => {
        const opts = recorder.named("web-data").opts;
        assert.equal(opts.protect, true);
        assert.equal(opts.retainOnDelete, true);
        const volume = mocks.one(T.volume, "web-data");
        assert.equal(volume.inputs.name, "finances-prod-data");
        assert.equal(volume.inputs.size, 10);
        assert.equal(volume.inputs.region, "fra1");
        assert.equal(volume.inputs.initialFilesystemType, "ext4");
        assert.deepEqual(mocks.one(T.volumeAttachment, "web-data-attachment").inputs, { dropletId: DROPLET_ID, volumeId: volume.id });
        assert.equal(recorder.named("web-data-attachment").opts.deleteBeforeReplace, true);
        assert.equal(await unwrap(web.dataDevice), "/dev/disk/by-id/scsi-0DO_Volume_finances-prod-data");
        assert.equal(web.dataPath, "/mnt/data");
    });

    void test("R1: connection.hostKey is the generated host public key, and user data installs the matching private key", async () => {
        const hostKey = await unwrap(web.connection.hostKey);
        assert.equal(hostKey, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForwebsshhostkey");
        const script = userDataOf(mocks, "web-server").script;
        assert.equal(heredoc(script, HEREDOC.hostPublicKey), `${hostKey}\n`);
        assert.equal(heredoc(script, HEREDOC.hostPrivateKey), "-----BEGIN OPENSSH PRIVATE KEY-----\nfake-web-ssh-host-key\n-----END OPENSSH PRIVATE KEY-----\n");
        assert.ok(script.includes("readonly DATA_DEVICE=/dev/disk/by-id/scsi-0DO_Volume_finances-prod-data\n"));
    });

    void test("R6: the user data (host private key) is a secret input; the deploy private key is a secret output", async () => {
        assert.equal(userDataOf(mocks, "web-server").secret, true);
        assert.equal(await isSecret(web.connection.privateKey), true);
        assert.match(await unwrap(web.connection.privateKey), /fake-web-ssh-deploy-key/);
    });

    void test("the connection logs in as the deploy user on port 22", () => {
        assert.equal(web.connection.user, DEPLOY_USER);
        assert.equal(web.connection.port, 22);
    });

    void test("readyResources: the IP assignment, the volume attachment and the firewall", () => {
        assert.deepEqual(web.readyResources.map((r) => (r as unknown as { __name: string }).__name), ["web-ip-assignment", "web-data-attachment", "web-firewall"]);
    });

    void test("project grouping only when host.project is set, with the droplet, volume and reserved IP URNs", () => {
        assert.equal(mocks.ofType(T.project).filter((p) => p.name.startsWith("web-")).length, 0);
        const project = mocks.one(T.project, "locked-project");
        assert.equal(project.inputs.name, "Finances");
        assert.deepEqual(project.inputs.resources, ["do:droplet:locked-server", "do:volume:locked-data", "do:reservedip:203.0.113.20"]);
        assert.equal(recorder.named("locked-project").parent, "locked");
    });
});

void describe("DigitalOcean names", () => {
    void test("the volume name fits DigitalOcean's 64 characters and ends with -data", () => {
        assert.equal(dataVolumeName({ name: "finances", environment: "prod" }), "finances-prod-data");
        const long = dataVolumeName({ name: "a".repeat(32), environment: `b${"-x".repeat(15)}c` });
        assert.ok(long.length <= 64, long);
        assert.match(long, /^[a-z][a-z0-9-]*[a-z0-9]-data$/);
        assert.doesNotMatch(long, /--data$/);
    });
});
