/**
 * Reads the stack configuration from Pulumi config, validates it in one pass
 * and fails with every problem listed before a single resource is registered.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { parse as parseYaml } from "yaml";
import type { z } from "zod";
import { configSchema, HOST_PROVIDER_FACTS, HOST_PROVIDERS, provisioningSchema, type ProvisioningConfig, type ProvisioningInput, type StackConfig } from "./schema";
import { weakSecretProblem } from "./validators";

/** The project's config namespace (the `name` in Pulumi.yaml). */
export const CONFIG_NAMESPACE = "onebox";

/** Top-level structured keys read from `onebox:<key>`. */
export const CONFIG_KEYS = [
    "app",
    "host",
    "dns",
    "tls",
    "proxy",
    "services",
    "routes",
    "database",
    "redis",
    "backups",
    "deploy",
    "jobs",
    "volumes",
    "generatedSecrets",
] as const;

/** Minimum length of user-supplied secrets. */
export const MIN_SECRET_LENGTH = 12;

/** One problem found in the configuration. */
export interface ConfigProblem {
    /** Dotted config path, e.g. `host.sshAllowedCidrs[0]`. */
    path: string;
    message: string;
}

/** Thrown when the configuration is invalid; lists every problem. */
export class ConfigError extends Error {
    /** `pathPrefix` precedes every path: the config namespace for stack settings, e.g. "onebox:". */
    constructor(
        public readonly problems: ConfigProblem[],
        pathPrefix = `${CONFIG_NAMESPACE}:`,
        what = "stack configuration",
    ) {
        super(formatProblems(problems, pathPrefix, what));
        this.name = "ConfigError";
    }
}

export function formatProblems(problems: ConfigProblem[], pathPrefix = `${CONFIG_NAMESPACE}:`, what = "stack configuration"): string {
    const lines = problems.map((p) => `  - ${pathPrefix}${p.path}: ${p.message}`);
    return `invalid ${what} (${problems.length} problem${problems.length === 1 ? "" : "s"}):\n${lines.join("\n")}`;
}

function formatPath(path: readonly PropertyKey[]): string {
    let out = "";
    for (const part of path) {
        if (typeof part === "number") {
            out += `[${part}]`;
        } else {
            out += out ? `.${String(part)}` : String(part);
        }
    }
    return out || "(root)";
}

/** Clearer wording for zod's generic issues; undefined keeps zod's message. */
function friendlyError(issue: z.core.$ZodRawIssue): string | undefined {
    if (issue.code === "invalid_type" && issue.input === undefined) {
        return `required setting is missing (expected ${issue.expected})`;
    }
    if (issue.code === "unrecognized_keys") {
        return `unknown setting${issue.keys.length > 1 ? "s" : ""} ${issue.keys.map((k) => `"${k}"`).join(", ")}; check the spelling against the README's config reference`;
    }
    return undefined;
}

/** Raw input: the structured values of each key plus user-supplied secrets. */
export interface RawConfig {
    [key: string]: unknown;
    /** User-supplied secret values by name (from `onebox:secrets`). */
    secrets?: Record<string, unknown>;
}

