/**
 * The stack configuration contract: one zod schema for everything a stack
 * config (`Pulumi.<stack>.yaml`) may say, with defaults and documentation.
 *
 * Every top-level object is one structured Pulumi config key in the project's
 * namespace (`onebox:host`, `onebox:services`, ...). Validation runs before any
 * resource is registered and reports every problem at once, each with its path
 * and a fix.
 */
import { z } from "zod";
import { DropletSlug, Region as DoRegion } from "@pulumi/digitalocean/types/enums";
import { PROGRAM_ONLY_SECRETS, USER_SUPPLIABLE_SECRETS } from "./plan";
import { DATA_MOUNT_PATH, DEPLOY_USER } from "../hosts/host";
import {
    addressCount,
    ageRecipientProblem,
    anywhereIn,
    normaliseCidr,
    parsedCidrs,
    WIDE_LIMIT,
    bucketNameProblem,
    cidrProblem,
    hostKeyProblem,
    hostnameProblem,
    ipProblem,
    dropletMemoryMb,
    isInZone,
    isPrivateHost,
    LIGHTSAIL_MEMORY_MB,
    parseCron,
    sshPublicKeyProblem,
} from "./validators";
import { resolveS3Target, S3_PROVIDERS, s3TargetProblems } from "../storage/s3-providers";
import { postgresSettingsChecks, postgresSettingsSchema } from "./postgres-settings";
import { poolerChecks, poolerSchema } from "./pooler-schema";
import { releaseHookChecks, releaseHooksShape } from "./release-hooks-schema";
import { jobsCrossChecks, jobsSchemaOf } from "./jobs-schema";
import { anyVolumeBackedUp, stackVolumesSchema, usesStackVolumes, volumeChecks } from "./volumes-schema";
import { allowDockerRestart, guestChecks, keepPublishedPorts } from "./guests-schema";

/** Refines a string with a validator returning an error message or undefined. */
function checked(check: (v: string) => string | undefined) {
    return z.string().superRefine((v, ctx) => {
        const problem = check(v);
        if (problem) {
            ctx.addIssue({ code: "custom", message: problem });
        }
    });
}

const hostname = checked(hostnameProblem);
/** A CIDR, normalised (`::0/0` -> `::/0`): firewalls and ufw receive only the canonical form. */
const cidr = checked(cidrProblem).transform(normaliseCidr);
const sshPublicKey = checked(sshPublicKeyProblem);
const cron = checked((v) => {
    const r = parseCron(v);
    return typeof r === "string" ? r : undefined;
});

/** Names that become DNS labels, container names, file names and resource names. */
const slug = z
    .string()
    .regex(/^[a-z][a-z0-9-]{0,30}[a-z0-9]$/, "use 2-32 lower-case letters, digits and hyphens, starting with a letter");

/**
 * Text that ends up in an env file on the host (read alike by Docker Compose,
 * systemd and bash, in single quotes): no single quote, no line break, no NUL
 * or other control character (components/provisioning/shell.ts envFileValue).
 */
// eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
const ENV_UNSAFE = /['\u0000-\u001f\u007f]/;
const envSafeProblem = (v: string): string | undefined =>
    ENV_UNSAFE.test(v) ? "must not contain a single quote, a line break or another control character (env files on the host cannot carry them)" : undefined;
const envText = checked(envSafeProblem);

/** A URL the host calls: https only, and safe to carry in an env file. */
function hookUrl() {
    return z.url({ protocol: /^https?$/, message: "must be an https:// URL" }).superRefine((v, ctx) => {
        const problem = envSafeProblem(v) ?? (/\s/.test(v) ? "must not contain spaces" : undefined);
        if (problem) ctx.addIssue({ code: "custom", message: problem });
    });
}

/** An environment variable name. */
const envName = z.string().regex(/^[A-Z_][A-Z0-9_]*$/, "use UPPER_SNAKE_CASE (letters, digits, underscores)");

const port = z.number().int("must be a whole number").min(1, "must be between 1 and 65535").max(65535, "must be between 1 and 65535");

/** A container image reference: [registry/]repository[:tag][@sha256:digest]. */
const imageRef = z
    .string()
    .regex(
        /^[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$/,
        "not a valid image reference; e.g. ghcr.io/acme/api:1.4.2 or postgres:17",
    );

/** Operating systems the bootstrap supports, mapped per provider in the host components. */
export const OPERATING_SYSTEMS = ["ubuntu-22.04", "ubuntu-24.04", "debian-12", "debian-13"] as const;
export type OperatingSystem = (typeof OPERATING_SYSTEMS)[number];

export const DO_REGIONS = Object.values(DoRegion) as string[];
export const DO_SIZES = Object.values(DropletSlug) as string[];

/** Lightsail regions and their zone letters. */
export const LIGHTSAIL_REGIONS: Record<string, string[]> = {
    "us-east-1": ["a", "b", "c", "d", "e", "f"],
    "us-east-2": ["a", "b", "c"],
    "us-west-2": ["a", "b", "c", "d"],
    "ca-central-1": ["a", "b", "d"],
    "eu-west-1": ["a", "b", "c"],
    "eu-west-2": ["a", "b", "c"],
    "eu-west-3": ["a", "b", "c"],
    "eu-central-1": ["a", "b", "c"],
    "eu-north-1": ["a", "b", "c"],
    "ap-south-1": ["a", "b", "c"],
    "ap-southeast-1": ["a", "b", "c"],
    "ap-southeast-2": ["a", "b", "c"],
    "ap-southeast-3": ["a", "b", "c"],
    "ap-northeast-1": ["a", "c", "d"],
    "ap-northeast-2": ["a", "b", "c", "d"],
};

/** Lightsail Linux bundle ids with a public IPv4 address (`<size>_<generation>`). */
const LIGHTSAIL_BUNDLE = /^(nano|micro|small|medium|large|xlarge|2xlarge|4xlarge)_(2_0|2_1|3_0)$/;
/** IPv6-only bundles (`<size>_ipv6_<generation>`) cannot hold a static IPv4 address. */
const LIGHTSAIL_IPV6_BUNDLE = /^[a-z0-9]+_ipv6_\d+_\d+$/;

/** Settings shared by every host kind. */
const hostCommon = {
    /** Operating system image. @default "ubuntu-24.04" */
    os: z.enum(OPERATING_SYSTEMS, { message: `use one of ${OPERATING_SYSTEMS.join(", ")}` }).default("ubuntu-24.04"),
    /**
     * CIDRs allowed to reach SSH (F1). The whole internet (0.0.0.0/0, ::/0) is
     * refused unless `allowSshFromAnywhere` is true.
     * @example ["203.0.113.7/32"]
     */
    sshAllowedCidrs: z.array(cidr).min(1, "list at least one admin CIDR, e.g. your office address as 203.0.113.7/32"),
    /** Explicit opt-in to open SSH to the whole internet. @default false */
    allowSshFromAnywhere: z.boolean().default(false),
    /**
     * Additional OpenSSH public keys for human administrators. The program
     * generates its own deploy key; these are for people.
     */
    sshPublicKeys: z.array(sshPublicKey).default([]),
    /** Swap file size in MiB (0 disables); useful on 1 GB servers. @default 1024 */
    swapMb: z.number().int().min(0).max(65536).default(1024),
    /**
     * Lock 80/443 down to Cloudflare's published ranges (only when every
     * hostname is proxied through Cloudflare): in the cloud firewall, and in
     * the server's own firewall (ufw and DOCKER-USER), which is the only one an
     * existing server has. @default false
     */
    originLockdown: z.boolean().default(false),
};

/** Size of the block volume that holds database data and uploads. */
const dataVolumeSizeGb = z.number().int().min(1, "must be at least 1 GB").max(16384).default(10);

/**
 * F1: SSH open to the world needs an explicit opt-in. The list is judged as a
 * set: two halves of the address space are the world as much as /0 is. With
 * `requireList` (a firewall on the server itself: ufw) an empty list needs the
 * opt-in too.
 */
function sshChecks(h: { sshAllowedCidrs: string[]; allowSshFromAnywhere: boolean }, ctx: z.RefinementCtx, requireList: boolean): void {
    const sshAnywhere = anywhereIn(parsedCidrs(h.sshAllowedCidrs));
    if (sshAnywhere.length > 0 && !h.allowSshFromAnywhere) {
        const single = h.sshAllowedCidrs.findIndex((v) => anywhereIn(parsedCidrs([v])).length > 0);
        ctx.addIssue({
            code: "custom",
            path: single >= 0 ? ["sshAllowedCidrs", single] : ["sshAllowedCidrs"],
            message: `${single >= 0 ? h.sshAllowedCidrs[single] : "these ranges together"} open${single >= 0 ? "s" : ""} SSH to every public ${sshAnywhere.join(" and ")} address (the internet); list your admin addresses or set host.allowSshFromAnywhere: true`,
        });
    }
    if (requireList && h.sshAllowedCidrs.length === 0 && !h.allowSshFromAnywhere) {
        ctx.addIssue({ code: "custom", path: ["sshAllowedCidrs"], message: "list the admin CIDRs allowed to SSH (ufw), or set host.allowSshFromAnywhere: true" });
    }
}

export const digitalOceanHostSchema = z.strictObject({
    provider: z.literal("digitalocean"),
    /** DigitalOcean region slug. @example "fra1" */
    region: z.string().refine((v) => DO_REGIONS.includes(v), { message: `unknown DigitalOcean region; use one of ${DO_REGIONS.join(", ")}` }),
    /** Droplet size slug. @default "s-1vcpu-1gb" */
    size: z.string().refine((v) => DO_SIZES.includes(v), { message: "unknown droplet size; e.g. s-1vcpu-1gb, s-2vcpu-2gb, s-2vcpu-4gb" }).default("s-1vcpu-1gb"),
    /** Give the droplet an IPv6 address (and AAAA records). @default true */
    ipv6: z.boolean().default(true),
    /** Take weekly droplet backups (DigitalOcean feature, paid). @default false */
    dropletBackups: z.boolean().default(false),
    /** Data volume size in GB. @default 10 */
    dataVolumeSizeGb,
    /** Name of an existing DigitalOcean project to group resources in (created when absent). */
    project: z.string().min(1).max(175).optional(),
    /** Extra droplet tags. */
    tags: z.array(z.string().regex(/^[a-zA-Z0-9_:.-]{1,255}$/, "tags use letters, digits, _ : . -")).default([]),
    ...hostCommon,
}).superRefine((h, ctx) => sshChecks(h, ctx, false));

export const lightsailHostSchema = z.strictObject({
    provider: z.literal("lightsail"),
    /** AWS region. @example "eu-central-1" */
    region: z.string().refine((v) => v in LIGHTSAIL_REGIONS, { message: `unknown Lightsail region; use one of ${Object.keys(LIGHTSAIL_REGIONS).join(", ")}` }),
    /** Availability zone letter within the region. @default "a" */
    zone: z.string().regex(/^[a-z]$/, "use the zone letter, e.g. \"a\"").default("a"),
    /** Bundle id. @default "micro_3_0" (1 GB) */
    bundle: z
        .string()
        .refine((v) => !LIGHTSAIL_IPV6_BUNDLE.test(v), { message: "IPv6-only bundles cannot hold the static IPv4 address the server needs; use e.g. micro_3_0" })
        .refine((v) => LIGHTSAIL_IPV6_BUNDLE.test(v) || LIGHTSAIL_BUNDLE.test(v), { message: "unknown Lightsail bundle; e.g. micro_3_0 (1 GB), small_3_0 (2 GB), medium_3_0 (4 GB)" })
        .default("micro_3_0"),
    /** Data disk size in GB. @default 10 */
    dataVolumeSizeGb,
    ...hostCommon,
}).superRefine((h, ctx) => {
    sshChecks(h, ctx, false);
    const zones = LIGHTSAIL_REGIONS[h.region] ?? [];
    if (zones.length > 0 && !zones.includes(h.zone)) {
        ctx.addIssue({ code: "custom", path: ["zone"], message: `zone "${h.zone}" does not exist in ${h.region}; use one of ${zones.join(", ")}` });
    }
});

export const existingHostSchema = z.strictObject({
    provider: z.literal("existing"),
    /** Public address the program connects to. @example "203.0.113.10" */
    address: checked((v) =>
        !ipProblem(v) || !hostnameProblem(v)
            ? undefined
            : /^[^:]+:\d+$/.test(v) || /^\[.*\]:\d+$/.test(v)
              ? `"${v}" includes a port; set the address alone and the port in host.port`
              : "must be an IP address or a DNS name",
    ),
    /** SSH port. @default 22 */
    port: port.default(22),
    /** SSH user: root, or a user with password-less sudo. @default "root" */
    user: z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/, "not a valid Unix user name").default("root"),
    /**
     * The server's public SSH host key, pinned on every connection (R1).
     * Read it from the server console: `cat /etc/ssh/ssh_host_ed25519_key.pub`.
     */
    hostKey: checked(hostKeyProblem),
    /**
     * Directory for database data and uploads. When `dataDevice` is set the
     * bootstrap mounts that block device here. @default "/mnt/data"
     */
    dataPath: z.string().regex(/^\/[A-Za-z0-9._/-]+$/, "must be an absolute path").default("/mnt/data"),
    /** Optional block device to format (if empty) and mount at dataPath. */
    dataDevice: z.string().regex(/^\/dev\/[A-Za-z0-9._/-]+$/, "must be a /dev path").optional(),
    ...hostCommon,
    /** Admin CIDRs allowed to SSH through the host firewall (ufw). */
    sshAllowedCidrs: z.array(cidr).default([]),
    /** H14: may the bootstrap restart Docker while other stacks' containers run (guests-schema.ts). @default false */
    allowDockerRestart: allowDockerRestart.default(false),
    /** H14: other containers' published ports the host firewall keeps open (guests-schema.ts). @default false */
    keepPublishedPorts: keepPublishedPorts.default(false),
}).superRefine((h, ctx) => {
    // The program never touches the cloud firewall of an existing server; ufw allows SSH from these.
    sshChecks(h, ctx, true);
    // Settings that cannot apply to the chosen provider are errors, not silently dropped.
    if (h.sshPublicKeys.length > 0) {
        ctx.addIssue({ code: "custom", path: ["sshPublicKeys"], message: "an existing server's users and keys are yours to manage; the program never installs these keys; remove them (add admins on the server itself)" });
    }
});

/**
 * What the configuration needs to know of each kind of host besides its
 * settings. Adding a provider means one schema branch above and one entry
 * here (and its component in components/hosts/, listed in HOST_KINDS there).
 */
interface HostProviderFacts<H> {
    /** The settings of this kind of host. */
    readonly schema: z.ZodType<H>;
    /**
     * Whose SSH key the program connects with: "generated" (a deploy key the
     * program makes and installs at creation) or "supplied" (the
     * `sshPrivateKey` secret, for a server the program did not create).
     */
    readonly deployKey: "generated" | "supplied";
    /** The server's memory and the setting that decides it, where the settings tell. */
    readonly memory: (host: H) => { mb: number; setting: string } | undefined;
    /** The port SSH listens on, and the setting that decides it ("" when fixed). */
    readonly sshPort: (host: H) => { port: number; setting: string };
    /** Where the data lives and as whom the steps log in, known before the server exists (e.g. for `npm run render`). */
    readonly layout: (host: H) => { dataPath: string; dataDevice?: string; sshUser: string };
}

const providerFacts = <H>(facts: HostProviderFacts<H>) => facts;

export const HOST_PROVIDER_FACTS = {
    digitalocean: providerFacts({
        schema: digitalOceanHostSchema,
        deployKey: "generated",
        sshPort: () => ({ port: 22, setting: "" }),
        layout: () => ({ dataPath: DATA_MOUNT_PATH, sshUser: DEPLOY_USER }),
        memory: (h) => {
            const mb = dropletMemoryMb(h.size);
            return mb === undefined ? undefined : { mb, setting: `host.size ${h.size}` };
        },
    }),
    lightsail: providerFacts({
        schema: lightsailHostSchema,
        deployKey: "generated",
        sshPort: () => ({ port: 22, setting: "" }),
        layout: () => ({ dataPath: DATA_MOUNT_PATH, sshUser: DEPLOY_USER }),
        memory: (h) => {
            const mb = LIGHTSAIL_MEMORY_MB[h.bundle.split("_")[0]];
            return mb === undefined ? undefined : { mb, setting: `host.bundle ${h.bundle}` };
        },
    }),
    existing: providerFacts({
        schema: existingHostSchema,
        deployKey: "supplied",
        sshPort: (h) => ({ port: h.port, setting: "host.port" }),
        layout: (h) => ({ dataPath: h.dataPath, dataDevice: h.dataDevice, sshUser: h.user }),
        memory: () => undefined,
    }),
} as const;

/** The host providers, in the order the documentation lists them. */
export const HOST_PROVIDERS = Object.keys(HOST_PROVIDER_FACTS) as (keyof typeof HOST_PROVIDER_FACTS)[];

export const hostSchema = z.discriminatedUnion("provider", [digitalOceanHostSchema, lightsailHostSchema, existingHostSchema], {
    error: (issue) =>
        issue.code === "invalid_union" ? `unknown host.provider; use ${HOST_PROVIDERS.slice(0, -1).join(", ")} or ${HOST_PROVIDERS[HOST_PROVIDERS.length - 1]}` : undefined,
});

/** The facts of a validated host's provider. */
export function providerFactsOf(host: z.output<typeof hostSchema>): {
    deployKey: "generated" | "supplied";
    memory: { mb: number; setting: string } | undefined;
    sshPort: { port: number; setting: string };
    layout: { dataPath: string; dataDevice?: string; sshUser: string };
} {
    const facts = HOST_PROVIDER_FACTS[host.provider] as HostProviderFacts<typeof host>;
    return { deployKey: facts.deployKey, memory: facts.memory(host), sshPort: facts.sshPort(host), layout: facts.layout(host) };
}

const dnsSchema = z.strictObject({
    /** DNS provider; "none" when records are managed elsewhere. @default "cloudflare" */
    provider: z.enum(["cloudflare", "none"]).default("cloudflare"),
    /** The Cloudflare zone name. @example "example.com" */
    zone: hostname,
    /** The zone id; looked up by name when absent. */
    zoneId: z.string().regex(/^[a-f0-9]{32}$/, "a Cloudflare zone id is 32 hex characters").optional(),
    /** Proxy records through Cloudflare. @default true */
    proxied: z.boolean().default(true),
    /** Set the zone's SSL mode to Full (strict). @default false */
    sslStrict: z.boolean().default(false),
    /** Hostnames that get records besides the routes' hosts. */
    extraHostnames: z.array(hostname).default([]),
});

const tlsSchema = z.strictObject({
    /**
     * How the proxy gets certificates: "acme" (Let's Encrypt via the proxy),
     * "cloudflare-origin" (an origin CA certificate created by the program),
     * "internal" (the proxy's own CA; tests and private networks), or
     * "external" (an existing proxy terminates TLS).
     * @default "acme"
     */
    mode: z.enum(["acme", "cloudflare-origin", "internal", "external"]).default("acme"),
    /** Contact for the ACME account (expiry notices). */
    acmeEmail: z.string().email("must be an e-mail address").optional(),
});

/** A Content-Security-Policy: one Caddyfile/label-safe line. */
const contentSecurityPolicy = checked((v) =>
    // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
    /[\u0000-\u001f\u007f]/.test(v)
        ? "must be one line without control characters; separate directives with \"; \""
        : /["\\{}]/.test(v)
          ? "must not contain \", \\, { or }; CSP sources use single quotes, e.g. 'self'"
          : undefined,
);

/** X-Frame-Options: refuse framing, allow it from the same origin, or send no header ("off"). */
export const FRAME_OPTIONS = ["DENY", "SAMEORIGIN", "off"] as const;
/** Referrer-Policy values browsers know. */
export const REFERRER_POLICIES = [
    "no-referrer",
    "no-referrer-when-downgrade",
    "origin",
    "origin-when-cross-origin",
    "same-origin",
    "strict-origin",
    "strict-origin-when-cross-origin",
    "unsafe-url",
] as const;
const frameOptions = z.enum(FRAME_OPTIONS, { message: `use one of ${FRAME_OPTIONS.join(", ")}` });
const referrerPolicy = z.enum(REFERRER_POLICIES, { message: `use one of ${REFERRER_POLICIES.join(", ")}` });

/** One year: the shortest max-age the HSTS preload list accepts. */
export const HSTS_PRELOAD_MIN_AGE = 31536000;

/** Response headers a route may set differently from the stack's `proxy` defaults (proxy.kind caddy). */
const routeHeadersSchema = z.strictObject({
    /** Content-Security-Policy of this route (e.g. a stricter one for an API). @default proxy.contentSecurityPolicy */
    contentSecurityPolicy: contentSecurityPolicy.optional(),
    /** X-Frame-Options of this route. @default proxy.frameOptions */
    frameOptions: frameOptions.optional(),
    /** Referrer-Policy of this route. @default proxy.referrerPolicy */
    referrerPolicy: referrerPolicy.optional(),
    /** Whether the proxy's headers replace the app's own on this route. @default proxy.overrideAppHeaders */
    overrideAppHeaders: z.boolean().optional(),
});

const proxySchema = z.strictObject({
    /**
     * "caddy": the stack brings its own Caddy, the only service publishing
     * 80/443. "traefik-external": an existing Traefik on an external Docker
     * network routes to the stack by labels. @default "caddy"
     */
    kind: z.enum(["caddy", "traefik-external"]).default("caddy"),
    /** Caddy image. @default "caddy:2" */
    image: imageRef.default("caddy:2"),
    /** External network to join when kind is traefik-external. @default "proxy" */
    externalNetwork: z.string().regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/).default("proxy"),
    /** Traefik entrypoint and certificate resolver names. */
    traefikEntrypoint: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "use the entrypoint's name as in Traefik's config, e.g. websecure").default("websecure"),
    traefikCertResolver: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "use the resolver's name as in Traefik's config, e.g. le").optional(),
    /** Content-Security-Policy sent on every response (one line; no ", \\, { or }); a route may set its own. */
    contentSecurityPolicy: contentSecurityPolicy.default("default-src 'self'; frame-ancestors 'none'; object-src 'none'; base-uri 'self'"),
    /** HSTS max-age in seconds (0 disables). @default 31536000 */
    hstsMaxAge: z.number().int().min(0).default(31536000),
    /**
     * HSTS `includeSubDomains`: browsers use HTTPS for every name under each host, including
     * ones this stack does not serve. Needs hstsMaxAge > 0. @default false
     */
    hstsIncludeSubdomains: z.boolean().default(false),
    /**
     * HSTS `preload`: consent to the browsers' preload list (hard to leave: months). Needs
     * hstsIncludeSubdomains, hstsMaxAge of at least a year, a publicly trusted certificate and
     * a route on the zone apex (the list reads the header there). @default false
     */
    hstsPreload: z.boolean().default(false),
    /** X-Frame-Options: DENY, SAMEORIGIN or off (no header). @default "DENY" */
    frameOptions: frameOptions.default("DENY"),
    /** Referrer-Policy. @default "strict-origin-when-cross-origin" */
    referrerPolicy: referrerPolicy.default("strict-origin-when-cross-origin"),
    /**
     * Whether the proxy's security headers replace those the app sets itself. Off, a header
     * is added only where the app sent none (an app that knows better keeps its CSP).
     * Traefik's headers middleware always replaces them, so traefik-external refuses false.
     * @default false with proxy.kind caddy, true with traefik-external
     */
    overrideAppHeaders: z.boolean().optional(),
});

