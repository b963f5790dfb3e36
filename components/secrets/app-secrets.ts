/**
 * The application's secrets in one place: the database password and every
 * `generatedSecrets` name are generated with @pulumi/random; user-supplied
 * values (already validated by the config loader) are wrapped as secrets.
 * Every value leaves this component as a secret Output, and generated values
 * are stored in the state only as ciphertext (R6).
 */
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import { MIN_SECRET_LENGTH } from "../config/load";
import { weakSecretProblem } from "../config/validators";

export const APP_SECRETS_TYPE = "onebox:secrets:AppSecrets";

/** Length of the generated database password. */
export const DATABASE_PASSWORD_LENGTH = 32;

/** Length of each generated application secret. */
export const GENERATED_SECRET_LENGTH = 48;

export interface AppSecretsArgs {
    /**
     * Names of secrets to generate (48 random letters and digits each).
     * @default []
     * @example ["JWT_SECRET", "JWT_REFRESH_SECRET"]
     */
    readonly generatedSecrets?: readonly string[];
    /**
     * User-supplied secrets by name: secret Outputs (`loadConfig().secretValues`)
     * or plain strings, which become secret Outputs here and must not be used
     * anywhere else in plain form. Plain strings are checked for weak values.
     * @default {}
     */
    readonly userSecrets?: Readonly<Record<string, pulumi.Input<string>>>;
    /**
     * Generate the database password (when the stack runs PostgreSQL).
     * @default true
     */
    readonly databasePassword?: boolean;
    /**
     * Rotation period of the database password (`rotationLabel()`): kept in
     * the password's `keepers`, so a new label generates a new password.
     * Undefined: the password never rotates.
     * @example "90d-2026-10-17"
     */
    readonly databasePasswordRotation?: string;
}

/**
 * Settings of a generated value: letters and digits only, so it is safe
 * unquoted in env files, shell and connection URLs; the length makes up for
 * the smaller alphabet (32 characters ≈ 190 bits).
 */
export function passwordSpec(length: number): random.RandomPasswordArgs {
    return { length, special: false, upper: true, lower: true, numeric: true, minUpper: 1, minLower: 1, minNumeric: 1 };
}

/** Resource name suffix of a generated secret: `JWT_SECRET` → `generated-jwt-secret`. */
export function generatedSecretRole(secretName: string): string {
    return `generated-${secretName.toLowerCase().replace(/_/g, "-")}`;
}

/**
 * Problems with the arguments. Never includes a secret value. Weak user values
 * are checked again with the loader's own rule, because this component can be
 * built from values that did not come through the loader.
 */
export function appSecretsArgsProblems(args: AppSecretsArgs): string[] {
    const problems: string[] = [];
    const generated = args.generatedSecrets ?? [];
    const user = args.userSecrets ?? {};
    const envName = /^[A-Z_][A-Z0-9_]*$/;
    const seen = new Set<string>();
    for (const n of generated) {
        if (!envName.test(n)) {
            problems.push(`generatedSecrets: "${n}" is not an UPPER_SNAKE_CASE name`);
        }
        if (seen.has(n)) {
            problems.push(`generatedSecrets: "${n}" is listed twice`);
        }
        seen.add(n);
    }
    for (const [n, value] of Object.entries(user)) {
        if (!envName.test(n)) {
            problems.push(`secrets.${n}: not an UPPER_SNAKE_CASE name`);
        }
        if (seen.has(n)) {
            problems.push(`secrets.${n}: is both generated and user-supplied; remove one`);
        }
        const weak = typeof value === "string" ? weakSecretProblem(value, MIN_SECRET_LENGTH) : undefined;
        if (weak) {
            problems.push(`secrets.${n}: ${weak}`);
        }
    }
    return problems;
}

export class AppSecrets extends pulumi.ComponentResource {
    /** Every named secret (generated and user-supplied), each a secret Output. */
    public readonly values: Record<string, pulumi.Output<string>>;
    /** The database owner's password (secret), when `databasePassword` is on. */
    public readonly databasePassword?: pulumi.Output<string>;

    constructor(name: string, args: AppSecretsArgs, opts?: pulumi.ComponentResourceOptions) {
        // Checked before super(): bad arguments register nothing, not even the component.
        const problems = appSecretsArgsProblems(args);
        if (problems.length > 0) {
            throw new Error(`${name}: invalid secrets:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
        }
        super(APP_SECRETS_TYPE, name, {}, opts);

        if (args.databasePassword ?? true) {
            const keepers = args.databasePasswordRotation === undefined ? undefined : { rotation: args.databasePasswordRotation };
            this.databasePassword = this.generate(`${name}-database-password`, DATABASE_PASSWORD_LENGTH, keepers);
        }
        const values: Record<string, pulumi.Output<string>> = {};
        for (const n of args.generatedSecrets ?? []) {
            values[n] = this.generate(`${name}-${generatedSecretRole(n)}`, GENERATED_SECRET_LENGTH);
        }
        for (const [n, value] of Object.entries(args.userSecrets ?? {})) {
            values[n] = pulumi.secret(pulumi.output(value));
        }
        this.values = values;

        this.registerOutputs({ values: this.values, databasePassword: this.databasePassword });
    }

    private generate(resourceName: string, length: number, keepers?: Record<string, string>): pulumi.Output<string> {
        // The provider marks `result` secret already; listing it keeps the
        // state ciphertext-only (R6) even if that default changes. The explicit
        // pulumi.secret keeps the Output secret wherever it flows.
        const password = new random.RandomPassword(resourceName, { ...passwordSpec(length), ...(keepers ? { keepers } : {}) }, {
            parent: this,
            additionalSecretOutputs: ["result", "bcryptHash"],
        });
        return pulumi.secret(password.result);
    }
}
