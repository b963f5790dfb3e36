/**
 * index.ts under mocks for a DigitalOcean stack: the whole resource graph and
 * its security-relevant wiring (R1, R3, R4, R6, F1, S1-S6 by presence).
 */
import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { runProgram, type ProgramRun } from "../../helpers/program";
import { unwrap } from "../../helpers/mocks";
import { digitalOceanRaw } from "../../helpers/fixtures";
import { assertNoSecretInCommands, assertOutputsClean, isSecretInput, plain, remoteCommands, secretValuesIn } from "./common";

const raw = digitalOceanRaw();
let run: ProgramRun;

before(async () => {
    run = await runProgram(raw);
});

describe("program: DigitalOcean stack", () => {
    it("registers the server, its volume, reserved IP and firewall", () => {
        const { mocks } = run;
        mocks.one("digitalocean:index/droplet:Droplet");
        mocks.one("digitalocean:index/volume:Volume");
        mocks.one("digitalocean:index/volumeAttachment:VolumeAttachment");
        mocks.one("digitalocean:index/reservedIp:ReservedIp");
        mocks.one("digitalocean:index/reservedIpAssignment:ReservedIpAssignment");
        mocks.one("digitalocean:index/firewall:Firewall");
        assert.equal(mocks.ofType("aws:lightsail/instance:Instance").length, 0);
    });

    it("F1: the cloud firewall opens 22 only to the admin CIDR and nothing but 22/80/443", () => {
        const fw = run.mocks.one("digitalocean:index/firewall:Firewall");
        const rules = fw.inputs.inboundRules as { portRange: string; sourceAddresses: string[] }[];
        const ports = [...new Set(rules.map((r) => r.portRange))].sort();
        assert.deepEqual(ports, ["22", "443", "80"]);
        for (const r of rules.filter((x) => x.portRange === "22")) {
            assert.deepEqual(r.sourceAddresses, ["203.0.113.7/32"]);
        }
    });

    it("creates A and AAAA records for each routed hostname, proxied", () => {
        const records = run.mocks.ofType("cloudflare:index/dnsRecord:DnsRecord");
        const got = records.map((r) => `${String(r.inputs.type)} ${String(r.inputs.name)} ${String(r.inputs.proxied)}`).sort();
        assert.deepEqual(got, [
            "A api.example.com true",
            "A app.example.com true",
            "AAAA api.example.com true",
            "AAAA app.example.com true",
        ]);
    });

    it("S1-S6: creates the backup bucket with its guards and a dedicated IAM user", () => {
        const types = run.mocks.types();
        for (const t of [
            "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
            "aws:s3/bucketPolicy:BucketPolicy",
            "aws:iam/user:User",
            "aws:iam/group:Group",
            "aws:iam/accessKey:AccessKey",
        ]) {
            assert.ok(types.includes(t), `missing ${t}`);
        }
    });

    it("provisions the host with the fixed step order over SSH", () => {
        const names = remoteCommands(run.mocks).map((c) => c.name);
        for (const step of ["wait-ready", "bootstrap", "secrets", "deploy", "backup", "jobs"]) {
            assert.ok(names.some((n) => n.endsWith(step)), `no ${step} step in ${names.join(", ")}`);
        }
    });

    it("R1: every SSH connection pins the generated host key and targets the reserved IP", () => {
        // The mocked tls.PrivateKey named server-ssh-host-key yields this public key.
        run.mocks.one("tls:index/privateKey:PrivateKey", "server-ssh-host-key");
        for (const cmd of remoteCommands(run.mocks)) {
            const conn = plain<Record<string, unknown>>(cmd.inputs.connection);
            assert.equal(conn.hostKey, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForserversshhostkey", `${cmd.name} does not pin the generated host key`);
            assert.equal(conn.user, "deploy");
            assert.equal(conn.host, "203.0.113.20", `${cmd.name} connects to ${String(conn.host)}`);
        }
    });

    it("R3: no secret value appears in any command string", () => {
        assertNoSecretInCommands(run.mocks, secretValuesIn(run.mocks, ["Vq3-smtp-Hx9T2pLw7eRk"]));
    });

    it("R4: the secret-bearing steps log nothing and carry secret stdin", () => {
        for (const cmd of remoteCommands(run.mocks).filter((c) => /secrets$|backup$/.test(c.name))) {
            assert.equal(cmd.inputs.logging, "none", `${cmd.name} logging`);
            assert.ok(isSecretInput(cmd.inputs.stdin), `${cmd.name} stdin must be secret`);
        }
    });

    it("exports the outputs contract without secrets", async () => {
        const outputs = await unwrap(run.exports.onebox);
        assertOutputsClean(outputs, secretValuesIn(run.mocks, ["Vq3-smtp-Hx9T2pLw7eRk"]));
        const o = outputs as { host: { provider: string; ipv4: string }; urls: { hostname: string }[] };
        assert.equal(o.host.provider, "digitalocean");
        assert.equal(o.host.ipv4, "203.0.113.20");
        assert.deepEqual(o.urls.map((u) => u.hostname), ["app.example.com", "api.example.com"]);
    });
});
