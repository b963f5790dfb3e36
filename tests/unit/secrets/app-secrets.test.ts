/**
 * AppSecrets under recording mocks: one RandomPassword per generated name plus
 * the database password, user values wrapped as secrets, and every value a
 * secret Output whose generating resource keeps it ciphertext in the state (R6).
 */
import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as pulumi from "@pulumi/pulumi";
import { installMocks, unwrap, type RecordingMocks } from "../../helpers/mocks";
import { digitalOceanRaw } from "../../helpers/fixtures";
import { validateConfig } from "../../../components/config/load";
import {
    AppSecrets,
    appSecretsArgsProblems,
    generatedSecretRole,
    passwordSpec,
    type AppSecretsArgs,
} from "../../../components/secrets/app-secrets";
import { OptionsRecorder } from "../../helpers/options-recorder";

const RANDOM = "random:index/randomPassword:RandomPassword";
const SMTP = "Vq3-smtp-Hx9T2pLw7eRk";

let mocks: RecordingMocks;

async function build(name: string, args: AppSecretsArgs) {
    const recorder = new OptionsRecorder();
    const secrets = new AppSecrets(name, args, { transformations: [recorder.transformation] });
    await recorder.settled(mocks);
    const passwords = mocks.ofType(RANDOM).filter((r) => r.name.startsWith(`${name}-`));
    return { secrets, recorder, passwords };
}

before(async () => {
    mocks = await installMocks();
});

void describe("AppSecrets", () => {
    void it("generates the database password: 32 letters and digits", async () => {
        const { passwords } = await build("db", {});
        assert.deepEqual(passwords.map((p) => p.name), ["db-database-password"]);
        const inputs = passwords[0].inputs;
        assert.equal(inputs.length, 32);
        assert.equal(inputs.special, false);
        assert.ok(inputs.upper !== false && inputs.lower !== false && inputs.numeric !== false);
    });

    void it("rotation: the database password keeps the period label, so a new period generates a new one; app secrets never rotate", async () => {
        const { passwords } = await build("rot", { generatedSecrets: ["JWT_SECRET"], databasePasswordRotation: "90d-2026-09-04" });
        assert.deepEqual(passwords.find((p) => p.name === "rot-database-password")?.inputs.keepers, { rotation: "90d-2026-09-04" });
        // Rotating a JWT secret would log every user out: only the database password rotates.
        assert.equal(passwords.find((p) => p.name === "rot-generated-jwt-secret")?.inputs.keepers, undefined);
        const { passwords: fixed } = await build("norot", {});
        assert.equal(fixed[0].inputs.keepers, undefined, "no rotation configured: no keepers, the password never changes");
    });

    void it("generates one 48-character password per generatedSecrets name", async () => {
        const { passwords, secrets } = await build("gen", { generatedSecrets: ["JWT_SECRET", "JWT_REFRESH_SECRET"] });
        assert.deepEqual(passwords.map((p) => p.name).sort(), ["gen-database-password", "gen-generated-jwt-refresh-secret", "gen-generated-jwt-secret"]);
        for (const p of passwords.filter((p) => p.name.includes("generated"))) {
            assert.equal(p.inputs.length, 48, p.name);
            assert.equal(p.inputs.special, false, p.name);
        }
        assert.deepEqual(Object.keys(secrets.values).sort(), ["JWT_REFRESH_SECRET", "JWT_SECRET"]);
        assert.equal(await unwrap(secrets.values.JWT_SECRET), "generated-gen-generated-jwt-secret-Zq8w1Xr5Tn3Vb7Mk2Lp9Hs4Jd6Fg0");
    });

    void it("passes user-supplied values through as secrets without generating anything for them", async () => {
        const { passwords, secrets } = await build("user", { userSecrets: { SMTP_PASSWORD: SMTP }, databasePassword: false });
        assert.equal(passwords.length, 0);
        assert.equal(await unwrap(secrets.values.SMTP_PASSWORD), SMTP);
    });

    void it("R6: every value and the database password are secret outputs", async () => {
        const { secrets } = await build("r6", { generatedSecrets: ["JWT_SECRET"], userSecrets: { SMTP_PASSWORD: SMTP } });
        assert.ok(secrets.databasePassword);
        assert.equal(await pulumi.isSecret(secrets.databasePassword), true, "databasePassword");
        assert.equal(Object.keys(secrets.values).length, 2);
        for (const [n, v] of Object.entries(secrets.values)) {
            assert.equal(await pulumi.isSecret(v), true, n);
        }
    });

    void it("R6: every RandomPassword is registered with result as a secret output (ciphertext in the state)", async () => {
        const { recorder } = await build("state", { generatedSecrets: ["A_KEY", "B_KEY"] });
        const registered = recorder.seen.filter((r) => r.type === RANDOM);
        assert.equal(registered.length, 3);
        for (const r of registered) {
            assert.ok(r.additionalSecretOutputs.includes("result"), r.name);
        }
    });

    void it("databasePassword: false creates no database password", async () => {
        const { passwords, secrets } = await build("nodb", { databasePassword: false, generatedSecrets: ["JWT_SECRET"] });
        assert.deepEqual(passwords.map((p) => p.name), ["nodb-generated-jwt-secret"]);
        assert.equal(secrets.databasePassword, undefined);
    });

    void it("builds from a validated config: generated and user-supplied names together", async () => {
        const { config, secretValues } = validateConfig(digitalOceanRaw());
        const { secrets } = await build("cfg", { generatedSecrets: config.generatedSecrets, userSecrets: secretValues });
        assert.deepEqual(Object.keys(secrets.values).sort(), ["JWT_SECRET", "SMTP_PASSWORD"]);
    });
});

