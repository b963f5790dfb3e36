/**
 * The configuration contract: valid stacks for every host kind parse with their
 * defaults; a table of bad configurations is rejected, each with a message that
 * names the config path ("Bad input gets a clear error" in SECURITY.md).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { ConfigError, loadConfig, validateConfig } from "../../../components/config/load";
import { cronToOnCalendar, parseCron } from "../../../components/config/validators";
import {
    AGE_RECIPIENT,
    asPulumiConfig,
    digitalOceanRaw,
    existingRaw,
    lightsailRaw,
    readStackFile,
    withValue,
    type Raw,
} from "../../helpers/fixtures";

function problemsOf(raw: Raw): { path: string; message: string }[] {
    try {
        validateConfig(raw);
    } catch (e) {
        assert.ok(e instanceof ConfigError, `expected ConfigError, got ${String(e)}`);
        return e.problems;
    }
    return [];
}

describe("valid configurations", () => {
    it("DigitalOcean stack parses with defaults filled in", () => {
        const { config, secretValues } = validateConfig(digitalOceanRaw());
        assert.equal(config.host.provider, "digitalocean");
        assert.equal(config.proxy.kind, "caddy");
        assert.equal(config.database.enabled, true);
        assert.equal(config.database.version, 16);
        assert.equal(config.services.api.user, "10001:10001");
        assert.equal(config.routes[0].path, "/");
        assert.equal(config.backups?.schedule, "30 3 * * *");
        assert.equal(config.backups?.drill.schedule, "0 5 * * 0");
        assert.deepEqual(config.secretNames, ["SMTP_PASSWORD"]);
        assert.deepEqual(Object.keys(secretValues), ["SMTP_PASSWORD"]);
    });

    it("Lightsail stack with database CIDRs parses", () => {
        const { config } = validateConfig(lightsailRaw());
        assert.equal(config.host.provider, "lightsail");
        assert.deepEqual(config.database.allowedCidrs, ["76.76.21.0/24", "198.51.100.7/32"]);
    });

    it("existing server behind an external Traefik parses", () => {
        const { config } = validateConfig(existingRaw());
        assert.equal(config.host.provider, "existing");
        assert.equal(config.proxy.kind, "traefik-external");
        assert.equal(config.services.frontend.user, null);
    });

    it("the committed example Pulumi.prod.yaml validates", () => {
        const { config } = loadConfig(readStackFile("Pulumi.prod.yaml"));
        assert.equal(config.app.name, "finances");
        assert.equal(config.host.provider, "digitalocean");
        assert.ok(config.routes.length >= 2);
    });

    it("reads structured keys from Pulumi's namespace:key form", () => {
        const { config } = loadConfig(asPulumiConfig(digitalOceanRaw()));
        assert.equal(config.app.environment, "prod");
    });
});

/** [description, change to a valid config, expected path (prefix match), expected message fragment] */
type Case = [string, (r: Raw) => Raw, string, RegExp];