const healthSchema = z
    .strictObject({
        /** HTTP path probed inside the container. @example "/health" */
        path: z.string().regex(/^\/[A-Za-z0-9._~/-]*$/, "must be an absolute URL path").optional(),
        /** Command run inside the container instead of an HTTP probe. */
        command: z.array(z.string().min(1)).min(1).optional(),
        /** Seconds between probes. @default 10 */
        intervalSeconds: z.number().int().min(1).max(3600).default(10),
        /** Grace period after start. @default 30 */
        startPeriodSeconds: z.number().int().min(0).max(3600).default(30),
    })
    .refine((h) => Boolean(h.path) !== Boolean(h.command), { message: "set exactly one of health.path or health.command" });

const volumeSchema = z.strictObject({
    /** Directory name under the data volume (e.g. "uploads"). */
    name: slug,
    /** Mount path inside the container. */
    mountPath: checked((v) =>
        /^\/+$/.test(v)
            ? "cannot mount over the container's root filesystem; use a directory such as /data"
            : !/^\/[A-Za-z0-9._/-]+$/.test(v) || v.split("/").includes("..")
              ? "must be an absolute path of letters, digits, . _ - and /, e.g. /data/uploads"
              : undefined,
    ),
    /**
     * A service's own volume (a stack without top-level `volumes`): include it in backups.
     * With top-level `volumes` this is a setting of the declared volume instead. @default true
     */
    backup: z.boolean().optional(),
    /** Mount a stack volume (top-level `volumes`) read-only in this service. @default false */
    readOnly: z.boolean().optional(),
});

/**
 * Capabilities a service may add back (H12: every other one stays dropped). Enough for
 * entrypoints that start as root to fix ownership and drop to a user, and for binding a
 * port below 1024; none that reaches beyond the container (SYS_ADMIN, NET_ADMIN,
 * SYS_PTRACE, SYS_MODULE, NET_RAW, ...).
 */
export const ALLOWED_CAPABILITIES = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "NET_BIND_SERVICE", "SETGID", "SETUID"] as const;

const capability = z.string().superRefine((v, ctx) => {
    const bare = v.toUpperCase().replace(/^CAP_/, "");
    if ((ALLOWED_CAPABILITIES as readonly string[]).includes(v)) return;
    ctx.addIssue({
        code: "custom",
        message: (ALLOWED_CAPABILITIES as readonly string[]).includes(bare)
            ? `write "${bare}" (upper case, without CAP_)`
            : `${v} is not allowed: it reaches beyond the container or is rarely needed; allowed: ${ALLOWED_CAPABILITIES.join(", ")}`,
    });
});

/**
 * How one service receives the database (with `database: true`): the variable names its
 * code already reads, the URL's scheme (driver), where the password comes from, and the
 * TLS mode in the URL. Defaults keep the DATABASE_* contract. A name set to null is not set.
 */
const databaseEnvSchema = z.strictObject({
    /** Variable holding the URL (without the password unless listed in `secretsAsEnv`). Null: no URL. @default "DATABASE_URL" */
    url: envName.nullable().default("DATABASE_URL"),
    /**
     * URL scheme: `postgresql`, `postgres`, or with a driver as SQLAlchemy writes it
     * (`postgresql+asyncpg`, `postgresql+psycopg`). @default "postgresql"
     */
    scheme: z
        .string()
        .regex(/^postgres(ql)?(\+[a-z][a-z0-9_]*)?$/, "use postgresql, postgres, or postgresql+<driver> (e.g. postgresql+asyncpg)")
        .default("postgresql"),
    /**
     * TLS mode written into the URL (`sslmode=`; `ssl=` for the asyncpg driver, which reads
     * that name). `require` only where PostgreSQL serves TLS (published with
     * `database.allowedCidrs`). Unset: the driver's default.
     */
    sslmode: z.enum(["disable", "prefer", "require"]).optional(),
    /** @default "DATABASE_HOST" */
    host: envName.nullable().default("DATABASE_HOST"),
    /** @default "DATABASE_PORT" */
    port: envName.nullable().default("DATABASE_PORT"),
    /** @default "DATABASE_NAME" */
    name: envName.nullable().default("DATABASE_NAME"),
    /** @default "DATABASE_USER" */
    user: envName.nullable().default("DATABASE_USER"),
    /** Variable naming the password file (0400, the service's user). Null: no file is mounted. @default "DATABASE_PASSWORD_FILE" */
    passwordFile: envName.nullable().default("DATABASE_PASSWORD_FILE"),
    /**
     * Opt-in for apps that read the password itself from the environment (e.g.
     * `POSTGRES_PASSWORD`): this variable holds it, visible to `docker inspect` like
     * `secretsAsEnv`. @default null
     */
    password: envName.nullable().default(null),
    /**
     * Point the URL, host and port at PgBouncer (`database.pooler`, transaction pooling)
     * instead of PostgreSQL. Off for anything that needs a session: migrations, advisory
     * locks held across transactions, LISTEN/NOTIFY, SET, unnamed prepared statements.
     * @default false
     */
    pooler: z.boolean().default(false),
});

