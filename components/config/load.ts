/**
 * Reads the stack configuration from Pulumi config, validates it in one pass
 * and fails with every problem listed before a single resource is registered.
 */
import * as pulumi from "@pulumi/pulumi";
import type { z } from "zod";
import { configSchema, type StackConfig } from "./schema";
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
    constructor(public readonly problems: ConfigProblem[]) {
        super(formatProblems(problems));
        this.name = "ConfigError";
    }
}

export function formatProblems(problems: ConfigProblem[]): string {
    const lines = problems.map((p) => `  - ${CONFIG_NAMESPACE}:${p.path}: ${p.message}`);
    return `invalid stack configuration (${problems.length} problem${problems.length === 1 ? "" : "s"}):\n${lines.join("\n")}`;
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

/** Result of validation: the typed config and the secret values (still plain here). */
export interface ValidatedConfig {
    config: StackConfig;
    /** User-supplied secrets, by name. Callers must wrap them with `pulumi.secret`. */
    secretValues: Record<string, string>;
    /** Deploy key for an existing server (`onebox:sshPrivateKey`). Callers must wrap it with `pulumi.secret`. */
    sshPrivateKey?: string;
}

/**
 * Validates raw configuration. Pure: no Pulumi calls, so the render command
 * and tests use it directly. Throws ConfigError listing every problem.
 */
export function validateConfig(raw: RawConfig): ValidatedConfig {
    const problems: ConfigProblem[] = [];
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

    const input = { ...rest, secretNames: Object.keys(rawSecrets ?? {}).filter((n) => /^[A-Z_][A-Z0-9_]*$/.test(n)) };
    const parsed = configSchema.safeParse(input, { error: friendlyError });
    if (!parsed.success) {
        for (const issue of parsed.error.issues) {
            problems.push({ path: formatPath(issue.path), message: issue.message });
        }
    }
    const provider = (rest.host as { provider?: unknown } | undefined)?.provider;
    if (sshPrivateKey !== undefined && (typeof sshPrivateKey !== "string" || !/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(sshPrivateKey))) {
        problems.push({ path: "sshPrivateKey", message: "not a private key; set it with `pulumi config set --secret sshPrivateKey < ~/.ssh/id_ed25519`" });
    } else if (provider === "existing" && sshPrivateKey === undefined) {
        problems.push({ path: "sshPrivateKey", message: "host.provider existing needs the key the server accepts: `pulumi config set --secret sshPrivateKey < ~/.ssh/id_ed25519`" });
    } else if (provider !== "existing" && sshPrivateKey !== undefined) {
        problems.push({ path: "sshPrivateKey", message: "only used with host.provider existing (cloud servers get a generated deploy key); remove it" });
    }
    if (problems.length > 0 || !parsed.success) {
        throw new ConfigError(problems);
    }
    return { config: parsed.data, secretValues, sshPrivateKey: sshPrivateKey as string | undefined };
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

/** Reads and validates the stack configuration; throws ConfigError with every problem. */
export function loadConfig(all?: Record<string, string>): ValidatedConfig {
    return validateConfig(readRawConfig(all));
}
