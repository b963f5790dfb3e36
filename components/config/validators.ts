/**
 * Small, pure validators shared by the configuration schema. Each returns an
 * error string (the fix included) or `undefined` when the value is fine, so the
 * schema can report every problem at once.
 */
import ipaddr from "ipaddr.js";
import { CronExpressionParser } from "cron-parser";

/** A DNS hostname (no wildcard, no trailing dot), lower case. */
const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

export function hostnameProblem(value: string): string | undefined {
    if (value.includes("*")) {
        return `"${value}" is a wildcard; list each hostname explicitly (wildcards cannot be routed or certified by HTTP-01)`;
    }
    if (value !== value.toLowerCase()) {
        return `"${value}" must be lower case`;
    }
    if (value.endsWith(".")) {
        return `"${value}" must not end with a dot`;
    }
    if (value.length > 253) {
        return `"${value}" is longer than 253 characters`;
    }
    const labels = value.split(".");
    if (labels.length < 2 || !labels.every((l) => LABEL.test(l)) || /^[0-9]+$/.test(labels[labels.length - 1])) {
        return `"${value}" is not a valid DNS name; use a name such as app.example.com`;
    }
    return undefined;
}

/** True when `host` is `zone` or a name below it. */
export function isInZone(host: string, zone: string): boolean {
    return host === zone || host.endsWith(`.${zone}`);
}

/** A CIDR such as 203.0.113.7/32 or 2001:db8::/48; host bits must be zero. */
export function cidrProblem(value: string): string | undefined {
    if (!value.includes("/")) {
        return `"${value}" is not a CIDR; write a single address as "${value}/32" (IPv4) or "${value}/128" (IPv6)`;
    }
    let parsed: [ipaddr.IPv4 | ipaddr.IPv6, number];
    try {
        parsed = ipaddr.parseCIDR(value);
    } catch {
        return `"${value}" is not a valid CIDR; use a form such as 203.0.113.7/32 or 2001:db8::/48`;
    }
    const [address, bits] = parsed;
    const network = address.kind() === "ipv4"
        ? ipaddr.IPv4.networkAddressFromCIDR(value)
        : ipaddr.IPv6.networkAddressFromCIDR(value);
    if (network.toString() !== address.toString()) {
        return `"${value}" has host bits set; did you mean "${network.toString()}/${bits}"?`;
    }
    return undefined;
}

/** True for 0.0.0.0/0 and ::/0 (the whole internet). */
export function isWorldCidr(value: string): boolean {
    try {
        const [, bits] = ipaddr.parseCIDR(value);
        return bits === 0;
    } catch {
        return false;
    }
}

export function ipProblem(value: string): string | undefined {
    return ipaddr.isValid(value) ? undefined : `"${value}" is not an IPv4 or IPv6 address`;
}

const PUBLIC_KEY = /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,3}( [^\r\n]*)?$/;

/** An OpenSSH public key line (authorized_keys format). */
export function sshPublicKeyProblem(value: string): string | undefined {
    if (/PRIVATE KEY/.test(value)) {
        return "this is a PRIVATE key; paste the public key (the one-line contents of the .pub file) and keep the private key off the config";
    }
    if (!PUBLIC_KEY.test(value.trim())) {
        return "not an OpenSSH public key; expected one line such as \"ssh-ed25519 AAAAC3... you@laptop\"";
    }
    return undefined;
}

/** A server host key line: "<type> <base64>" (as in /etc/ssh/ssh_host_ed25519_key.pub). */
export function hostKeyProblem(value: string): string | undefined {
    if (/PRIVATE KEY/.test(value)) {
        return "this is a private key; use the server's PUBLIC host key, e.g. the output of `ssh-keyscan -t ed25519 <host>` without the host name";
    }
    if (!PUBLIC_KEY.test(value.trim())) {
        return "not an SSH public host key; expected \"ssh-ed25519 AAAA...\" (from /etc/ssh/ssh_host_ed25519_key.pub on the server)";
    }
    return undefined;
}

/** An age X25519 recipient. */
export function ageRecipientProblem(value: string): string | undefined {
    if (value.startsWith("AGE-SECRET-KEY-")) {
        return "this is an age SECRET key; configure the public recipient (age1...) and keep the identity offline";
    }
    return /^age1[02-9ac-hj-np-z]{58}$/.test(value)
        ? undefined
        : "not an age recipient; expected a public key such as age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
}