export type DatabaseEnv = z.output<typeof databaseEnvSchema>;

/** The database contract of a service: its own `databaseEnv`, else the DATABASE_* defaults. */
export function databaseEnvOf(service: { databaseEnv?: DatabaseEnv }): DatabaseEnv {
    return service.databaseEnv ?? databaseEnvSchema.parse({});
}

const serviceSchema = z.strictObject({
    /** Container image. Pin a tag or digest; `latest` is refused. */
    image: imageRef.refine((v) => !/:latest$/.test(v) && /[:@]/.test(v.split("/").pop() ?? ""), {
        message: "pin a version tag or digest (\":latest\" or no tag is not reproducible)",
    }),
    /** Port the service listens on inside its container (web services). */
    port: port.optional(),
    /** Health check (H9); required for services with a port. */
    health: healthSchema.optional(),
    /** Command override. */
    command: z.array(z.string()).optional(),
    /** Plain, non-secret environment (one-line values without single quotes). */
    env: z.record(envName, envText).default({}),
    /**
     * Names of secrets (from `secrets` or `generatedSecrets`) this service receives (H11):
     * each as a file `/run/secrets/<NAME>` readable only by the service's user, named by
     * the variable `<NAME>_FILE` (the official images' convention).
     */
    secrets: z.array(envName).default([]),
    /**
     * Opt-in, per secret, for apps that cannot read a file: these names (each one of
     * `secrets`, or `DATABASE_URL` for a `database` service: the URL with the password) are
     * set as plain environment variables instead, visible to `docker inspect` and to the
     * process environment. @default [] @example ["LEGACY_API_TOKEN", "DATABASE_URL"]
     */
    secretsAsEnv: z.array(envName).default([]),
    /** Give this service DATABASE_* settings and the database password file. @default false */
    database: z.boolean().default(false),
    /** With `database`: the variable names, URL scheme, password delivery and TLS mode this service expects. */
    databaseEnv: databaseEnvSchema.optional(),
    /** Give this service REDIS_URL. @default false */
    redis: z.boolean().default(false),
    /**
     * Outbound internet access (mail relays, payment APIs, S3). On by default because turning it
     * off breaks such an app only at run time, when it first calls out; set false for services
     * that need none (a static frontend, a worker that only talks to the database): such a service
     * reaches neither the internet nor the server's own addresses (sshd), only the other app
     * services by name. Services reach PostgreSQL only with `database: true` and Redis only with
     * `redis: true` either way.
     * @default true
     */
    egress: z.boolean().default(true),
    /** Run as this uid:gid (H9). Null keeps the image's user. @default "10001:10001" */
    user: z.string().regex(/^[0-9]+(:[0-9]+)?$/, "use numeric uid[:gid]").nullable().default("10001:10001"),
    /** Memory limit in MiB. @default 256 */
    memoryMb: z.number().int().min(32, "must be at least 32 MiB").max(262144).default(256),
    /** CPU limit (fraction of cores). @default 0.5 */
    cpus: z.number().positive().max(64).default(0.5),
    /**
     * Persistent directories on the data volume: the service's own (`{ name, mountPath,
     * backup }`), or, in a stack with top-level `volumes`, mounts of those (`{ name,
     * mountPath, readOnly }`).
     */
    volumes: z.array(volumeSchema).default([]),
    /**
     * Read-only root filesystem (H12); `/tmp` and the `tmpfs` paths are writable in memory,
     * `volumes` on the data volume. `false` opts out for images that write elsewhere. @default true
     */
    readOnly: z.boolean().default(true),
    /** More in-memory writable directories of a read-only service (e.g. a cache path). @default [] @example ["/app/.cache"] */
    tmpfs: z.array(z.string().regex(/^\/[A-Za-z0-9._/-]+$/, "must be an absolute path")).default([]),
    /** Most processes/threads in the container (H12): a fork bomb stops here. @default 256 */
    pidsLimit: z.number().int().min(16, "at least 16 (an interpreter alone starts several threads)").max(65536).default(256),
    /**
     * Capabilities added back to this service (all others stay dropped, H12), from
     * ALLOWED_CAPABILITIES. Docker gives them to a root process only: use with `user: null`
     * for an image whose entrypoint starts as root and drops privileges. @default []
     * @example ["CHOWN", "SETUID", "SETGID"]
     */
    capAdd: z.array(capability).default([]),
}).superRefine((s, ctx) => {
    const seenCaps = new Set<string>();
    s.capAdd.forEach((c, i) => {
        if (seenCaps.has(c)) ctx.addIssue({ code: "custom", path: ["capAdd", i], message: `${c} is listed twice` });
        seenCaps.add(c);
    });
    if (s.capAdd.length > 0 && s.user !== null && s.user.split(":")[0] !== "0") {
        ctx.addIssue({
            code: "custom",
            path: ["capAdd"],
            message: `user ${s.user} is not root, and Docker gives added capabilities to root processes only; set user: null (an image that starts as root and drops privileges) or remove capAdd`,
        });
    }
    const dbEnv = databaseEnvOf(s);
    const urlName = s.database ? dbEnv.url : null;
    s.secretsAsEnv.forEach((n, i) => {
        if (!s.secrets.includes(n) && n !== urlName) {
            ctx.addIssue({
                code: "custom",
                path: ["secretsAsEnv", i],
                message: `"${n}" is not a secret of this service; list it in secrets (or, for the database URL (${dbEnv.url ?? "none"}), set database: true) or remove it here`,
            });
        }
    });
    if (s.databaseEnv && !s.database) {
        ctx.addIssue({ code: "custom", path: ["databaseEnv"], message: "databaseEnv shapes the database settings of a service with database: true; set database: true or remove it" });
    }
    if (s.database) {
        const fileSecretVars = s.secrets.filter((x) => !s.secretsAsEnv.includes(x)).map((x) => `${x}_FILE`);
        const seen = new Map<string, string>();
        for (const key of ["url", "host", "port", "name", "user", "passwordFile", "password"] as const) {
            const v = dbEnv[key];
            if (v === null) continue;
            const at = ["databaseEnv", key];
            if (seen.has(v)) {
                ctx.addIssue({ code: "custom", path: at, message: `${v} is already databaseEnv.${seen.get(v)}; give each setting its own variable` });
            } else if (v in s.env) {
                ctx.addIssue({ code: "custom", path: at, message: `${v} is also set in env; remove it there (the program sets it) or choose another name` });
            } else if ((s.secrets.includes(v) && s.secretsAsEnv.includes(v)) || fileSecretVars.includes(v)) {
                ctx.addIssue({ code: "custom", path: at, message: `${v} is already a secret variable of this service; choose another name` });
            }
            seen.set(v, key);
        }
        if (dbEnv.passwordFile === null && dbEnv.password === null && !(dbEnv.url !== null && s.secretsAsEnv.includes(dbEnv.url))) {
            ctx.addIssue({
                code: "custom",
                path: ["databaseEnv", "passwordFile"],
                message: `the service would get no database password: keep passwordFile, set databaseEnv.password, or list ${dbEnv.url ?? "the URL"} in secretsAsEnv`,
            });
        }
        if (dbEnv.sslmode && dbEnv.url === null) {
            ctx.addIssue({ code: "custom", path: ["databaseEnv", "sslmode"], message: "sslmode is written into the URL; set databaseEnv.url or remove sslmode" });
        }
    }
    for (const n of s.secrets.filter((x) => !s.secretsAsEnv.includes(x))) {
        if (`${n}_FILE` in s.env) {
            ctx.addIssue({ code: "custom", path: ["env", `${n}_FILE`], message: `${n}_FILE names the file of secret ${n}; remove it from env (the program sets it)` });
        }
    }
});

/** A path prefix such as /api ("/" matches every path). */
const pathPrefix = z.string().regex(/^\/([A-Za-z0-9._~-]+\/?)*$/, "must be a path prefix such as /api");

/** Longest rate-limit window: buckets of idle clients are kept this long at most. */
export const RATE_WINDOW_MAX_SECONDS = 24 * 3600;
const WINDOW_UNIT_SECONDS = { s: 1, m: 60, h: 3600 } as const;

/** Seconds of a window such as "1m", "90s" or "1h". */
export function windowSeconds(window: string): number {
    const m = /^([1-9][0-9]*)([smh])$/.exec(window);
    if (!m) throw new Error(`not a window: ${window}`);
    return Number(m[1]) * WINDOW_UNIT_SECONDS[m[2] as keyof typeof WINDOW_UNIT_SECONDS];
}

const rateWindow = z
    .string()
    .regex(/^[1-9][0-9]{0,5}[smh]$/, 'use a number of seconds, minutes or hours such as "30s", "1m" or "1h"')
    // Zod runs this even after the pattern failed: judge only well-formed windows.
    .refine((w) => !/^[1-9][0-9]*[smh]$/.test(w) || windowSeconds(w) <= RATE_WINDOW_MAX_SECONDS, { message: "use a window of at most 24h" });

/**
 * One request limit per client on a route (needs the onebox Caddy build as proxy.image).
 * Each client may send `burst` requests at once, then `requests` per `window`
 * (a token bucket refilled at requests/window); beyond that it gets 429 with Retry-After.
 */
