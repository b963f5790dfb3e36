/**
 * The one quoting helper for anything interpolated into a shell command or
 * script on the host (STYLE.md: "shell built as data"). Commands are built as
 * argument arrays and joined here; tests assert the exact strings.
 */

/** Words made only of these characters mean the same quoted or not in POSIX sh. */
const SAFE_WORD = /^[A-Za-z0-9_@%+=:,./-]+$/;

/**
 * Quotes one word for POSIX sh/bash: unchanged when it is made of safe
 * characters, otherwise single-quoted with embedded quotes written as `'\''`.
 *
 * @example shellQuote("/srv/onebox/app") === "/srv/onebox/app"
 * @example shellQuote("it's") === "'it'\\''s'"
 */
export function shellQuote(word: string): string {
    if (word === "") {
        return "''";
    }
    if (SAFE_WORD.test(word)) {
        return word;
    }
    return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** Joins an argument vector into one command line, each word quoted. */
export function shellJoin(args: readonly string[]): string {
    return args.map(shellQuote).join(" ");
}

/**
 * Formats one value of an environment file read by Docker Compose
 * (`env_file`), systemd (`EnvironmentFile=`) and bash (`source`) alike: single
 * quotes, which all three read literally (no `$` interpolation, no escapes).
 * The one thing single quotes cannot carry portably is a single quote, so such
 * a value is refused with the variable's name (never its value) in the error.
 */
export function envFileValue(name: string, value: string): string {
    if (value.includes("'")) {
        throw new Error(`${name}: values in env files cannot contain a single quote (') — Compose, systemd and bash disagree on escaping it; choose a value without one`);
    }
    if (value.includes("\0")) {
        throw new Error(`${name}: values in env files cannot contain a NUL character`);
    }
    return `'${value}'`;
}

/** One `NAME='value'` line per entry, in the given order, newline-terminated. */
export function envFileLines(entries: readonly (readonly [string, string])[]): string {
    return entries.map(([k, v]) => `${k}=${envFileValue(k, v)}\n`).join("");
}
