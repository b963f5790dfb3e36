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

/** A parsed, normalised CIDR: the network as a number, so lists can be judged as sets. */
export interface Cidr {
    family: 4 | 6;
    /** The network address as an unsigned integer. */
    network: bigint;
    bits: number;
    /** Canonical spelling: what firewalls and ufw receive. */
    text: string;
}

const FAMILY_BITS = { 4: 32, 6: 128 } as const;

function toBigInt(bytes: number[]): bigint {
    return bytes.reduce((acc, b) => (acc << 8n) | BigInt(b), 0n);
}

/**
 * Parses a CIDR such as 203.0.113.7/32 or 2001:db8::/48 into its normalised
 * form, or returns the problem. Refused: a missing prefix length, host bits set,
 * IPv4 written in anything but four decimal parts (`010.0.0.0/8` would mean
 * 8.0.0.0/8 to the parser, `0x7f.1/32` 127.0.0.1: ambiguous either way), and
 * IPv4-mapped IPv6 ranges (`::ffff:0:0/96` is all of IPv4 in disguise).
 */
export function parseCidr(value: string): Cidr | string {
    const slash = value.indexOf("/");
    if (slash < 0) {
        return `"${value}" is not a CIDR; write a single address as "${value}/32" (IPv4) or "${value}/128" (IPv6)`;
    }
    const addressText = value.slice(0, slash);
    const bitsText = value.slice(slash + 1);
    const invalid = `"${value}" is not a valid CIDR; use a form such as 203.0.113.7/32 or 2001:db8::/48`;
    if (!/^\d{1,3}$/.test(bitsText) || !ipaddr.isValid(addressText)) {
        return invalid;
    }
    const address = ipaddr.parse(addressText);
    const family = address.kind() === "ipv4" ? 4 : 6;
    const bits = Number(bitsText);
    if (bits > FAMILY_BITS[family]) {
        return invalid;
    }
    if (family === 4 && (!ipaddr.IPv4.isValidFourPartDecimal(addressText) || addressText.split(".").some((p) => p.length > 1 && p.startsWith("0")))) {
        return `"${value}" is not written as four decimal numbers without leading zeros (e.g. 10.0.0.0/8); other spellings are read as octal or hexadecimal`;
    }
    if (family === 6 && (address as ipaddr.IPv6).isIPv4MappedAddress()) {
        return `"${value}" is an IPv4-mapped IPv6 range; write the IPv4 CIDR instead`;
    }
    const host = toBigInt(address.toByteArray());
    const width = FAMILY_BITS[family];
    const mask = bits === 0 ? 0n : ((1n << BigInt(bits)) - 1n) << BigInt(width - bits);
    const network = host & mask;
    const networkText = ipaddr.fromByteArray(bigIntBytes(network, width / 8)).toString();
    if (network !== host) {
        return `"${value}" has host bits set; did you mean "${networkText}/${bits}"?`;
    }
    return { family, network, bits, text: `${networkText}/${bits}` };
}

function bigIntBytes(n: bigint, length: number): number[] {
    const out: number[] = [];
    for (let i = length - 1; i >= 0; i--) {
        out.push(Number((n >> BigInt(i * 8)) & 0xffn));
    }
    return out;
}

/** A CIDR's problem, or undefined when it parses (see parseCidr). */
export function cidrProblem(value: string): string | undefined {
    const parsed = parseCidr(value);
    return typeof parsed === "string" ? parsed : undefined;
}

/** The canonical spelling of a valid CIDR (`::0/0` -> `::/0`, `0.0.0.0/00` -> `0.0.0.0/0`). */
export function normaliseCidr(value: string): string {
    const parsed = parseCidr(value);
    return typeof parsed === "string" ? value : parsed.text;
}

/** Sorted, merged [first, last] address intervals of one family. */
type Intervals = [bigint, bigint][];

function intervalsOf(cidrs: readonly Cidr[], family: 4 | 6): Intervals {
    const width = BigInt(FAMILY_BITS[family]);
    const raw = cidrs
        .filter((c) => c.family === family)
        .map((c): [bigint, bigint] => [c.network, c.network + (1n << (width - BigInt(c.bits))) - 1n])
        .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    const merged: Intervals = [];
    for (const [lo, hi] of raw) {
        const last = merged[merged.length - 1];
        if (last && lo <= last[1] + 1n) {
            last[1] = hi > last[1] ? hi : last[1];
        } else {
            merged.push([lo, hi]);
        }
    }
    return merged;
}

function covers(set: Intervals, lo: bigint, hi: bigint): boolean {
    return set.some(([a, b]) => a <= lo && hi <= b);
}

/**
 * Special-purpose IPv4 blocks (RFC 6890: this network, private, shared,
 * loopback, link-local, multicast and reserved). Every other IPv4 address is
 * public: a list covering all of them admits the whole internet even though it
 * leaves 10.0.0.0/8 out.
 */
const IPV4_SPECIAL = ["0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16", "224.0.0.0/3"];
/** All globally routed IPv6 unicast space (RFC 4291): a list covering it admits every public IPv6 address. */
const IPV6_PUBLIC = "2000::/3";