const rateLimitSchema = z.strictObject({
    /** Path prefix within the route that this limit counts (e.g. /login). @default the route's own path */
    path: pathPrefix.optional(),
    /** Requests per window and client. @example 5 */
    requests: z.number().int("must be a whole number of requests").min(1, "allow at least 1 request per window").max(100000),
    /** The window of `requests`: a number of seconds, minutes or hours, at most 24h. @example "1m" */
    window: rateWindow,
    /** Requests a client may send at once before the refill rate applies. @default requests */
    burst: z.number().int("must be a whole number of requests").min(1, "burst must be at least 1").max(100000).optional(),
    /** Client networks (CIDRs) this limit never applies to, e.g. an office or a monitor. @default [] */
    exempt: z.array(cidr).default([]),
});

const routeSchema = z.strictObject({
    /** Hostname. */
    host: hostname,
    /** Path prefix; "/" matches everything not matched by a longer prefix. @default "/" */
    path: pathPrefix.default("/"),
    /** Target service name (a key of `services`). */
    service: slug,
    /** Security headers of this route where they differ from `proxy`'s (proxy.kind caddy). */
    headers: routeHeadersSchema.optional(),
    /**
     * Request limits per client on this route, each on the whole route or on a path prefix
     * within it (needs the onebox Caddy build as proxy.image). @default []
     * @example [{ path: "/login", requests: 5, window: "1m" }]
     */
    rateLimits: z.array(rateLimitSchema).min(1, "list at least one limit, or remove rateLimits").optional(),
    /**
     * Only these client networks (CIDRs) may use the route; others get 403 (e.g. an admin
     * route). Needs the onebox Caddy build as proxy.image. @default every client
     */
    allowFrom: z.array(cidr).min(1, "list at least one network, or remove allowFrom").optional(),
});

/** A rotation interval in whole days; 0 turns rotation off. */
const rotationDays = z
    .number()
    .int("must be a whole number of days")
    .min(0, "must be 0 (never) or a number of days")
    .max(3650, "rotate at least every 3650 days, or set 0 for never")
    .refine((d) => d === 0 || d >= 7, { message: "rotating more often than every 7 days restarts the app needlessly; use 7 or more, or 0 for never" })
    .default(0);

const databaseSchema = z.strictObject({
    /** Run PostgreSQL in the stack. @default true */
    enabled: z.boolean().default(true),
    /** Major version. @default 17 */
    version: z.number().int().min(13, "supported PostgreSQL versions are 13-18").max(18, "supported PostgreSQL versions are 13-18").default(17),
    /** Image; defaults to the official image of `version`. */
    image: imageRef.optional(),
    /** Database name. @default "app" */
    name: z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/, "use lower-case letters, digits and underscores").default("app"),
    /** Owner role. @default "app" */
    user: z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/, "use lower-case letters, digits and underscores").default("app"),
    /** Memory limit in MiB. @default 256 */
    memoryMb: z.number().int().min(64).max(262144).default(256),
    /**
     * CIDRs that may reach PostgreSQL directly (for example an app hosted
     * elsewhere). Empty keeps the database on the internal network only. The
     * whole internet is always refused.
     */
    allowedCidrs: z.array(cidr).default([]),
    /**
     * Accept `allowedCidrs` whose union is wider than an IPv4 /8 or an IPv6 /32
     * (a warning is still printed). The whole internet is refused regardless.
     * @default false
     */
    allowWideCidrs: z.boolean().default(false),
    /** Host port published when allowedCidrs is not empty. @default 5432 */
    publicPort: port.default(5432),
    /**
     * Rotate the generated password of the owner role every this many days
     * (0: never). Periods are counted in whole days from 1970-01-01 UTC; the
     * first `pulumi up` in a new period generates a new password, and the
     * deploy sets it in PostgreSQL and restarts the services that use it.
     * @default 0
     */
    passwordRotationDays: rotationDays,
    /**
     * PostgreSQL parameters from a known list (components/config/postgres-settings.ts), each
     * typed and with its unit: sizes as "64MB", durations as "500ms". Settings the stack relies
     * on (listen_addresses, ssl*, archiving) are refused. A change restarts PostgreSQL at the
     * next deploy. @default {} (shared_buffers a quarter of memoryMb, max_connections 50)
     * @example { work_mem: "8MB", log_min_duration_statement: "500ms" }
     */
    settings: postgresSettingsSchema.default({}),
    /**
     * PgBouncer in transaction mode in front of PostgreSQL, on the database network only;
     * services opt in with `databaseEnv.pooler` (components/config/pooler-schema.ts).
     * @default { enabled: false }
     */
    pooler: poolerSchema(imageRef).prefault({}),
});

const redisSchema = z.strictObject({
    /** Run Redis in the stack. @default false */
    enabled: z.boolean().default(false),
    /** Image. @default "redis:7-alpine" */
    image: imageRef.default("redis:7-alpine"),
    /** Memory limit in MiB. @default 128 */
    memoryMb: z.number().int().min(32).max(65536).default(128),
});

const backupsSchema = z.strictObject({
    /** Take backups. @default true */
    enabled: z.boolean().default(true),
    /**
     * Bucket name. With `create: true` the program creates it in AWS with
     * least-privilege credentials; otherwise it must exist and credentials come
     * from the `BACKUP_S3_ACCESS_KEY_ID`/`BACKUP_S3_SECRET_ACCESS_KEY` secrets.
     */
    bucket: checked(bucketNameProblem),
    /** Create the bucket and its IAM user in AWS. @default true */
    create: z.boolean().default(true),
    /**
     * Replace the created IAM user's access key every this many days (0:
     * never; `create: true` only). In the first `pulumi up` of a new period the
     * new key is created, installed on the host, then the old one deleted.
     * @default 0
     */
    keyRotationDays: rotationDays,
    /**
     * Storage service: "aws", "b2" (Backblaze), "r2" (Cloudflare), "spaces"
     * (DigitalOcean), "minio" or "other". Sets the endpoint (b2, spaces: from
     * the region), the region rules, the addressing style and the upload tool's
     * profile (components/storage/s3-providers.ts).
     * @default "aws" ("other" when only `endpoint` is set)
     */
    provider: z.enum(S3_PROVIDERS, { message: `use one of ${S3_PROVIDERS.join(", ")}` }).optional(),
    /**
     * Bucket region, spelled as the provider spells it: AWS eu-central-1, B2
     * eu-central-003, Spaces fra1, R2 auto; free-form (a-z 0-9 -) for minio/other.
     * @default "us-east-1" (aws, minio, other), "auto" (r2); required for b2 and spaces
     */
    region: z.string().optional(),
    /** S3 endpoint (https). Required for r2, minio and other; b2 and spaces derive it from the region. */
    endpoint: z.url({ protocol: /^https$/, message: "must be an https:// URL" }).refine((v) => !envSafeProblem(v) && !/\s/.test(v), { message: "must not contain quotes, spaces or control characters" }).optional(),
    /** Key prefix; defaults to "<app>/<environment>". */
    prefix: z.string().regex(/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/, "use path segments without leading or trailing slash").optional(),
    /** Days to keep daily dumps. @default 7 */
    retentionDays: z.number().int("must be a whole number of days").positive("must be at least 1 day").max(3650).default(7),
    /** Weeks to keep weekly dumps (0 disables weekly copies). @default 4 */
    weeklyRetentionWeeks: z.number().int().min(0, "must be 0 or more").max(520).default(4),
    /**
     * Delete dumps older than the retention from the host after each backup
     * (only under the prefix; daily, weekly and file archives each by their own
     * retention; the newest of each is always kept). Needs credentials that may
     * delete under the prefix. Turn it off when the bucket's own lifecycle rules
     * expire old objects and the host key cannot delete (scripts/host/backup/README.md).
     * @default true when `create: false` (the bucket is not ours), false with `create: true` (lifecycle rules)
     */
    pruneOnHost: z.boolean().optional(),
    /** Also keep the newest `keep` dumps on the data volume (as uploaded, so encrypted when `encryptionPublicKey` is set). */
    local: z
        .strictObject({
            /** How many dumps to keep on the data volume. @example 3 */
            keep: z.number().int("must be a whole number").min(1, "keep at least 1 dump, or remove backups.local").max(365),
        })
        .optional(),
    /** Five-field cron schedule, UTC. @default "30 3 * * *" */
    schedule: cron.default("30 3 * * *"),
    /**
     * Point-in-time recovery: PostgreSQL archives its write-ahead log continuously
     * (`archive_timeout` 60 s, so at most about a minute of commits is at risk) with
     * pgBackRest to `<prefix>/pitr/` in the same bucket, a base backup runs on
     * `schedule` (full on Sundays, differential otherwise), and pgBackRest keeps enough
     * full backups, with every WAL segment they need, to reach back `retentionDays`.
     * `restore.sh --to-time` restores to any moment in that window. Needs the database,
     * a key that may delete under the prefix (`create: false`, `pruneOnHost`), no
     * `encryptionPublicKey`, and a PostgreSQL image that contains pgbackrest
     * (`database.image`; README "Point-in-time recovery").
     * @default false
     */
    pointInTime: z.boolean().default(false),
    /** age recipient; dumps are encrypted on the host with it (B2). */
    encryptionPublicKey: checked(ageRecipientProblem).optional(),
    /** Alert when no success for this many hours. @default 26 */
    maxAgeHours: z.number().int().positive().max(24 * 60).default(26),
    /** URL POSTed on failure (B3). https only (see `allowPlainHttpHooks`). */
    alertUrl: hookUrl().optional(),
    /** URL pinged on success (dead-man's switch); its token must not travel in clear. */
    heartbeatUrl: hookUrl().optional(),
    /**
     * Accept http:// alert and heartbeat URLs whose host is a private or
     * loopback address: a relay inside the server's own private network that
     * has no certificate. Over the internet a clear-text heartbeat leaks its
     * token and a failure alert can be dropped unseen, so public hosts stay
     * https-only even with this set. @default false
     */
    allowPlainHttpHooks: z.boolean().default(false),
    /** Restore drill (B4). */
    drill: z
        .strictObject({
            /** Five-field cron schedule, UTC. @default "0 5 * * 0" */
            schedule: cron.default("0 5 * * 0"),
            /** Tables that must exist with rows. */
            tables: z.array(z.string().regex(/^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$/)).default([]),
        })
        .prefault({}),
}).transform((b, ctx) => {
    // Defaults that depend on other settings are filled in here, once; the
    // cross-checks below then judge the resolved values.
    const target = resolveS3Target(b);
    for (const [key, message] of s3TargetProblems(target, b)) {
        ctx.issues.push({ code: "custom", path: [key], message, input: b });
    }
    // Only settings go into the output (validating it again gives it back unchanged); how
    // a provider is addressed is read off its preset where it is needed.
    return { ...b, provider: target.provider, region: target.region, endpoint: target.endpoint, pruneOnHost: b.pruneOnHost ?? !b.create };
});