void describe("AppSecrets bad input", () => {
    const cases: [string, AppSecretsArgs, RegExp, string?][] = [
        ["placeholder user value", { userSecrets: { API_KEY: "changeme" } }, /secrets\.API_KEY: looks like a placeholder/, "changeme"],
        ["short user value", { userSecrets: { API_KEY: "Xy7-abc" } }, /secrets\.API_KEY: is 7 characters/, "Xy7-abc"],
        ["name both generated and supplied", { generatedSecrets: ["JWT_SECRET"], userSecrets: { JWT_SECRET: SMTP } }, /secrets\.JWT_SECRET: is both generated and user-supplied/, SMTP],
        ["generated name twice", { generatedSecrets: ["JWT_SECRET", "JWT_SECRET"] }, /"JWT_SECRET" is listed twice/],
        ["lower-case name", { generatedSecrets: ["jwt"] }, /"jwt" is not an UPPER_SNAKE_CASE name/],
    ];
    for (const [what, args, message, value] of cases) {
        void it(`${what} is refused before anything is registered${value ? ", without echoing the value" : ""}`, () => {
            const name = `bad-${what.replace(/\W+/g, "-")}`;
            let error: Error | undefined;
            try {
                new AppSecrets(name, args);
            } catch (e) {
                error = e as Error;
            }
            assert.ok(error, "expected an error");
            assert.match(error.message, message);
            if (value) {
                assert.ok(!error.message.includes(value), "the error message must not contain the secret value");
            }
            assert.equal(mocks.resources.filter((r) => r.name.startsWith(name)).length, 0);
        });
    }

    void it("valid arguments have no problems", () => {
        assert.deepEqual(appSecretsArgsProblems({ generatedSecrets: ["JWT_SECRET"], userSecrets: { SMTP_PASSWORD: SMTP } }), []);
    });
});

void describe("pure helpers", () => {
    void it("passwordSpec: letters and digits only (safe unquoted in env files and URLs), at least one of each class", () => {
        assert.deepEqual(passwordSpec(40), { length: 40, special: false, upper: true, lower: true, numeric: true, minUpper: 1, minLower: 1, minNumeric: 1 });
    });

    void it("generatedSecretRole: stable kebab-case names that cannot collide with the database password", () => {
        assert.equal(generatedSecretRole("JWT_SECRET"), "generated-jwt-secret");
        assert.notEqual(generatedSecretRole("DATABASE_PASSWORD"), "database-password");
    });
});