const cases: Case[] = [
    ["malformed hostname", (r) => withValue(r, "routes", [{ host: "app..example.com", service: "web" }]), "routes[0].host", /not a valid DNS name/],
    ["wildcard hostname", (r) => withValue(r, "routes", [{ host: "*.example.com", service: "web" }]), "routes[0].host", /wildcard/],
    ["upper-case hostname", (r) => withValue(r, "routes", [{ host: "App.example.com", service: "web" }]), "routes[0].host", /lower case/],
    ["hostname outside the DNS zone", (r) => withValue(r, "routes", [{ host: "app.example.org", service: "web" }]), "routes[0].host", /outside the DNS zone example\.com/],
    ["malformed DNS zone", (r) => withValue(r, "dns.zone", "example"), "dns.zone", /not a valid DNS name/],
    ["malformed CIDR", (r) => withValue(r, "host.sshAllowedCidrs", ["203.0.113.300/32"]), "host.sshAllowedCidrs[0]", /not a valid CIDR/],
    ["address without prefix length", (r) => withValue(r, "host.sshAllowedCidrs", ["203.0.113.7"]), "host.sshAllowedCidrs[0]", /203\.0\.113\.7\/32/],
    ["CIDR with host bits set", (r) => withValue(r, "host.sshAllowedCidrs", ["203.0.113.7/24"]), "host.sshAllowedCidrs[0]", /did you mean "203\.0\.113\.0\/24"/],
    ["SSH open to the world without opt-in", (r) => withValue(r, "host.sshAllowedCidrs", ["0.0.0.0/0"]), "host.sshAllowedCidrs[0]", /allowSshFromAnywhere/],
    ["SSH open to all of IPv6 without opt-in", (r) => withValue(r, "host.sshAllowedCidrs", ["::/0"]), "host.sshAllowedCidrs[0]", /opens SSH to the internet/],
    ["no admin CIDR", (r) => withValue(r, "host.sshAllowedCidrs", []), "host.sshAllowedCidrs", /at least one admin CIDR/],
    ["private key where a public key belongs", (r) => withValue(r, "host.sshPublicKeys", ["-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAA\n-----END OPENSSH PRIVATE KEY-----"]), "host.sshPublicKeys[0]", /PRIVATE key/],
    ["garbage public key", (r) => withValue(r, "host.sshPublicKeys", ["not-a-key"]), "host.sshPublicKeys[0]", /not an OpenSSH public key/],
    ["unknown provider", (r) => withValue(r, "host.provider", "linode"), "host.provider", /digitalocean, lightsail or existing/],
    ["unknown DigitalOcean region", (r) => withValue(r, "host.region", "mars1"), "host.region", /unknown DigitalOcean region/],
    ["unknown droplet size", (r) => withValue(r, "host.size", "huge"), "host.size", /unknown droplet size/],
    ["unknown operating system", (r) => withValue(r, "host.os", "centos-7"), "host.os", /ubuntu-22\.04/],
    ["unknown Lightsail region", () => withValue(lightsailRaw(), "host.region", "eu-mars-1"), "host.region", /unknown Lightsail region/],
    ["unknown Lightsail bundle", () => withValue(lightsailRaw(), "host.bundle", "mega_9_9"), "host.bundle", /unknown Lightsail bundle/],
    ["IPv6-only Lightsail bundle", () => withValue(lightsailRaw(), "host.bundle", "nano_ipv6_3_0"), "host.bundle", /IPv6-only/],
    ["Lightsail zone not in region", () => withValue(lightsailRaw(), "host.zone", "f"), "host.zone", /does not exist in eu-central-1/],
    ["placeholder secret", (r) => withValue(r, "secrets.SMTP_PASSWORD", "changeme"), "secrets.SMTP_PASSWORD", /placeholder/],
    ["short secret", (r) => withValue(r, "secrets.SMTP_PASSWORD", "s3cr3tX!"), "secrets.SMTP_PASSWORD", /at least 12/],
    ["low-variety secret", (r) => withValue(r, "secrets.SMTP_PASSWORD", "aaaaaaaaaaaaaaaaaaaa"), "secrets.SMTP_PASSWORD", /variety/],
    ["secret referenced but never defined", (r) => withValue(r, "services.api.secrets", ["JWT_SECRET", "STRIPE_KEY"]), "services.api.secrets[1]", /STRIPE_KEY/],
    ["invalid bucket name", (r) => withValue(r, "backups.bucket", "My_Backups"), "backups.bucket", /not a valid bucket name/],
    ["bucket name that is an IP address", (r) => withValue(r, "backups.bucket", "192.168.1.10"), "backups.bucket", /not a valid bucket name/],
    ["zero retention", (r) => withValue(r, "backups.retentionDays", 0), "backups.retentionDays", /at least 1 day/],
    ["negative retention", (r) => withValue(r, "backups.retentionDays", -3), "backups.retentionDays", /at least 1 day/],
    ["invalid schedule", (r) => withValue(r, "backups.schedule", "61 3 * * *"), "backups.schedule", /not a valid cron expression/],
    ["schedule with four fields", (r) => withValue(r, "backups.schedule", "0 3 * *"), "backups.schedule", /exactly five fields/],
    ["drill schedule with both day fields", (r) => withValue(r, "backups.drill", { schedule: "0 5 1 * 0" }), "backups.drill.schedule", /restrict only one/],
    ["age secret key where the recipient belongs", (r) => withValue(r, "backups.encryptionPublicKey", "AGE-SECRET-KEY-1QQQQ"), "backups.encryptionPublicKey", /SECRET key/],
    ["plain-http S3 endpoint", (r) => withValue(withValue(r, "backups.create", false), "backups.endpoint", "http://minio.local:9000"), "backups.endpoint", /https/],
    ["port out of range", (r) => withValue(r, "services.api.port", 70000), "services.api.port", /between 1 and 65535/],
    ["database public port colliding with HTTPS", () => withValue(lightsailRaw(), "database.publicPort", 443), "database.publicPort", /used twice/],
    ["database open to the world", () => withValue(lightsailRaw(), "database.allowedCidrs", ["0.0.0.0/0"]), "database.allowedCidrs[0]", /PostgreSQL public/],
    ["route to a service that does not exist", (r) => withValue(r, "routes", [{ host: "app.example.com", service: "frontend" }]), "routes[0].service", /no service named "frontend"/],
    ["route to a service without a port", (r) => withValue(withValue(r, "services.jobs", { image: "ghcr.io/example/jobs:1.0.0", health: { command: ["true"] } }), "routes", [{ host: "app.example.com", service: "jobs" }]), "routes[0].service", /no port/],
    ["duplicate route", (r) => withValue(r, "routes", [{ host: "app.example.com", service: "web" }, { host: "app.example.com", path: "/", service: "api" }]), "routes[1]", /duplicate route/],
    ["service with a port but no health check", (r) => withValue(r, "services.web.health", undefined), "services.web.health", /H9/],
    ["unpinned image", (r) => withValue(r, "services.web.image", "ghcr.io/example/web:latest"), "services.web.image", /pin a version/],
    ["image without tag", (r) => withValue(r, "services.web.image", "nginx"), "services.web.image", /pin a version/],
    ["reserved service name", (r) => withValue(r, "services.postgres", { image: "postgres:17", health: { command: ["pg_isready"] } }), "services.postgres", /reserved/],
    ["invalid app name", (r) => withValue(r, "app.name", "My App"), "app.name", /lower-case/],
    ["ACME without e-mail", (r) => withValue(r, "tls", { mode: "acme" }), "tls.acmeEmail", /acmeEmail/],
    ["origin certificate without Cloudflare", (r) => withValue(withValue(r, "tls", { mode: "cloudflare-origin" }), "dns.provider", "none"), "tls.mode", /cloudflare/],
    ["existing host without host key", () => withValue(existingRaw(), "host.hostKey", undefined), "host.hostKey", /./],
    ["existing host with a private host key", () => withValue(existingRaw(), "host.hostKey", "-----BEGIN OPENSSH PRIVATE KEY-----"), "host.hostKey", /private key/],
    ["S3-compatible endpoint with create: true", () => withValue(existingRaw(), "backups.create", true), "backups.create", /only create buckets in AWS/],
    ["custom bucket without credentials", () => withValue(existingRaw(), "secrets", {}), "backups.create", /BACKUP_S3_ACCESS_KEY_ID/],
    ["misspelt top-level key", (r) => withValue(r, "hosts", { provider: "digitalocean" }), "hosts", /unknown setting/],
    ["unknown field inside host", (r) => withValue(r, "host.sshAllowCidrs", ["203.0.113.7/32"]), "host", /sshAllowCidrs/],
    ["service uses disabled redis", (r) => withValue(r, "services.api.redis", true), "services.api.redis", /redis.enabled/],
    ["origin lockdown with ACME", (r) => withValue(r, "host.originLockdown", true), "host.originLockdown", /cloudflare-origin/],
];