/** A private registry the host logs in to before pulling. */
const registrySchema = z.strictObject({
    /** Registry host as in image references, with its port if any (no scheme). @example "ghcr.io" */
    server: z
        .string()
        .regex(
            /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*(?::[0-9]{1,5})?$/,
            "use the registry host as in image references, e.g. ghcr.io or registry.example.com:5000 (no https://, no path)",
        ),
    /** User name (for GitHub's registry, the account or a bot's name). */
    username: z.string().regex(/^[A-Za-z0-9._@+-]{1,128}$/, "use letters, digits and . _ @ + - (at most 128)"),
    /**
     * Name of the user-supplied secret holding the password or token
     * (`pulumi config set --secret --path 'secrets.<NAME>'`). @example "GHCR_TOKEN"
     */
    passwordSecret: envName,
});

const deploySchema = z.strictObject({
    /** Release directories kept for rollback. @default 5 */
    keepReleases: z.number().int().min(2, "keep at least 2 releases to allow rollback").max(50).default(5),
    /**
     * "registry": the host pulls images. "upload": the program streams locally
     * built images over SSH (`docker save | docker load`), for setups without
     * a registry. @default "registry"
     */
    imageSource: z.enum(["registry", "upload"]).default("registry"),
    /** Seconds the health gate waits. @default 180 */
    healthTimeoutSeconds: z.number().int().min(10).max(3600).default(180),
    /**
     * Private registries the host authenticates to when it pulls: the credentials live in a
     * root-only file of this stack (a per-stack DOCKER_CONFIG), never in a command line or log.
     * @default []
     */
    registries: z.array(registrySchema).default([]),
    /** Release hooks (release command, preflight, smoke checks, dump before release): release-hooks-schema.ts. */
    ...releaseHooksShape({ slug, hostname, envName }),
});

const appSchema = z.strictObject({
    /** Application name: resource names, DNS-safe. @example "finances" */
    name: slug,
    /** Environment. @example "prod" */
    environment: slug.default("prod"),
});

/** Everything the server runs, besides the server itself and its DNS: what the provisioning steps read. */
const workloadShape = {
    tls: tlsSchema.prefault({}),
    proxy: proxySchema.prefault({}),
    /**
     * The app's services by name. May be empty only with `database.enabled`: a
     * database-only server (no route, so no proxy and no 80/443). @default {}
     */
    services: z.record(slug, serviceSchema).default({}),
    routes: z.array(routeSchema).default([]),
    database: databaseSchema.prefault({}),
    redis: redisSchema.prefault({}),
    backups: backupsSchema.optional(),
    deploy: deploySchema.prefault({}),
    /** Scheduled jobs: one-off containers of a service's current image under systemd timers (jobs-schema.ts). */
    jobs: jobsSchemaOf({ slug, cron, hookUrl }).default({}),
    /** Volumes declared once and mounted by several services (volumes-schema.ts). @default {} */
    volumes: stackVolumesSchema,
    /** Names of secrets generated by the program (random, 48 characters). */
    generatedSecrets: z.array(envName).default([]),
    /** Names of user-supplied secrets present (values are checked separately). */
    secretNames: z.array(envName).default([]),
};

export const configSchema = z
    .strictObject({
        app: appSchema,
        host: hostSchema,
        dns: dnsSchema.optional(),
        ...workloadShape,
    })
    .superRefine((c, ctx) => crossChecks(c, ctx));

export type StackConfig = z.output<typeof configSchema>;

/**
 * The settings of the server's own hardening that the provisioning steps
 * apply (the part of `host` that does not depend on where the server runs).
 */
export const hardeningSchema = z.strictObject({
    /**
     * CIDRs the server's firewall (ufw) admits to SSH. The whole internet is
     * refused unless `allowSshFromAnywhere` is true (F1). Empty: only with
     * `allowSshFromAnywhere`. @default []
     */
    sshAllowedCidrs: z.array(cidr).default([]),
    allowSshFromAnywhere: hostCommon.allowSshFromAnywhere,
    swapMb: hostCommon.swapMb,
    originLockdown: hostCommon.originLockdown,
    /**
     * Requests reach the server through Cloudflare's proxy, so the proxy
     * trusts Cloudflare's published ranges for the client's address
     * (`CF-Connecting-IP`) and nobody else. A stack sets it from
     * `dns.provider: cloudflare` with `dns.proxied`. @default false
     */
    behindCloudflare: z.boolean().optional(),
    /** H14 (existing servers; guests-schema.ts). Absent: false. */
    allowDockerRestart: allowDockerRestart.optional(),
    /** H14 (existing servers; guests-schema.ts). Absent: false. */
    keepPublishedPorts: keepPublishedPorts.optional(),
}).superRefine((h, ctx) => sshChecks(h, ctx, true));

/**
 * What the provisioning of a server reads: the app and everything it runs
 * (the stack configuration without `host` and `dns`), with the server's
 * hardening settings under `host`. Validated with the same checks as the
 * stack configuration wherever they do not need the server or DNS.
 */
export const provisioningSchema = z
    .strictObject({
        app: appSchema,
        host: hardeningSchema.prefault({}),
        ...workloadShape,
    })
    .superRefine((c, ctx) => crossChecks(c, ctx));

/** The validated input of the provisioning steps. A {@link StackConfig} is one. */
export type ProvisioningConfig = z.output<typeof provisioningSchema>;
/** {@link ProvisioningConfig} as a program writes it: optional settings may be left out (defaults apply). */
export type ProvisioningInput = z.input<typeof provisioningSchema>;
/** The server's own hardening settings (the `host` part of {@link ProvisioningConfig}). */
export type HardeningConfig = ProvisioningConfig["host"];

/** The stack configuration's form for {@link crossChecks}: a whole stack, or the provisioning part of one. */
type CheckedConfig = StackConfig | (ProvisioningConfig & { dns?: undefined });
export type HostConfig = StackConfig["host"];
export type ServiceConfig = z.output<typeof serviceSchema>;
export type RouteConfig = z.output<typeof routeSchema>;
export type BackupsConfig = z.output<typeof backupsSchema>;