/** The public IPv4 space as intervals (the complement of the special blocks). */
const IPV4_PUBLIC_INTERVALS: Intervals = (() => {
    const special = intervalsOf(IPV4_SPECIAL.map((c) => parseCidr(c) as Cidr), 4);
    const out: Intervals = [];
    let next = 0n;
    for (const [lo, hi] of special) {
        if (lo > next) out.push([next, lo - 1n]);
        next = hi + 1n;
    }
    if (next <= 0xffffffffn) out.push([next, 0xffffffffn]);
    return out;
})();

/**
 * Which "whole internet" a list of CIDRs admits when taken together, or
 * undefined: "IPv4" when the union covers every public IPv4 address, "IPv6"
 * when it covers 2000::/3. `0.0.0.0/1` + `128.0.0.0/1` is the world as much as
 * `0.0.0.0/0`.
 */
export function anywhereIn(cidrs: readonly Cidr[]): ("IPv4" | "IPv6")[] {
    const found: ("IPv4" | "IPv6")[] = [];
    const v4 = intervalsOf(cidrs, 4);
    if (IPV4_PUBLIC_INTERVALS.every(([lo, hi]) => covers(v4, lo, hi))) found.push("IPv4");
    const pub = parseCidr(IPV6_PUBLIC) as Cidr;
    if (covers(intervalsOf(cidrs, 6), pub.network, pub.network + (1n << 125n) - 1n)) found.push("IPv6");
    return found;
}

/**
 * Widest ranges a database may be opened to without `database.allowWideCidrs`:
 * a /8 (16.7 M addresses) is the largest block ever assigned to a single
 * organisation in IPv4; a /32 is the standard allocation to a whole provider
 * (LIR) in IPv6. A list whose union holds more addresses spans many unrelated
 * networks and is not a "listed network" any more.
 */
export const WIDE_LIMIT = { 4: 1n << 24n, 6: 1n << 96n } as const;

/** Number of addresses in the union of a list's ranges, per family. */
export function addressCount(cidrs: readonly Cidr[], family: 4 | 6): bigint {
    return intervalsOf(cidrs, family).reduce((n, [lo, hi]) => n + (hi - lo + 1n), 0n);
}

/** Parses the valid entries of a list (problems are reported per entry elsewhere). */
export function parsedCidrs(values: readonly string[]): Cidr[] {
    return values.map(parseCidr).filter((c): c is Cidr => typeof c !== "string");
}

/** True for 0.0.0.0/0 and ::/0 (the whole internet). */
export function isWorldCidr(value: string): boolean {
    const parsed = parseCidr(value);
    return typeof parsed !== "string" && parsed.bits === 0;
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
    if (/^ssh-dss /.test(value.trim())) {
        return "DSA (ssh-dss) keys are refused by OpenSSH since 7.0 and cannot log in; make an Ed25519 key with `ssh-keygen -t ed25519` and paste its .pub line";
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
    // Every minute (or hour) of its range is "*": the same calendar as the 60 listed values, and readable.
    const every = (xs: number[], size: number) => (xs.length === size ? "*" : list(xs));
    const dow = f.dayOfWeek === "*" ? "" : `${f.dayOfWeek.map((d) => DAYS[d]).join(",")} `;
    return `${dow}*-${list(f.month)}-${list(f.dayOfMonth)} ${every(f.hour, 24)}:${every(f.minute, 60)}:00 UTC`;
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

/**
 * Memory of DigitalOcean droplet sizes in MiB, read off the slug
 * (`s-2vcpu-4gb` -> 4096, legacy `2gb`, `s-1vcpu-512mb-10gb` -> 512); CPU-optimised
 * `c-N` sizes have 2 GiB per vCPU. Undefined for sizes whose memory the slug does
 * not tell (GPU droplets): no check then. A unit test runs this over every slug
 * the provider's enum knows, so a new naming scheme shows up there.
 */
export function dropletMemoryMb(slug: string): number | undefined {
    if (slug.startsWith("gpu-")) return undefined;
    const sized = /^(?:[a-z0-9_]+-)?\d+vcpu-(\d+)(gb|mb)(?:-|$)/.exec(slug) ?? /^(\d+)(gb|mb)$/.exec(slug);
    if (sized) return Number(sized[1]) * (sized[2] === "gb" ? 1024 : 1);
    const cpuOptimised = /^c-(\d+)(?:-intel)?$/.exec(slug);
    if (cpuOptimised) return Number(cpuOptimised[1]) * 2048;
    return undefined;
}

/** Memory of Lightsail Linux bundles in MiB, by size (the same across generations 2_0, 2_1, 3_0). */
export const LIGHTSAIL_MEMORY_MB: Record<string, number> = {
    nano: 512,
    micro: 1024,
    small: 2048,
    medium: 4096,
    large: 8192,
    xlarge: 16384,
    "2xlarge": 32768,
    "4xlarge": 65536,
};

/** True for loopback, private (RFC 1918, ULA) and link-local addresses, and "localhost". */
export function isPrivateHost(host: string): boolean {
    const bare = host.replace(/^\[|\]$/g, "");
    if (bare === "localhost") return true;
    if (!ipaddr.isValid(bare)) return false;
    const range = ipaddr.parse(bare).range();
    return ["loopback", "private", "uniqueLocal", "linkLocal"].includes(range);
}