describe("bad configurations are rejected with the path named", () => {
    for (const [name, change, expectedPath, expectedMessage] of cases) {
        it(name, () => {
            const problems = problemsOf(change(digitalOceanRaw()));
            assert.ok(problems.length > 0, "expected the configuration to be rejected");
            const match = problems.find((p) => p.path.startsWith(expectedPath) && expectedMessage.test(p.message));
            assert.ok(match, `no problem at ${expectedPath} matching ${String(expectedMessage)}; got:\n${JSON.stringify(problems, null, 2)}`);
        });
    }

    it("the table has at least 25 cases", () => {
        assert.ok(cases.length >= 25, `only ${cases.length} cases`);
    });

    it("reports every problem at once, each with its namespaced path", () => {
        let raw = withValue(digitalOceanRaw(), "host.region", "mars1");
        raw = withValue(raw, "backups.retentionDays", 0);
        raw = withValue(raw, "routes", [{ host: "app.example.com", service: "nope" }]);
        raw = withValue(raw, "secrets.SMTP_PASSWORD", "password");
        assert.throws(
            () => validateConfig(raw),
            (e: unknown) => {
                assert.ok(e instanceof ConfigError);
                const paths = e.problems.map((p) => p.path);
                for (const p of ["host.region", "backups.retentionDays", "routes[0].service", "secrets.SMTP_PASSWORD"]) {
                    assert.ok(paths.includes(p), `missing ${p} in ${paths.join(", ")}`);
                }
                assert.match(e.message, /4 problems|[5-9] problems/);
                assert.match(e.message, /onebox:host\.region: /);
                return true;
            },
        );
    });

    it("never echoes a rejected secret value in the error", () => {
        const weak = "password";
        const problems = problemsOf(withValue(digitalOceanRaw(), "secrets.SMTP_PASSWORD", weak));
        assert.ok(problems.length > 0);
        for (const p of problems) {
            assert.ok(!p.message.includes(weak), p.message);
        }
    });
});

describe("schedules", () => {
    const table: [string, string][] = [
        ["30 3 * * *", "*-*-* 03:30:00 UTC"],
        ["0 5 * * 0", "Sun *-*-* 05:00:00 UTC"],
        ["0 5 * * 7", "Sun *-*-* 05:00:00 UTC"],
        ["*/30 1 * * 1-5", "Mon,Tue,Wed,Thu,Fri *-*-* 01:00,30:00 UTC"],
        ["15 2 1 * *", "*-*-01 02:15:00 UTC"],
        ["0 0 1 1,7 *", "*-01,07-01 00:00:00 UTC"],
    ];
    for (const [cron, calendar] of table) {
        it(`cron "${cron}" becomes OnCalendar "${calendar}"`, () => {
            assert.equal(cronToOnCalendar(cron), calendar);
        });
    }

    it("rejects cron extensions a timer cannot express", () => {
        assert.equal(typeof parseCron("@daily"), "string");
        assert.equal(typeof parseCron("0 0 L * *"), "string");
    });

    it("an age recipient is accepted as the encryption key", () => {
        const { config } = validateConfig(withValue(digitalOceanRaw(), "backups.encryptionPublicKey", AGE_RECIPIENT));
        assert.equal(config.backups?.encryptionPublicKey, AGE_RECIPIENT);
    });
});