/** Config paths that must hold encrypted values: every `secrets.NAME` and `sshPrivateKey`. */
export function secretPaths(raw: RawConfig): string[] {
    const paths = Object.keys(isPlainObject(raw.secrets) ? raw.secrets : {}).map((n) => `secrets.${n}`);
    return raw.sshPrivateKey === undefined ? paths : [...paths, "sshPrivateKey"];
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
    return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The problem for a secret written in clear text in a stack file. */
export function plaintextSecretProblem(path: string): ConfigProblem {
    const set = path === "sshPrivateKey" ? "pulumi config set --secret sshPrivateKey < ~/.ssh/id_ed25519" : `pulumi config set --secret --path '${path}' '<value>'`;
    return {
        path,
        message: `is stored in clear text in the stack file, which gets committed; remove the line and set it encrypted with \`${set}\``,
    };
}

/** Options of validateConfig. */
export interface ValidateOptions {
    /**
     * Config paths known to be stored in clear text (a stack file's value
     * without `secure:`); each is an error. Undefined: not known (tests).
     */
    plaintextPaths?: readonly string[];
    /**
     * The caller passes the existing server's deploy key to the components
     * itself (library use), so `sshPrivateKey` is not required here.
     * @default false
     */
    deployKeyElsewhere?: boolean;
}

/** Result of validation: the typed config and the secret values (still plain here). */
export interface ValidatedConfig {
    config: StackConfig;
    /** Accepted but worth a second look (e.g. database.allowWideCidrs in use); printed, never fatal. */
    warnings: string[];
    /** User-supplied secrets, by name. Callers must wrap them with `pulumi.secret`. */
    secretValues: Record<string, string>;
    /** Deploy key for an existing server (`onebox:sshPrivateKey`). Callers must wrap it with `pulumi.secret`. */
    sshPrivateKey?: string;
}

/**
 * Validates raw configuration. Pure: no Pulumi calls, so the render command
 * and tests use it directly. Throws ConfigError listing every problem.
 */
export function validateConfig(raw: RawConfig, options: ValidateOptions = {}): ValidatedConfig {
    const problems: ConfigProblem[] = (options.plaintextPaths ?? []).map(plaintextSecretProblem);
    const { secrets: rawSecrets, sshPrivateKey, ...rest } = raw;
    const secretValues: Record<string, string> = {};

    if (rawSecrets !== undefined && (typeof rawSecrets !== "object" || rawSecrets === null || Array.isArray(rawSecrets))) {
        problems.push({ path: "secrets", message: "must be a map of NAME: value, set with `pulumi config set --secret --path 'secrets.NAME'`" });
    } else {
        for (const [name, value] of Object.entries(rawSecrets ?? {})) {
            if (!/^[A-Z_][A-Z0-9_]*$/.test(name)) {
                problems.push({ path: `secrets.${name}`, message: "use UPPER_SNAKE_CASE names" });
                continue;
            }
            if (typeof value !== "string") {
                problems.push({ path: `secrets.${name}`, message: "must be a string" });
                continue;
            }
            if (/['\n\r\0]/.test(value)) {
                problems.push({ path: `secrets.${name}`, message: "must not contain a single quote, a newline or NUL (env files cannot carry them safely); generate a value without them" });
                continue;
            }
            const weak = weakSecretProblem(value, MIN_SECRET_LENGTH);
            if (weak) {
                problems.push({ path: `secrets.${name}`, message: weak });
                continue;
            }
            secretValues[name] = value;
        }
    }

    const unknownKeys = Object.keys(rest).filter((k) => !(CONFIG_KEYS as readonly string[]).includes(k));
    for (const k of unknownKeys) {
        problems.push({ path: k, message: `unknown setting; known settings: ${CONFIG_KEYS.join(", ")}, secrets` });
    }

    // Unknown top-level keys are reported once, above; the schema sees the known ones.
    const known = Object.fromEntries(Object.entries(rest).filter(([k]) => !unknownKeys.includes(k)));
    const input = { ...known, secretNames: Object.keys(rawSecrets ?? {}).filter((n) => /^[A-Z_][A-Z0-9_]*$/.test(n)) };
    const parsed = configSchema.safeParse(input, { error: friendlyError });
    if (!parsed.success) {
        for (const issue of parsed.error.issues) {
            problems.push({ path: formatPath(issue.path), message: issueMessage(issue) });
        }
    }
    const provider = (rest.host as { provider?: unknown } | undefined)?.provider;
    const facts = typeof provider === "string" && provider in HOST_PROVIDER_FACTS ? HOST_PROVIDER_FACTS[provider as keyof typeof HOST_PROVIDER_FACTS] : undefined;
    const supplied = HOST_PROVIDERS.filter((p) => HOST_PROVIDER_FACTS[p].deployKey === "supplied").join(" or ");
    if (sshPrivateKey !== undefined && (typeof sshPrivateKey !== "string" || !/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(sshPrivateKey))) {
        problems.push({ path: "sshPrivateKey", message: "not a private key; set it with `pulumi config set --secret sshPrivateKey < ~/.ssh/id_ed25519`" });
    } else if (facts?.deployKey === "supplied" && sshPrivateKey === undefined && !options.deployKeyElsewhere) {
        problems.push({ path: "sshPrivateKey", message: `host.provider ${String(provider)} needs the key the server accepts: \`pulumi config set --secret sshPrivateKey < ~/.ssh/id_ed25519\`` });
    } else if (facts?.deployKey !== "supplied" && sshPrivateKey !== undefined) {
        problems.push({ path: "sshPrivateKey", message: `only used with host.provider ${supplied} (cloud servers get a generated deploy key); remove it` });
    }
    if (problems.length > 0 || !parsed.success) {
        throw new ConfigError(problems);
    }
    return { config: parsed.data, warnings: configWarnings(parsed.data), secretValues, sshPrivateKey: sshPrivateKey as string | undefined };
}

/**
 * Validates the provisioning part of a stack (what `HostProvisioner` takes):
 * defaults applied, the same field and cross-setting checks as the stack
 * configuration wherever they do not need the server or DNS. Throws a
 * {@link ConfigError} naming each problem's path, prefixed with `within`.
 */
export function validateProvisioning(input: ProvisioningInput, within: string): ProvisioningConfig {
    return validateArgs(provisioningSchema, input, within);
}

/**
 * A component's arguments through the schema part they come from: defaults
 * applied, and every problem thrown at once as a {@link ConfigError} naming
 * its path, before the component registers anything. `within` names the
 * component, e.g. `ExistingHost "server"`; `at` names the argument the
 * schema part validates, e.g. "host".
 */
export function validateArgs<S extends z.ZodType>(schema: S, input: z.input<S>, within: string, at?: string): z.output<S> {
    const parsed = schema.safeParse(input, { error: friendlyError });
    if (!parsed.success) {
        const problems = parsed.error.issues.map((issue) => ({ path: formatPath([...(at ? [at] : []), ...issue.path]), message: issueMessage(issue) }));
        throw new ConfigError(problems, "", `${within} arguments`);
    }
    return parsed.data;
}

/** The provisioning part of a validated stack configuration (the one place the program maps it). */
export function provisioningConfig(config: StackConfig): ProvisioningConfig {
    const { host, ...rest } = config;
    const workload: Omit<StackConfig, "host" | "dns"> = Object.fromEntries(Object.entries(rest).filter(([k]) => k !== "dns")) as Omit<StackConfig, "host" | "dns">;
    return {
        ...workload,
        host: {
            sshAllowedCidrs: host.sshAllowedCidrs,
            allowSshFromAnywhere: host.allowSshFromAnywhere,
            swapMb: host.swapMb,
            originLockdown: host.originLockdown,
            behindCloudflare: config.dns?.provider === "cloudflare" && config.dns.proxied,
        },
    };
}

/** A zod issue's message, with the key named where zod only says "Invalid key in record". */
function issueMessage(issue: z.core.$ZodIssue): string {
    if (issue.code === "invalid_key") {
        const key = String(issue.path[issue.path.length - 1]);
        if (key === "<<") {
            return "YAML merge keys (<<) are not supported in stack files; write the settings out in full";
        }
        const inner = issue.issues.map((i) => i.message).join("; ");
        return `"${key}" is not a valid name here: ${inner}`;
    }
    return issue.message;
}

/** Things that are allowed but deserve a line in the output of every run. */
export function configWarnings(c: StackConfig): string[] {
    const warnings: string[] = [];
    if (c.database.allowWideCidrs && c.database.allowedCidrs.length > 0) {
        warnings.push(`database.allowedCidrs: PostgreSQL is reachable from very wide ranges (${c.database.allowedCidrs.join(", ")}); database.allowWideCidrs is set`);
    }
    if (c.host.allowSshFromAnywhere) {
        warnings.push("host.allowSshFromAnywhere: SSH is open to the whole internet (keys only, fail2ban)");
    }
    return warnings;
}

/**
 * Reads every key of the project namespace from Pulumi config, so a misspelt
 * key is reported instead of silently ignored. Structured values arrive as
 * JSON text; plain strings stay strings.
 */
export function readRawConfig(all: Record<string, string> = pulumi.runtime.allConfig()): RawConfig {
    const raw: RawConfig = {};
    const prefix = `${CONFIG_NAMESPACE}:`;
    for (const [fullKey, text] of Object.entries(all)) {
        if (!fullKey.startsWith(prefix)) {
            continue;
        }
        const key = fullKey.slice(prefix.length);
        try {
            raw[key] = JSON.parse(text);
        } catch {
            raw[key] = text;
        }
    }
    return raw;
}

/** What the program gets: secrets only as secret Outputs, never as plain strings. */
export interface LoadedConfig {
    config: StackConfig;
    warnings: string[];
    /** User-supplied secrets, by name, each a secret Output. */
    secretValues: Record<string, pulumi.Output<string>>;
    /** Deploy key for an existing server, a secret Output. */
    sshPrivateKey?: pulumi.Output<string>;
}

/** Where the engine says which config keys hold secrets. */
export type SecretKeyTest = (fullKey: string) => boolean;

/**
 * Config paths written in clear text. The engine marks a whole key secret when
 * any value in it is (`onebox:secrets` with one encrypted entry counts as
 * secret), so the stack file itself, when it is where Pulumi reads it from, is
 * checked value by value as well.
 */
export function plaintextPaths(raw: RawConfig, isSecretKey: SecretKeyTest, stackFileText?: string): string[] {
    const paths = secretPaths(raw).filter((p) => !isSecretKey(`${CONFIG_NAMESPACE}:${p.split(".")[0]}`));
    if (stackFileText !== undefined) {
        const doc = (parseYaml(stackFileText) ?? {}) as { config?: Record<string, unknown> };
        const cfg = doc.config ?? {};
        const secrets = cfg[`${CONFIG_NAMESPACE}:secrets`];
        const encrypted = (v: unknown) => isPlainObject(v) && "secure" in v;
        if (isPlainObject(secrets)) {
            for (const [name, v] of Object.entries(secrets)) if (!encrypted(v)) paths.push(`secrets.${name}`);
        } else if (secrets !== undefined && !encrypted(secrets)) {
            paths.push(...secretPaths(raw).filter((p) => p.startsWith("secrets.")));
        }
        const key = cfg[`${CONFIG_NAMESPACE}:sshPrivateKey`];
        if (key !== undefined && !encrypted(key)) paths.push("sshPrivateKey");
    }
    return [...new Set(paths)].sort();
}

/**
 * Reads and validates the stack configuration under the Pulumi engine; throws
 * ConfigError with every problem (a secret in clear text among them). User
 * secrets leave this function only as secret Outputs, so no caller can read
 * one as plain text by mistake.
 */
export function loadConfig(all?: Record<string, string>, isSecretKey: SecretKeyTest = engineSecretKeyTest(), stackFileText = readStackFile()): LoadedConfig {
    const raw = readRawConfig(all);
    const validated = validateConfig(raw, { plaintextPaths: plaintextPaths(raw, isSecretKey, stackFileText) });
    for (const w of validated.warnings) {
        void pulumi.log.warn(w);
    }
    return {
        config: validated.config,
        warnings: validated.warnings,
        secretValues: Object.fromEntries(Object.entries(validated.secretValues).map(([k, v]) => [k, pulumi.secret(v)])),
        sshPrivateKey: validated.sshPrivateKey === undefined ? undefined : pulumi.secret(validated.sshPrivateKey),
    };
}

/** The engine's list of secret config keys (an SDK function not in its typings). */
function engineSecretKeyTest(): SecretKeyTest {
    const fn = (pulumi.runtime as unknown as { isConfigSecret?: SecretKeyTest }).isConfigSecret;
    if (typeof fn !== "function") {
        throw new Error("this @pulumi/pulumi has no runtime.isConfigSecret; cannot tell encrypted config from clear text");
    }
    return fn;
}

/** The stack file as Pulumi reads it from the project directory, when it is there. */
function readStackFile(): string | undefined {
    const file = path.join(process.cwd(), `Pulumi.${pulumi.getStack()}.yaml`);
    return fs.existsSync(file) ? fs.readFileSync(file, "utf8") : undefined;
}
