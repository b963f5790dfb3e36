/** index.ts under mocks for a Lightsail stack with PostgreSQL open to listed CIDRs (F1, F3). */
import { before, describe, it } from "node:test";
import * as pulumi from "@pulumi/pulumi";
import assert from "node:assert/strict";
import { runProgram, type ProgramRun } from "../../helpers/program";
import { unwrap } from "../../helpers/mocks";
import { lightsailRaw } from "../../helpers/fixtures";
import { rotationLabel } from "../../../components/secrets/rotation";
import { assertNoSecretInCommands, assertOutputsClean, plain, remoteCommands, secretValuesIn } from "./common";

let run: ProgramRun;
let labels: string[] = [];

before(async () => {
    // The run reads the clock once; the labels of the moments around it cover a period boundary.
    labels = [rotationLabel(90, new Date()) ?? ""];
    run = await runProgram(lightsailRaw());
    labels.push(rotationLabel(90, new Date()) ?? "");
});

describe("program: Lightsail stack", () => {
    it("registers the instance, static IP, data disk and no DigitalOcean resource", () => {
        const { mocks } = run;
        mocks.one("aws:lightsail/instance:Instance");
        mocks.one("aws:lightsail/staticIp:StaticIp");
        mocks.one("aws:lightsail/staticIpAttachment:StaticIpAttachment");
        mocks.one("aws:lightsail/disk:Disk");
        mocks.one("aws:lightsail/disk_attachment:Disk_attachment");
        assert.equal(mocks.types().filter((t) => t.startsWith("digitalocean:")).length, 0);
    });

    it("F3: one InstancePublicPorts declares every open port with explicit CIDRs", () => {
        const ports = run.mocks.one("aws:lightsail/instancePublicPorts:InstancePublicPorts");
        const infos = ports.inputs.portInfos as { fromPort: number; toPort: number; cidrs?: string[]; ipv6Cidrs?: string[] }[];
        const byPort = new Map(infos.map((p) => [p.fromPort, p]));
        assert.deepEqual([...byPort.keys()].sort((a, b) => a - b), [22, 80, 443, 5432]);
        for (const p of infos) {
            assert.ok(p.cidrs && p.cidrs.length > 0, `port ${p.fromPort} has no explicit IPv4 CIDRs`);
            assert.ok(p.ipv6Cidrs && p.ipv6Cidrs.length > 0, `port ${p.fromPort} has no explicit IPv6 CIDRs`);
        }
        assert.deepEqual(byPort.get(5432)?.cidrs, ["76.76.21.0/24", "198.51.100.7/32"], "F1: 5432 only from the listed networks");
        assert.deepEqual(byPort.get(22)?.cidrs, ["198.51.100.7/32"]);
    });

    it("R1: the SSH connections target the static IP and pin the host key", () => {
        for (const cmd of remoteCommands(run.mocks)) {
            const conn = plain<Record<string, unknown>>(cmd.inputs.connection);
            assert.equal(conn.host, "198.51.100.20");
            assert.match(String(conn.hostKey), /^ssh-ed25519 /);
        }
    });

    it("90-day rotation (Chronos): the database password keeps the current period, the backup access key is named after it", () => {
        const password = run.mocks.one("random:index/randomPassword:RandomPassword", "secrets-database-password");
        const keeper = (password.inputs.keepers as { rotation?: string } | undefined)?.rotation ?? "";
        assert.match(keeper, /^90d-\d{4}-\d{2}-\d{2}$/);
        assert.ok(labels.includes(keeper), `${keeper} is the period of the run (${labels.join(", ")})`);
        const key = run.mocks.one("aws:iam/accessKey:AccessKey");
        assert.equal(key.name, `backups-access-key-${keeper}`);
    });

    it("published PostgreSQL: a certificate for the static IP, its CA in the contract, the password a secret output", async () => {
        assert.deepEqual(run.mocks.one("tls:index/certRequest:CertRequest", "database-tls-server-csr").inputs.ipAddresses, ["198.51.100.20"]);
        const outputs = (await unwrap(run.exports.onebox)) as { database: Record<string, unknown> | null };
        assert.deepEqual(outputs.database, {
            host: "198.51.100.20",
            port: 5432,
            name: "app",
            user: "app",
            sslmode: "verify-full",
            caCertificate: "-----BEGIN CERTIFICATE-----\nfake-database-tls-ca\n-----END CERTIFICATE-----",
            allowedCidrs: ["76.76.21.0/24", "198.51.100.7/32"],
        });
        assert.equal(await pulumi.isSecret(run.exports.databasePassword), true);
        assert.equal(await unwrap(run.exports.databasePassword), "generated-secrets-database-password-Zq8w1Xr5Tn3Vb7Mk2Lp9Hs4Jd6Fg0");
    });

    it("R3: no secret value appears in any command string", () => {
        assertNoSecretInCommands(run.mocks, secretValuesIn(run.mocks, []));
    });

    it("exports the outputs contract without secrets", async () => {
        const outputs = await unwrap(run.exports.onebox);
        assertOutputsClean(outputs, secretValuesIn(run.mocks, []));
        assert.equal((outputs as { host: { provider: string } }).host.provider, "lightsail");
    });
});
