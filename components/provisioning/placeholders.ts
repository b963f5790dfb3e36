/**
 * Secret placeholders in host file content. Step files never hold secret
 * values: they say `{{secret:NAME}}` and the value is substituted only when
 * the step's stdin is rendered (R3: secrets reach the host on stdin only).
 *
 * Grammar: `{{secret:NAME}}` or `{{secret:NAME|FILTER}}` where FILTER encodes
 * the value for where it lands:
 * - `env`: a single-quoted env-file value (see `envFileValue`), e.g. `KEY={{secret:KEY|env}}`;
 * - `url`: percent-encoded, for credentials inside a URL.
 *
 * Reserved names (values supplied by the program, not by `secrets:` config):
 * - `POSTGRES_PASSWORD`: the database owner's password (generated).
 * - `BACKUP_S3_ACCESS_KEY_ID`, `BACKUP_S3_SECRET_ACCESS_KEY`: backup bucket credentials
 *   (the created IAM user's key, or user-supplied when backups.create is false).
 * - `TLS_ORIGIN_CERT`, `TLS_ORIGIN_KEY`: Cloudflare origin certificate and key (tls.mode cloudflare-origin).
 * Every other name is an app secret from `generatedSecrets` or `secrets`.
 */
import { envFileValue } from "./shell";

export const RESERVED_SECRETS = {
    postgresPassword: "POSTGRES_PASSWORD",
    postgresTlsCert: "POSTGRES_TLS_CERT",
    postgresTlsKey: "POSTGRES_TLS_KEY",
    backupAccessKeyId: "BACKUP_S3_ACCESS_KEY_ID",
    backupSecretAccessKey: "BACKUP_S3_SECRET_ACCESS_KEY",
    tlsOriginCert: "TLS_ORIGIN_CERT",
    tlsOriginKey: "TLS_ORIGIN_KEY",
} as const;

export type SecretFilter = "env" | "url";

/** What the mask renders in place of every secret value. */
export const MASK = "********";

const PLACEHOLDER = /\{\{secret:([A-Z_][A-Z0-9_]*)(?:\|(env|url))?\}\}/g;

/** The placeholder text for a secret, optionally with a filter. */
export function secretRef(name: string, filter?: SecretFilter): string {
    if (!/^[A-Z_][A-Z0-9_]*$/.test(name)) {
        throw new Error(`invalid secret name "${name}": use UPPER_SNAKE_CASE`);
    }
    return filter ? `{{secret:${name}|${filter}}}` : `{{secret:${name}}}`;
}

/** Names of the secrets referenced in a text, sorted and unique. */
export function referencedSecrets(text: string): string[] {
    const names = new Set<string>();
    for (const m of text.matchAll(PLACEHOLDER)) {
        names.add(m[1]);
    }
    return [...names].sort();
}

function applyFilter(name: string, value: string, filter: string | undefined): string {
    switch (filter) {
        case "env":
            return envFileValue(name, value);
        case "url":
            // encodeURIComponent leaves !'()* alone; encode them too so the result is safe in any quoting.
            return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
        default:
            return value;
    }
}

/**
 * Replaces every placeholder with its value (single pass: a value that looks
 * like a placeholder is not expanded again). Throws listing every missing name.
 */
export function substituteSecrets(text: string, values: Readonly<Record<string, string>>): string {
    const missing = referencedSecrets(text).filter((n) => !(n in values));
    if (missing.length > 0) {
        throw new Error(`no value for secret${missing.length === 1 ? "" : "s"} ${missing.join(", ")}`);
    }
    return text.replace(PLACEHOLDER, (_m, name: string, filter: string | undefined) => applyFilter(name, values[name], filter));
}

/** Replaces every placeholder with the mask (quoted where the filter quotes, never percent-encoded). */
export function maskSecrets(text: string): string {
    return text.replace(PLACEHOLDER, (_m, name: string, filter: string | undefined) => (filter === "env" ? applyFilter(name, MASK, filter) : MASK));
}