/**
 * S3 bucket naming rules (general purpose buckets): 3-63 characters, lower-case
 * letters, digits, dots and hyphens, begins and ends with a letter or digit, not
 * an IP address, no "..", no reserved prefixes or suffixes.
 */
export function bucketNameProblem(value: string): string | undefined {
    const fix = "use 3-63 lower-case letters, digits and hyphens, e.g. myapp-prod-backups";
    if (value.length < 3 || value.length > 63) {
        return `"${value}" must be 3-63 characters long; ${fix}`;
    }
    if (!/^[a-z0-9][a-z0-9.-]*[a-z0-9]$/.test(value) || value.includes("..") || ipaddr.IPv4.isValidFourPartDecimal(value)) {
        return `"${value}" is not a valid bucket name; ${fix}`;
    }
    if (value.startsWith("xn--") || value.startsWith("sthree-") || value.endsWith("-s3alias") || value.endsWith("--ol-s3")) {
        return `"${value}" uses a prefix or suffix that S3 reserves; ${fix}`;
    }
    return undefined;
}

/** Parsed five-field cron expression, in the shape a systemd timer needs. */
export interface CronFields {
    minute: number[];
    hour: number[];
    dayOfMonth: number[] | "*";
    month: number[] | "*";
    dayOfWeek: number[] | "*";
}

/** Parses a standard five-field cron expression ("m h dom mon dow"). */
export function parseCron(value: string): CronFields | string {
    const fields = value.trim().split(/\s+/);
    if (fields.length !== 5) {
        return `"${value}" must have exactly five fields (minute hour day-of-month month day-of-week), e.g. "30 3 * * *"`;
    }
    if (fields.some((f) => f.startsWith("@") || /[LW#?]/i.test(f))) {
        return `"${value}" uses a non-standard cron extension; use plain numbers, ranges, lists and steps`;
    }
    try {
        const parsed = CronExpressionParser.parse(`0 ${value}`);
        const f = parsed.fields;
        if (!f.dayOfMonth.isWildcard && !f.dayOfWeek.isWildcard) {
            return `"${value}" restricts both day-of-month and day-of-week (cron ORs them, timers AND them); restrict only one`;
        }
        return {
            minute: [...f.minute.values].map(Number),
            hour: [...f.hour.values].map(Number),
            dayOfMonth: f.dayOfMonth.isWildcard ? "*" : [...f.dayOfMonth.values].filter((d) => d !== "L").map(Number),
            month: f.month.isWildcard ? "*" : [...f.month.values].map(Number),
            dayOfWeek: f.dayOfWeek.isWildcard ? "*" : [...new Set([...f.dayOfWeek.values].map((d) => Number(d) % 7))].sort(),
        };
    } catch (e) {
        return `"${value}" is not a valid cron expression (${(e as Error).message}); e.g. "30 3 * * *" for 03:30 every day`;
    }
}

const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const pad = (n: number) => String(n).padStart(2, "0");

/** Converts a cron expression to a systemd OnCalendar= value (UTC). */
export function cronToOnCalendar(value: string): string {
    const f = parseCron(value);
    if (typeof f === "string") {
        throw new Error(f);
    }
    const list = (xs: number[] | "*") => (xs === "*" ? "*" : xs.map(pad).join(","));
    const dow = f.dayOfWeek === "*" ? "" : `${f.dayOfWeek.map((d) => DAYS[d]).join(",")} `;
    return `${dow}*-${list(f.month)}-${list(f.dayOfMonth)} ${list(f.hour)}:${list(f.minute)}:00 UTC`;
}

const PLACEHOLDER = /^(change[-_ ]?me|changeit|password|passw0rd|secret|default|example|placeholder|todo|xxx+|test|admin|letmein|qwerty|12345678|your[-_].*|<.*>|\$\{.*\})$/i;

/** Rejects values that are short, placeholder-like or have almost no variety. */
export function weakSecretProblem(value: string, minLength = 16): string | undefined {
    const v = value.trim();
    if (PLACEHOLDER.test(v) || /change[-_ ]?me|replace[-_ ]?me|placeholder|example/i.test(v)) {
        return "looks like a placeholder; set the real value with `pulumi config set --secret`";
    }
    if (v.length < minLength) {
        return `is ${v.length} characters; use at least ${minLength} (or let the program generate it)`;
    }
    if (new Set(v).size < 6) {
        return "has too little variety to be a real secret; use a random value";
    }
    return undefined;
}
