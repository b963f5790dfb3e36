/**
 * DatabaseTls under recording mocks: a private CA and a server certificate for
 * the server's address; private keys secret in the state (R6) and as outputs.
 */
import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as pulumi from "@pulumi/pulumi";
import { installMocks, type RecordingMocks } from "../../helpers/mocks";
import { OptionsRecorder } from "../../helpers/options-recorder";
import { CA_VALIDITY_HOURS, DatabaseTls, SERVER_EARLY_RENEWAL_HOURS, SERVER_VALIDITY_HOURS } from "../../../components/database/database-tls";

const T = {
    key: "tls:index/privateKey:PrivateKey",
    ca: "tls:index/selfSignedCert:SelfSignedCert",
    csr: "tls:index/certRequest:CertRequest",
    cert: "tls:index/locallySignedCert:LocallySignedCert",
};

/** A secret input as the mock monitor receives it (Pulumi's secret signature around the value). */
const secretInput = (value: string) => ({ "4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", value });

let mocks: RecordingMocks;
let recorder: OptionsRecorder;
let dbTls: DatabaseTls;

before(async () => {
    mocks = await installMocks();
    recorder = new OptionsRecorder();
    dbTls = new DatabaseTls("db", { app: { name: "chronos", environment: "prod" }, address: pulumi.output("198.51.100.20") }, { transformations: [recorder.transformation] });
    await recorder.settled(mocks);
});

void describe("DatabaseTls", () => {
    void it("creates a CA key and certificate, a server key, request and CA-signed certificate", () => {
        assert.deepEqual(mocks.resources.map((r) => `${r.type} ${r.name}`).sort(), [
            "onebox:database:DatabaseTls db",
            `${T.key} db-ca-key`,
            `${T.key} db-server-key`,
            `${T.csr} db-server-csr`,
            `${T.cert} db-server-cert`,
            `${T.ca} db-ca`,
        ].sort());
        for (const k of mocks.ofType(T.key)) {
            assert.deepEqual([k.inputs.algorithm, k.inputs.ecdsaCurve], ["ECDSA", "P256"], k.name);
        }
    });

    void it("the CA signs certificates only; the server certificate serves TLS for the server's address", () => {
        const ca = mocks.one(T.ca).inputs;
        assert.equal(ca.isCaCertificate, true);
        assert.deepEqual(ca.allowedUses, ["cert_signing", "crl_signing"]);
        assert.equal(ca.validityPeriodHours, CA_VALIDITY_HOURS);
        // Private keys reach the signing resources only as secrets.
        assert.deepEqual(ca.privateKeyPem, secretInput("-----BEGIN PRIVATE KEY-----\nfake-db-ca-key\n-----END PRIVATE KEY-----\n"));
        assert.deepEqual(mocks.one(T.csr).inputs.ipAddresses, ["198.51.100.20"]);
        const cert = mocks.one(T.cert).inputs;
        assert.deepEqual(cert.allowedUses, ["digital_signature", "key_encipherment", "server_auth"]);
        assert.equal(cert.isCaCertificate, undefined);
        assert.equal(cert.validityPeriodHours, SERVER_VALIDITY_HOURS);
        assert.equal(cert.earlyRenewalHours, SERVER_EARLY_RENEWAL_HOURS);
        assert.equal(cert.caCertPem, "-----BEGIN CERTIFICATE-----\nfake-db-ca\n-----END CERTIFICATE-----\n");
        assert.deepEqual(cert.caPrivateKeyPem, secretInput("-----BEGIN PRIVATE KEY-----\nfake-db-ca-key\n-----END PRIVATE KEY-----\n"));
        assert.deepEqual(mocks.one(T.csr).inputs.privateKeyPem, secretInput("-----BEGIN PRIVATE KEY-----\nfake-db-server-key\n-----END PRIVATE KEY-----\n"));
    });

    void it("R6: both private keys are secret in the state; the key output is secret, the certificates are not", async () => {
        for (const name of ["db-ca-key", "db-server-key"]) {
            assert.ok(recorder.of(T.key, name).additionalSecretOutputs.includes("privateKeyPem"), name);
        }
        assert.equal(await pulumi.isSecret(dbTls.privateKeyPem), true);
        assert.equal(await pulumi.isSecret(dbTls.caCertPem), false);
    });
});
