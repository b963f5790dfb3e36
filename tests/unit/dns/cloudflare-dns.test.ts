/**
 * Cloudflare DNS under recording mocks: A/AAAA per hostname with the proxied
 * flag, zone lookup by name vs a given id, Full (strict) SSL, and the origin
 * certificate for exactly the hostnames with a secret private key (R6).
 */
import { before, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as pulumi from "@pulumi/pulumi";
import { installMocks, unwrap, type RecordingMocks } from "../../helpers/mocks";
import {
    CloudflareDns,
    cloudflareDnsArgsProblems,
    plannedRecords,
    recordTtl,
    zoneIdFromLookup,
    type CloudflareDnsArgs,
} from "../../../components/dns/cloudflare-dns";
import { OptionsRecorder } from "../../helpers/options-recorder";

const T = {
    record: "cloudflare:index/dnsRecord:DnsRecord",
    setting: "cloudflare:index/zoneSetting:ZoneSetting",
    key: "tls:index/privateKey:PrivateKey",
    csr: "tls:index/certRequest:CertRequest",
    cert: "cloudflare:index/originCaCertificate:OriginCaCertificate",
};
const GET_ZONE = "cloudflare:index/getZone:getZone";
const LOOKED_UP_ZONE_ID = "0123456789abcdef0123456789abcdef";
const GIVEN_ZONE_ID = "fedcba9876543210fedcba9876543210";

const BASE: CloudflareDnsArgs = {
    zone: "example.com",
    hostnames: ["app.example.com", "api.example.com"],
    ipv4: "203.0.113.20",
};

let mocks: RecordingMocks;
const zoneLookups: Record<string, unknown>[] = [];

async function build(name: string, overrides: Partial<CloudflareDnsArgs> = {}) {
    const recorder = new OptionsRecorder();
    const dns = new CloudflareDns(name, { ...BASE, ...overrides }, { transformations: [recorder.transformation] });
    await recorder.settled(mocks);
    const records = mocks.ofType(T.record).filter((r) => r.name.startsWith(`${name}-`));
    return { dns, recorder, records, one: (type: string, role: string) => mocks.one(type, `${name}-${role}`).inputs };
}

before(async () => {
    mocks = await installMocks({}, {
        // Provider 6.x fills zoneId but may leave id empty for a filtered lookup (#6111).
        [GET_ZONE]: (args) => {
            zoneLookups.push(args.inputs as Record<string, unknown>);
            return { id: "", zoneId: LOOKED_UP_ZONE_ID, name: "example.com" };
        },
    });
});

beforeEach(() => {
    zoneLookups.length = 0;
});

void describe("CloudflareDns records", () => {
    void it("one proxied A record per hostname with automatic TTL, none AAAA without ipv6", async () => {
        const { records } = await build("plain");
        assert.deepEqual(
            records.map((r) => [r.name, r.inputs.type, r.inputs.name, r.inputs.content, r.inputs.proxied, r.inputs.ttl]),
            [
                ["plain-a-app.example.com", "A", "app.example.com", "203.0.113.20", true, 1],
                ["plain-a-api.example.com", "A", "api.example.com", "203.0.113.20", true, 1],
            ],
        );
    });

    void it("adds one AAAA per hostname when ipv6 is given", async () => {
        const { records } = await build("dual", { ipv6: pulumi.output("2001:db8::10") });
        const aaaa = records.filter((r) => r.inputs.type === "AAAA");
        assert.deepEqual(aaaa.map((r) => [r.inputs.name, r.inputs.content, r.inputs.proxied]), [
            ["app.example.com", "2001:db8::10", true],
            ["api.example.com", "2001:db8::10", true],
        ]);
        assert.equal(records.filter((r) => r.inputs.type === "A").length, 2);
    });

    void it("unproxied records carry proxied: false and a real TTL", async () => {
        const { records, dns } = await build("grey", { proxied: false, ttl: 600 });
        assert.ok(records.length === 2 && records.every((r) => r.inputs.proxied === false && r.inputs.ttl === 600));
        assert.deepEqual(await unwrap(dns.records), [
            { hostname: "app.example.com", type: "A", content: "203.0.113.20", proxied: false },
            { hostname: "api.example.com", type: "A", content: "203.0.113.20", proxied: false },
        ]);
    });

    void it("hostnames shared by several routes get one record each", async () => {
        const { records } = await build("dedup", { hostnames: ["example.com", "example.com", "www.example.com"] });
        assert.deepEqual(records.map((r) => r.inputs.name), ["example.com", "www.example.com"]);
    });

    void it("exposes every record with hostname, type, content and proxied", async () => {
        const { dns } = await build("outs", { ipv6: "2001:db8::10", hostnames: ["app.example.com"] });
        assert.deepEqual(await unwrap(dns.records), [
            { hostname: "app.example.com", type: "A", content: "203.0.113.20", proxied: true },
            { hostname: "app.example.com", type: "AAAA", content: "2001:db8::10", proxied: true },
        ]);
    });
});

void describe("CloudflareDns zone", () => {
    void it("looks the zone up by name when no id is given, and uses the lookup's zoneId", async () => {
        const { records, dns } = await build("byname");
        assert.deepEqual(zoneLookups, [{ filter: { name: "example.com" } }]);
        assert.ok(records.length > 0 && records.every((r) => r.inputs.zoneId === LOOKED_UP_ZONE_ID));
        assert.equal(await unwrap(dns.zoneId), LOOKED_UP_ZONE_ID);
    });

    void it("uses a given zone id without any lookup", async () => {
        const { records } = await build("byid", { zoneId: GIVEN_ZONE_ID });
        assert.equal(zoneLookups.length, 0);
        assert.ok(records.length > 0 && records.every((r) => r.inputs.zoneId === GIVEN_ZONE_ID));
    });

    void it("zoneIdFromLookup prefers zoneId, falls back to id, and names the zone when neither is set", () => {
        assert.equal(zoneIdFromLookup("example.com", { id: "", zoneId: "z1" }), "z1");
        assert.equal(zoneIdFromLookup("example.com", { id: "z2" }), "z2");
        assert.throws(() => zoneIdFromLookup("example.com", { id: "" }), /"example.com" was not found.*dns\.zoneId/);
    });
});

void describe("CloudflareDns SSL mode", () => {
    void it("sslStrict sets the zone's ssl setting to strict", async () => {
        const { one } = await build("strict", { sslStrict: true, zoneId: GIVEN_ZONE_ID });
        assert.deepEqual(one(T.setting, "ssl"), { zoneId: GIVEN_ZONE_ID, settingId: "ssl", value: "strict" });
    });

    void it("without sslStrict the zone setting is left alone", async () => {
        await build("loose");
        assert.equal(mocks.ofType(T.setting).filter((r) => r.name.startsWith("loose-")).length, 0);
    });
});

void describe("CloudflareDns origin certificate", () => {
    void it("is issued for exactly the hostnames from a CSR of a generated ECDSA key, valid 5475 days", async () => {
        const { one, dns } = await build("origin", { originCertificate: true, hostnames: ["app.example.com", "api.example.com", "app.example.com"] });
        assert.deepEqual(one(T.key, "origin-key"), { algorithm: "ECDSA", ecdsaCurve: "P256" });
        const csr = one(T.csr, "origin-csr");
        assert.deepEqual(csr.dnsNames, ["app.example.com", "api.example.com"]);
        assert.match(String(pulumi.runtime.unwrapRpcSecret(csr.privateKeyPem)), /BEGIN PRIVATE KEY[\s\S]*fake-origin-origin-key/);
        const cert = one(T.cert, "origin-cert");
        assert.deepEqual(cert.hostnames, ["app.example.com", "api.example.com"]);
        assert.equal(cert.requestType, "origin-ecc");
        assert.equal(cert.requestedValidity, 5475);
        assert.match(String(cert.csr), /BEGIN CERTIFICATE REQUEST/);
        assert.match(await unwrap(dns.certificatePem as pulumi.Output<string>), /BEGIN CERTIFICATE/);
    });

    void it("R6: the private key is a secret output and secret in the state", async () => {
        const { dns, recorder, one } = await build("origin-r6", { originCertificate: true });
        // The CSR is sent the key as a secret input, so its state holds ciphertext too.
        assert.equal(pulumi.runtime.isRpcSecret(one(T.csr, "origin-csr").privateKeyPem), true);
        assert.ok(dns.privateKeyPem);
        assert.equal(await pulumi.isSecret(dns.privateKeyPem), true);
        assert.match(await unwrap(dns.privateKeyPem), /PRIVATE KEY/);
        assert.ok(recorder.of(T.key, "origin-r6-origin-key").additionalSecretOutputs.includes("privateKeyPem"));
        assert.ok(recorder.of(T.csr, "origin-r6-origin-csr").additionalSecretOutputs.includes("privateKeyPem"));
    });

    void it("honours a shorter validity", async () => {
        const { one } = await build("origin-short", { originCertificate: true, originCertificateValidityDays: 365 });
        assert.equal(one(T.cert, "origin-cert").requestedValidity, 365);
    });

    void it("is not created unless asked", async () => {
        const { dns } = await build("nocert");
        assert.equal(mocks.resources.filter((r) => r.name.startsWith("nocert-origin")).length, 0);
        assert.equal(dns.privateKeyPem, undefined);
    });
});

void describe("CloudflareDns bad input", () => {
    const cases: [string, Partial<CloudflareDnsArgs>, RegExp][] = [
        ["hostname outside the zone", { hostnames: ["app.example.org"] }, /"app\.example\.org" is outside the zone example\.com/],
        ["look-alike suffix", { hostnames: ["evilexample.com"] }, /outside the zone/],
        ["no hostnames", { hostnames: [] }, /list at least one hostname/],
        ["TTL on a proxied record", { ttl: 300 }, /ttl: proxied records always use Cloudflare's automatic TTL/],
        ["TTL out of range", { proxied: false, ttl: 30 }, /ttl: 30 is out of range/],
        ["origin certificate without the proxy", { proxied: false, originCertificate: true }, /originCertificate: .*set proxied: true/],
        ["unsupported validity", { originCertificate: true, originCertificateValidityDays: 100 as 90 }, /originCertificateValidityDays: use one of/],
    ];
    for (const [what, overrides, message] of cases) {
        void it(`${what} is refused before anything is registered`, () => {
            const name = `bad-${what.replace(/\W+/g, "-")}`;
            assert.match(cloudflareDnsArgsProblems({ ...BASE, ...overrides }).join("\n"), message);
            assert.throws(() => new CloudflareDns(name, { ...BASE, ...overrides }), message);
            assert.equal(mocks.resources.filter((r) => r.name.startsWith(name)).length, 0);
        });
    }

    void it("valid arguments have no problems", () => {
        assert.deepEqual(cloudflareDnsArgsProblems({ ...BASE, hostnames: ["example.com", "www.example.com"], originCertificate: true }), []);
    });
});

void describe("pure helpers", () => {
    void it("plannedRecords keys names by hostname, so adding a hostname never renames the others", () => {
        const before = plannedRecords(["b.example.com"], true).map((p) => p.role);
        const after = plannedRecords(["a.example.com", "b.example.com"], true).map((p) => p.role);
        assert.ok(before.every((r) => after.includes(r)));
        assert.deepEqual(after, ["a-a.example.com", "aaaa-a.example.com", "a-b.example.com", "aaaa-b.example.com"]);
    });

    void it("recordTtl: automatic when proxied, 300 or the given value otherwise", () => {
        assert.equal(recordTtl(true), 1);
        assert.equal(recordTtl(false), 300);
        assert.equal(recordTtl(false, 3600), 3600);
    });
});
