/**
 * The configuration contract: valid stacks for every host kind parse with their
 * defaults; a table of bad configurations is rejected, each with a message that
 * names the config path ("Bad input gets a clear error" in SECURITY.md).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { ConfigError, loadConfig, validateConfig } from "../../../components/config/load";
import { cronToOnCalendar, parseCron } from "../../../components/config/validators";
import { AGE_RECIPIENT, asPulumiConfig, digitalOceanRaw, existingRaw, lightsailRaw, readStackFile, withValue, type Raw } from "../../helpers/fixtures";
import { BAD_CONFIGS as cases } from "../../helpers/bad-configs";

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
        const { config } = loadConfig(readStackFile("Pulumi.prod.yaml"), () => true, undefined);
        assert.equal(config.app.name, "finances");
        assert.equal(config.host.provider, "digitalocean");
        assert.ok(config.routes.length >= 2);
    });

    it("reads structured keys from Pulumi's namespace:key form", () => {
        const { config } = loadConfig(asPulumiConfig(digitalOceanRaw()), () => true, undefined);
        assert.equal(config.app.environment, "prod");
    });
});

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
        // Scheduled jobs: every minute or hour of the range is "*", not 60 (24) listed values.
        ["* * * * *", "*-*-* *:*:00 UTC"],
        ["0 * * * *", "*-*-* *:00:00 UTC"],
        ["*/15 * * * *", "*-*-* *:00,15,30,45:00 UTC"],
        ["5 */6 1,15 * *", "*-*-01,15 00,06,12,18:05:00 UTC"],
        ["0-59 0-23 * * *", "*-*-* *:*:00 UTC"],
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