/** Checks that span several settings. */
function crossChecks(c: CheckedConfig, ctx: z.RefinementCtx): void {
    const issue = (path: (string | number)[], message: string) => ctx.addIssue({ code: "custom", path, message });
    // The server's settings, when a whole stack is checked (the provisioning part holds only its hardening).
    const server = "provider" in c.host ? c.host : undefined;

    // The host's own rules (F1, zones, keys) are checked with the host's settings (hostChecks).

    // Database exposure: listed networks only, never the world (judged as a set),
    // and very wide ranges only on an explicit opt-in (validators.ts WIDE_LIMIT).
    const dbCidrs = parsedCidrs(c.database.allowedCidrs);
    const dbAnywhere = anywhereIn(dbCidrs);
    if (dbAnywhere.length > 0) {
        const single = c.database.allowedCidrs.findIndex((v) => anywhereIn(parsedCidrs([v])).length > 0);
        issue(
            single >= 0 ? ["database", "allowedCidrs", single] : ["database", "allowedCidrs"],
            `${single >= 0 ? c.database.allowedCidrs[single] : "these ranges together"} would make PostgreSQL public (every ${dbAnywhere.join(" and ")} address); list the client networks (e.g. 198.51.100.0/24)`,
        );
    } else {
        const wide = ([4, 6] as const).filter((f) => addressCount(dbCidrs, f) > WIDE_LIMIT[f]);
        if (wide.length > 0 && !c.database.allowWideCidrs) {
            issue(
                ["database", "allowedCidrs"],
                `together these ranges span more than a ${wide.map((f) => (f === 4 ? "/8 (IPv4)" : "/32 (IPv6)")).join(" and a ")}: many unrelated networks could reach PostgreSQL; list the client networks, or set database.allowWideCidrs: true if you mean it`,
            );
        }
    }
    if (c.database.allowedCidrs.length > 0 && !c.database.enabled) {
        issue(["database", "allowedCidrs"], "database.enabled is false; remove allowedCidrs");
    }
    guestChecks(c, issue);
    const published: [number, string][] = [];
    if (c.proxy.kind === "caddy") {
        published.push([80, "proxy (HTTP)"], [443, "proxy (HTTPS)"]);
    }
    const ssh = server ? providerFactsOf(server).sshPort : { port: 22, setting: "" };
    published.push([ssh.port, ssh.setting ? `${ssh.setting} (SSH)` : "SSH"]);
    if (c.database.allowedCidrs.length > 0) {
        published.push([c.database.publicPort, "database.publicPort"]);
    }
    const seen = new Map<number, string>();
    for (const [p, what] of published) {
        const other = seen.get(p);
        if (other) {
            issue(["database", "publicPort"], `port ${p} is used twice (${other} and ${what}); pick another port`);
        }
        seen.set(p, what);
    }

    // Services, routes and secrets reference each other by name.
    const serviceNames = Object.keys(c.services);
    const reserved = ["proxy", "postgres", "redis", "backup", "backup-status"];
    for (const name of serviceNames) {
        if (reserved.includes(name)) {
            issue(["services", name], `"${name}" is reserved for a built-in service; rename it`);
        }
        const s = c.services[name];
        if (!s.health) {
            issue(
                ["services", name, "health"],
                s.port === undefined
                    ? "every service needs a health check (H9); for a worker use a command, e.g. health: { command: [\"python\", \"-m\", \"app.healthcheck\"] }"
                    : "every service needs a health check (H9); e.g. health: { path: /health }",
            );
        }
        if (s.database && c.database.enabled && s.databaseEnv?.sslmode === "require" && c.database.allowedCidrs.length === 0) {
            issue(
                ["services", name, "databaseEnv", "sslmode"],
                "PostgreSQL serves TLS only when published (database.allowedCidrs); on the server's private network use disable or prefer",
            );
        }
        if (s.database && !c.database.enabled) {
            issue(["services", name, "database"], "database.enabled is false; enable it or remove this flag");
        }
        if (s.redis && !c.redis.enabled) {
            issue(["services", name, "redis"], "redis.enabled is false; enable it or remove this flag");
        }
        const known = new Set([...c.generatedSecrets, ...c.secretNames]);
        s.secrets.forEach((ref, i) => {
            if (!known.has(ref)) {
                issue(["services", name, "secrets", i], `secret "${ref}" is neither in generatedSecrets nor set with \`pulumi config set --secret --path 'secrets.${ref}'\``);
            }
            if (ref in s.env) {
                issue(["services", name, "env", ref], `"${ref}" is also a secret of this service; keep it in one place`);
            }
        });
    }
    // Names the program fills itself; BACKUP_S3_* may be user-supplied (backups.create: false).
    const programSecrets: readonly string[] = PROGRAM_ONLY_SECRETS;
    c.generatedSecrets.forEach((n, i) => {
        if (programSecrets.includes(n) || n.startsWith("BACKUP_S3_")) {
            issue(["generatedSecrets", i], `"${n}" is reserved for a value the program manages; pick another name`);
        }
    });
    for (const n of c.secretNames.filter((x) => programSecrets.includes(x))) {
        issue(["secrets", n], `"${n}" is reserved for a value the program manages; pick another name`);
    }
    const registryServers = new Set<string>();
    c.deploy.registries.forEach((r, i) => {
        if (registryServers.has(r.server)) issue(["deploy", "registries", i, "server"], `${r.server} is listed twice`);
        registryServers.add(r.server);
        if (!c.secretNames.includes(r.passwordSecret)) {
            issue(["deploy", "registries", i, "passwordSecret"], `no secret "${r.passwordSecret}": set the registry's password or token with \`pulumi config set --secret --path 'secrets.${r.passwordSecret}'\``);
        }
    });
    if (c.deploy.registries.length > 0 && c.deploy.imageSource === "upload") {
        issue(["deploy", "registries"], "deploy.imageSource upload streams the images from this machine, so the host never pulls; remove registries or use imageSource: registry");
    }
    releaseHookChecks(c, (s) => {
        const e = databaseEnvOf(s as ServiceConfig);
        return [e.url, e.host, e.port, e.name, e.user, e.passwordFile, e.password];
    }, issue);
    const dupSecret = c.generatedSecrets.filter((n) => c.secretNames.includes(n));
    for (const n of dupSecret) {
        issue(["generatedSecrets"], `"${n}" is both generated and user-supplied; remove one`);
    }

    const routeKeys = new Set<string>();
    c.routes.forEach((r, i) => {
        const target = c.services[r.service];
        if (!target) {
            issue(["routes", i, "service"], `no service named "${r.service}"; known services: ${serviceNames.join(", ") || "(none)"}`);
        } else if (target.port === undefined) {
            issue(["routes", i, "service"], `service "${r.service}" has no port to route to; set services.${r.service}.port`);
        }
        const key = `${r.host}${r.path.replace(/\/$/, "")}`;
        if (routeKeys.has(key)) {
            issue(["routes", i], `duplicate route for ${r.host}${r.path}`);
        }
        routeKeys.add(key);
        if (c.dns && c.dns.provider !== "none" && !isInZone(r.host, c.dns.zone)) {
            issue(["routes", i, "host"], `"${r.host}" is outside the DNS zone ${c.dns.zone}; use a name ending in .${c.dns.zone}`);
        }
    });
    if (c.dns) {
        c.dns.extraHostnames.forEach((h, i) => {
            if (c.dns && !isInZone(h, c.dns.zone)) {
                issue(["dns", "extraHostnames", i], `"${h}" is outside the DNS zone ${c.dns.zone}`);
            }
        });
    }

    // TLS and proxy combinations.
    if (c.tls.mode === "acme" && c.proxy.kind === "caddy" && c.routes.length > 0 && !c.tls.acmeEmail) {
        issue(["tls", "acmeEmail"], "ACME needs a contact e-mail for expiry notices; set tls.acmeEmail");
    }
    // How TLS and the origin lockdown relate to DNS is judged where the stack's DNS is known (not
    // for the provisioning part alone, whose origin certificate may come from anywhere).
    if (server && c.tls.mode === "cloudflare-origin" && c.dns?.provider !== "cloudflare") {
        issue(["tls", "mode"], "cloudflare-origin certificates need dns.provider: cloudflare");
    }
    if (c.tls.mode === "cloudflare-origin" && c.dns && !c.dns.proxied) {
        issue(["tls", "mode"], "origin certificates are only trusted through Cloudflare's proxy; set dns.proxied: true or use tls.mode: acme");
    }
    if (c.proxy.kind === "traefik-external" && c.tls.mode !== "external") {
        issue(["tls", "mode"], "with proxy.kind traefik-external the existing proxy terminates TLS; set tls.mode: external");
    }
    if (c.proxy.kind === "caddy" && c.tls.mode === "external") {
        issue(["tls", "mode"], "tls.mode external needs proxy.kind traefik-external");
    }
    if (server && c.host.originLockdown && (!c.dns || c.dns.provider !== "cloudflare" || !c.dns.proxied)) {
        issue(["host", "originLockdown"], "origin lockdown admits only Cloudflare; it needs dns.provider: cloudflare with proxied: true");
    }
    // Headers: HSTS preconditions, and per-route headers only where our proxy renders them.
    if (c.proxy.hstsIncludeSubdomains && c.proxy.hstsMaxAge === 0) {
        issue(["proxy", "hstsIncludeSubdomains"], "HSTS is off (proxy.hstsMaxAge: 0); set a max-age or remove hstsIncludeSubdomains");
    }
    if (c.proxy.hstsPreload) {
        if (!c.proxy.hstsIncludeSubdomains) {
            issue(["proxy", "hstsPreload"], "the preload list requires includeSubDomains; set proxy.hstsIncludeSubdomains: true (every subdomain must serve HTTPS)");
        }
        if (c.proxy.hstsMaxAge < HSTS_PRELOAD_MIN_AGE) {
            issue(["proxy", "hstsPreload"], `the preload list requires a max-age of at least ${HSTS_PRELOAD_MIN_AGE} s (one year); raise proxy.hstsMaxAge`);
        }
        if (c.tls.mode === "internal") {
            issue(["proxy", "hstsPreload"], "tls.mode internal certificates are not publicly trusted; preloading would lock browsers out");
        }
        if (c.dns && !c.routes.some((r) => r.host === c.dns?.zone)) {
            issue(["proxy", "hstsPreload"], `the preload list reads the header from the apex ${c.dns.zone}; route ${c.dns.zone} through this proxy or remove hstsPreload`);
        }
    }
    if (c.proxy.kind === "traefik-external") {
        if (c.proxy.overrideAppHeaders === false) {
            issue(["proxy", "overrideAppHeaders"], "Traefik's headers middleware always replaces the app's headers; remove this setting or use proxy.kind caddy");
        }
        c.routes.forEach((r, i) => {
            if (r.headers) issue(["routes", i, "headers"], "per-route headers are rendered by the stack's own Caddy; with proxy.kind traefik-external set them in proxy");
        });
    }

    if (!server && c.host.originLockdown && !("behindCloudflare" in c.host && c.host.behindCloudflare)) {
        issue(["host", "originLockdown"], "origin lockdown admits only Cloudflare; it needs host.behindCloudflare: true");
    }
    rateLimitChecks(c, issue);
    databaseOnlyChecks(c, issue);

    if (c.host.originLockdown && c.tls.mode === "acme" && c.routes.length > 0) {
        issue(["host", "originLockdown"], "ACME HTTP-01 challenges come from outside Cloudflare's ranges; use tls.mode: cloudflare-origin with origin lockdown");
    }

    // Volumes: each backed-up directory becomes an archive named after the
    // volume (scripts/host/backup/lib.sh archive_name), so the names must differ.
    const backedUp = new Map<string, string>();
    for (const name of serviceNames) {
        const mounts = new Set<string>();
        const names = new Set<string>();
        c.services[name].volumes.forEach((v, i) => {
            if (names.has(v.name)) issue(["services", name, "volumes", i, "name"], `volume "${v.name}" is listed twice in this service`);
            if (mounts.has(v.mountPath)) issue(["services", name, "volumes", i, "mountPath"], `${v.mountPath} is mounted twice in this service`);
            names.add(v.name);
            mounts.add(v.mountPath);
            if ((v.backup ?? true) && c.backups?.enabled && !usesStackVolumes(c)) {
                const other = backedUp.get(v.name);
                if (other && other !== name) {
                    issue(
                        ["services", name, "volumes", i, "name"],
                        `services.${other} also backs up a volume named "${v.name}", a directory of its own, and their backup archives would collide: to share one directory declare it once at stack level (volumes: { ${v.name}: {} }) and mount it in both; otherwise rename one`,
                    );
                }
                backedUp.set(v.name, name);
            }
        });
    }
    volumeChecks(c, issue);


    // Memory limits against the server's memory, where the size is known.
    const memory = server ? providerFactsOf(server).memory : undefined;
    if (c.database.enabled) {
        postgresSettingsChecks(c.database, memory, issue);
    } else if (Object.keys(c.database.settings).length > 0) {
        issue(["database", "settings"], "database.enabled is false; remove settings");
    }
    poolerChecks(c, memory, issue);
    if (memory !== undefined) {
        const { mb: serverMb, setting: size } = memory;
        const limits: [(string | number)[], number][] = [
            ...serviceNames.map((n): [(string | number)[], number] => [["services", n, "memoryMb"], c.services[n].memoryMb]),
            ...(c.database.enabled ? [[["database", "memoryMb"], c.database.memoryMb] as [(string | number)[], number]] : []),
            ...(c.redis.enabled ? [[["redis", "memoryMb"], c.redis.memoryMb] as [(string | number)[], number]] : []),
        ];
        for (const [path, mb] of limits) {
            if (mb >= serverMb) {
                issue(path, `${mb} MiB is not below the server's memory (${size}: ${serverMb} MiB); lower it or choose a larger size`);
            }
        }
    }

    jobsCrossChecks(c, issue);

    // Backups.
    if (c.backups) {
        const b = c.backups;
        for (const key of ["alertUrl", "heartbeatUrl"] as const) {
            const url = b[key];
            if (url?.startsWith("http:")) {
                const host = new URL(url).hostname;
                if (!b.allowPlainHttpHooks) {
                    issue(["backups", key], "must be an https:// URL (a clear-text heartbeat leaks its token, an alert can be dropped unseen); for a relay on a private network set backups.allowPlainHttpHooks: true");
                } else if (!isPrivateHost(host)) {
                    issue(["backups", key], `${host} is not a private address; backups.allowPlainHttpHooks only covers relays on loopback or private networks: use https://`);
                }
            }
        }
        if (b.enabled && !c.database.enabled && !anyVolumeBackedUp(c)) {
            issue(["backups"], "nothing to back up: no database and no volume with backup: true");
        }
        // resolveS3Target again: when a backups field failed, the transform above did not run.
        if ((b.endpoint || resolveS3Target(b).provider !== "aws") && b.create) {
            issue(["backups", "create"], "the program can only create buckets in AWS; with another provider or a custom endpoint set backups.create: false and supply credentials");
        }
        if (b.create && b.pruneOnHost) {
            issue(["backups", "pruneOnHost"], "the bucket the program creates expires old dumps by its lifecycle rules and its key cannot delete (S6); remove backups.pruneOnHost");
        }
        if (b.pointInTime) {
            if (!b.enabled) {
                issue(["backups", "pointInTime"], "point-in-time recovery archives to the backup bucket and backups.enabled is false; enable backups or remove backups.pointInTime");
            }
            if (!c.database.enabled) {
                issue(["backups", "pointInTime"], "point-in-time recovery archives PostgreSQL's write-ahead log and database.enabled is false; remove backups.pointInTime");
            } else if (c.database.image === undefined) {
                issue(["backups", "pointInTime"], `the official postgres:${c.database.version} image has no pgbackrest; set database.image to an image of PostgreSQL ${c.database.version} that contains it (README "Point-in-time recovery")`);
            }
            if (!b.pruneOnHost) {
                issue(["backups", "pointInTime"], "pgBackRest expires old base backups and their WAL itself, so its key must be allowed to delete under the prefix: use an existing bucket (backups.create: false) with backups.pruneOnHost");
            }
            if (b.encryptionPublicKey) {
                issue(["backups", "pointInTime"], "the WAL archive cannot be encrypted to an age public key (pgBackRest encrypts with a passphrase kept on the server); remove backups.encryptionPublicKey or backups.pointInTime");
            }
        }
        if (b.local && !c.database.enabled) {
            issue(["backups", "local"], "local copies keep database dumps and database.enabled is false; remove backups.local");
        }
        if (!b.create && b.keyRotationDays > 0) {
            issue(["backups", "keyRotationDays"], "the program rotates only the key of a bucket it creates (create: true); rotate your own key where it was made and update the secrets");
        }
        if (!b.create) {
            for (const n of USER_SUPPLIABLE_SECRETS) {
                if (!c.secretNames.includes(n)) {
                    issue(["backups", "create"], `backups.create is false: set the secret with \`pulumi config set --secret --path 'secrets.${n}'\``);
                }
            }
        }
    }
}


