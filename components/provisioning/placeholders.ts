/**
 * Secret placeholders in host file content. Step files never hold secret
 * values: they say `{{secret:NAME}}` and the value is substituted only when
 * the step's stdin is rendered (R3: secrets reach the host on stdin only).
 *
 * Grammar: `{{secret:NAME}}` or `{{secret:NAME|FILTER}}` where FILTER encodes
 * the value for where it lands:
 * - `env`: a single-quoted env-file value (see `envFileValue`), e.g. `KEY={{secret:KEY|env}}`;
 * - `url`: percent-encoded, for credentials inside a URL;
 * - `scram`: the PostgreSQL SCRAM-SHA-256 verifier of the value (see `scramVerifier`), so a
 *   role's password can be set without the password ever reaching the server (R8).
 *
 * Reserved names (values supplied by the program, not by `secrets:` config):
 * - `POSTGRES_PASSWORD`: the database owner's password (generated).
 * - `BACKUP_S3_ACCESS_KEY_ID`, `BACKUP_S3_SECRET_ACCESS_KEY`: backup bucket credentials
 *   (the created IAM user's key, or user-supplied when backups.create is false).
 * - `TLS_ORIGIN_CERT`, `TLS_ORIGIN_KEY`: Cloudflare origin certificate and key (tls.mode cloudflare-origin).
 * Every other name is an app secret from `generatedSecrets` or `secrets`.
 */
import { createHash, createHmac, pbkdf2Sync } from "node:crypto";
import { envFileValue } from "./shell";

export { RESERVED_SECRETS } from "../config/plan";

export type SecretFilter = "env" | "url" | "scram";

/** What the mask renders in place of every secret value. */
export const MASK = "********";

const PLACEHOLDER = /\{\{secret:([A-Z_][A-Z0-9_]*)(?:\|(env|url|scram))?\}\}/g;

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
        case "scram":
            return scramVerifier(value);
        default:
            return value;
    }
}

/** PostgreSQL's default iteration count for SCRAM-SHA-256 (`scram_iterations`). */
export const SCRAM_ITERATIONS = 4096;

/**
 * The SCRAM-SHA-256 verifier PostgreSQL stores for a password (RFC 5802/7677, the
 * format of `pg_authid.rolpassword`): `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
 * `ALTER ROLE ... PASSWORD '<verifier>'` stores it as it is, so the plaintext password
 * never reaches the server and cannot appear in its log, in pg_stat_activity or in
 * pg_stat_statements, whatever happens to the statement (R8).
 *
 * The salt is derived from the password (HMAC-SHA-256 keyed with it) rather than random, so
 * the same password renders the same file and an unchanged configuration re-runs nothing
 * (R5). A salt exists to make equal passwords hash differently; a generated 48-character
 * password is unique, and knowing the salt's derivation helps no brute force of a password
 * with that much entropy. Passwords are NFKC-normalised (the core of SASLprep; generated
 * passwords are ASCII, which SASLprep leaves unchanged).
 */
export function scramVerifier(password: string, iterations = SCRAM_ITERATIONS): string {
    const normalized = password.normalize("NFKC");
    const salt = createHmac("sha256", normalized).update("onebox scram-sha-256 salt").digest().subarray(0, 16);
    const salted = pbkdf2Sync(normalized, salt, iterations, 32, "sha256");
    const clientKey = createHmac("sha256", salted).update("Client Key").digest();
    const storedKey = createHash("sha256").update(clientKey).digest();
    const serverKey = createHmac("sha256", salted).update("Server Key").digest();
    return `SCRAM-SHA-256$${iterations}:${salt.toString("base64")}$${storedKey.toString("base64")}:${serverKey.toString("base64")}`;
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