/**
 * A stack without services or routes: something must run, a server without routes
 * serves nothing over TLS, and its backups' freshness must be seen without the
 * proxy's /healthz/backup (B3): through the heartbeat.
 */
function databaseOnlyChecks(c: CheckedConfig, issue: (path: (string | number)[], message: string) => void): void {
    if (Object.keys(c.services).length === 0 && !c.database.enabled) {
        issue(["services"], "define at least one service, or enable the database (database.enabled: true) for a database-only server");
    }
    if (c.routes.length > 0) return;
    if (c.tls.mode === "cloudflare-origin") {
        issue(["tls", "mode"], "no route is served, so there is nothing to serve an origin certificate for; add routes or remove tls.mode");
    }
    if (c.backups?.enabled && !c.backups.heartbeatUrl) {
        issue(
            ["backups", "heartbeatUrl"],
            "with no routes there is no proxy to serve /healthz/backup, so a stale or failing backup would go unseen; set backups.heartbeatUrl to a dead-man's-switch URL (e.g. a healthchecks.io check) that alerts when the pings stop",
        );
    }
}

/**
 * Whether an image is a stock Caddy image (Docker Hub's official `caddy`), which
 * lacks the rate limiter; onebox's build (scripts/build-proxy-image.sh) has it.
 */
export function isStockCaddyImage(image: string): boolean {
    const name = image.split("@")[0].replace(/:[^/]*$/, "");
    return ["caddy", "library/caddy", "docker.io/caddy", "docker.io/library/caddy", "index.docker.io/library/caddy"].includes(name);
}

/** Rate limits and allow-lists: rendered by the stack's own Caddy build, each limit inside its route. */
function rateLimitChecks(c: CheckedConfig, issue: (path: (string | number)[], message: string) => void): void {
    const limited = c.routes.flatMap((r, i) => [
        ...(r.rateLimits ? [["routes", i, "rateLimits"]] : []),
        ...(r.allowFrom ? [["routes", i, "allowFrom"]] : []),
    ]);
    if (limited.length === 0) return;
    if (c.proxy.kind === "traefik-external") {
        for (const path of limited) {
            issue(path, "with proxy.kind traefik-external requests never pass the stack's Caddy, so it cannot limit or filter them; configure Traefik's rateLimit and ipAllowList middlewares there, or use proxy.kind caddy");
        }
        return;
    }
    if (isStockCaddyImage(c.proxy.image)) {
        issue(
            ["proxy", "image"],
            `${c.proxy.image} has no rate limiter, which routes.${String(limited[0][1])}.${String(limited[0][2])} needs: build the onebox Caddy image with scripts/build-proxy-image.sh and set proxy.image to its tag (e.g. onebox-caddy:2.11.9; push it to your registry unless deploy.imageSource is upload)`,
        );
    }
    const prefix = (p: string) => p.replace(/\/+$/, "");
    const covers = (outer: string, inner: string) => outer === "" || inner === outer || inner.startsWith(`${outer}/`);
    c.routes.forEach((r, i) => {
        const own = prefix(r.path);
        r.rateLimits?.forEach((l, j) => {
            if (l.path === undefined) return;
            const p = prefix(l.path);
            if (!covers(own, p)) {
                issue(["routes", i, "rateLimits", j, "path"], `${l.path} is outside this route's path ${r.path}; use a prefix under it, or put the limit on the route that serves ${l.path}`);
                return;
            }
            // A longer route of the same host takes these requests: the limit would never count them.
            const taken = c.routes.find((o) => o !== r && o.host === r.host && prefix(o.path).length > own.length && covers(prefix(o.path), p));
            if (taken) {
                issue(["routes", i, "rateLimits", j, "path"], `requests to ${l.path} go to the route ${taken.host}${taken.path}; put this limit on that route`);
            }
        });
    });
}
