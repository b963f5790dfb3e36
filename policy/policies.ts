/**
 * The policies of the onebox policy pack (`pulumi preview --policy-pack policy`).
 * Each guards a property of SECURITY.md that the resource graph shows, so a
 * change to the program (or a resource added beside it) that weakens one stops
 * the preview, whatever the unit tests cover. Pure data in, violations out:
 * the tests call `validateResource` / `validateStack` directly.
 *
 * Policies see the desired state of each resource, never the operation: "do not
 * replace the server, do not delete the volume" is enforced by requiring the
 * guards that make Pulumi refuse those operations (`ignoreChanges` on the
 * replacement-triggering inputs, `protect` on the data), in production stacks,
 * unless the run's policy configuration sets the explicit flag.
 */
import { UnknownValueError, type PolicyResource, type ReportViolation, type ResourceValidationArgs, type ResourceValidationPolicy, type StackValidationArgs, type StackValidationPolicy } from "@pulumi/policy";
import { anywhereIn, parseCidr, type Cidr } from "../components/config/validators";

export const TYPES = {
    doFirewall: "digitalocean:index/firewall:Firewall",
    doDroplet: "digitalocean:index/droplet:Droplet",
    doVolume: "digitalocean:index/volume:Volume",
    lsPorts: "aws:lightsail/instancePublicPorts:InstancePublicPorts",
    lsInstance: "aws:lightsail/instance:Instance",
    lsDisk: "aws:lightsail/disk:Disk",
    bucket: "aws:s3/bucket:Bucket",
    bucketV2: "aws:s3/bucketV2:BucketV2",
    publicAccessBlock: "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
    encryption: "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    encryptionV2: "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
    remoteCommand: "command:remote:Command",
    copyToRemote: "command:remote:CopyToRemote",
    localCommand: "command:local:Command",
    randomPassword: "random:index/randomPassword:RandomPassword",
    privateKey: "tls:index/privateKey:PrivateKey",
    accessKey: "aws:iam/accessKey:AccessKey",
} as const;

/** IAM resources whose `policy` is a policy document. */
const IAM_POLICY_TYPES = ["aws:iam/policy:Policy", "aws:iam/groupPolicy:GroupPolicy", "aws:iam/userPolicy:UserPolicy", "aws:iam/rolePolicy:RolePolicy"];
/** IAM resources that attach a managed policy by ARN. */
const IAM_ATTACHMENT_TYPES = [
    "aws:iam/groupPolicyAttachment:GroupPolicyAttachment",
    "aws:iam/userPolicyAttachment:UserPolicyAttachment",
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
    "aws:iam/policyAttachment:PolicyAttachment",
];

/** Policy configuration (`--policy-pack-config`); every flag is off unless set for a run. */
export interface OneboxPolicyConfig {
    /** SSH ports of the servers. @default [22] */
    sshPorts?: number[];
    /** Ports PostgreSQL may be published on (to listed networks only). @default [5432] */
    databasePorts?: number[];
    /** The stack's `host.allowSshFromAnywhere: true`, repeated here on purpose. @default false */
    allowSshFromAnywhere?: boolean;
    /** Stacks the production-only policy applies to. @default ["prod", "production"] */
    productionStacks?: string[];
    /** Lets one run replace a production server (set for that run only). @default false */
    allowServerReplacement?: boolean;
    /** Lets one run delete a production data volume or backup bucket. @default false */
    allowDataDeletion?: boolean;
    /** Advisory: droplet sizes / Lightsail bundles expected. */
    allowedSizes?: string[];
    /** Advisory: the largest data volume expected, in GB. @default 100 */
    maxVolumeGb?: number;
}

type Report = ReportViolation;
type Props = Record<string, unknown>;

const WEB_PORTS = new Set([80, 443]);
/** Never published, from anywhere or not (H8: Redis lives on an internal network). */
const NEVER_PUBLISHED = new Set([6379]);

function cfg(args: { getConfig<T extends object>(): T }): OneboxPolicyConfig {
    return args.getConfig<OneboxPolicyConfig>() ?? {};
}

/**
 * Reads a property that may not be known yet (a preview of resources still to
 * be created): undefined then, so one unknown value does not stop a stack
 * policy from judging everything else.
 */
export function known<T>(read: () => T): T | undefined {
    try {
        return read();
    } catch (e) {
        if (e instanceof UnknownValueError) {
            return undefined;
        }
        throw e;
    }
}

const asArray = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const strings = (v: unknown): string[] => asArray(v).filter((x): x is string => typeof x === "string");

/** Ports of a rule: "22", "8000-8100", "all" (DigitalOcean) as a closed range. */
function portRange(range: unknown): [number, number] {
    const s = typeof range === "string" || typeof range === "number" ? String(range).trim() : "";
    if (s === "" || s === "all" || s === "0") {
        return [1, 65535];
    }
    const [lo, hi] = s.split("-").map((x) => Number(x));
    return [lo, Number.isFinite(hi) ? hi : lo];
}

/** What a rule's sources admit, judged as a set (any spelling of "the whole internet" counts). */
function anywhere(sources: string[]): ("IPv4" | "IPv6")[] {
    const parsed = sources.map((s) => parseCidr(s)).filter((c): c is Cidr => typeof c !== "string");
    return anywhereIn(parsed);
}

/** One inbound opening: ports and sources, from either provider's shape. */
export interface Opening {
    readonly ports: [number, number];
    readonly sources: string[];
    readonly label: string;
}

/** The inbound openings of a DigitalOcean firewall or a Lightsail InstancePublicPorts. */
export function openings(type: string, props: Props): Opening[] {
    if (type === TYPES.doFirewall) {
        return asArray(props.inboundRules).map((r) => {
            const rule = r as Props;
            return { ports: portRange(rule.portRange), sources: strings(rule.sourceAddresses), label: `inbound ${String(rule.protocol)} ${String(rule.portRange)}` };
        });
    }
    if (type === TYPES.lsPorts) {
        return asArray(props.portInfos).map((p) => {
            const info = p as Props;
            // Lightsail reads a missing list as the whole internet (F3).
            const v4 = info.cidrs === undefined ? ["0.0.0.0/0"] : strings(info.cidrs);
            const v6 = info.ipv6Cidrs === undefined ? ["::/0"] : strings(info.ipv6Cidrs);
            return { ports: [Number(info.fromPort), Number(info.toPort)], sources: [...v4, ...v6], label: `port ${String(info.protocol)} ${String(info.fromPort)}-${String(info.toPort)}` };
        });
    }
    return [];
}

const isFirewall = (type: string) => type === TYPES.doFirewall || type === TYPES.lsPorts;
const covers = ([lo, hi]: [number, number], port: number) => port >= lo && port <= hi;

/** F1: nothing but SSH, 80/443 and a published database port; never Redis or an app port. */
export const firewallPorts: ResourceValidationPolicy = {
    name: "onebox-firewall-ports",
    description: "F1/H8: inbound rules open only SSH, 80/443 and the published PostgreSQL port; never 6379 or an application port.",
    enforcementLevel: "mandatory",
    validateResource: (args: ResourceValidationArgs, report: Report) => {
        if (!isFirewall(args.type)) {
            return;
        }
        const c = cfg(args);
        const allowed = new Set([...WEB_PORTS, ...(c.sshPorts ?? [22]), ...(c.databasePorts ?? [5432])]);
        for (const o of openings(args.type, args.props)) {
            const [lo, hi] = o.ports;
            const never = [...NEVER_PUBLISHED].filter((p) => covers(o.ports, p));
            if (never.length > 0) {
                report(`${o.label} opens ${never.join(", ")} (Redis is never published)`);
            } else if (lo !== hi || !allowed.has(lo)) {
                report(`${o.label} opens ${lo === hi ? `port ${lo}` : `ports ${lo}-${hi}`}; only ${[...allowed].sort((a, b) => a - b).join(", ")} may be open`);
            }
        }
    },
};

/** F1: SSH only from listed admin networks unless the stack opted in. */
export const sshExposure: ResourceValidationPolicy = {
    name: "onebox-ssh-exposure",
    description: "F1: SSH is open only to listed admin networks, not the internet (unless allowSshFromAnywhere is set in the policy config).",
    enforcementLevel: "mandatory",
    validateResource: (args: ResourceValidationArgs, report: Report) => {
        if (!isFirewall(args.type)) {
            return;
        }
        const c = cfg(args);
        if (c.allowSshFromAnywhere) {
            return;
        }
        for (const o of openings(args.type, args.props)) {
            const ssh = (c.sshPorts ?? [22]).filter((p) => covers(o.ports, p));
            const world = anywhere(o.sources);
            if (ssh.length > 0 && world.length > 0) {
                report(`${o.label}: SSH open to all of ${world.join(" and ")}; list admin CIDRs (host.sshAllowedCidrs) or opt in with allowSshFromAnywhere`);
            }
        }
    },
};

/** F1/Chronos: PostgreSQL reachable only from listed networks, never the world (no flag). */
export const databaseNotWorld: ResourceValidationPolicy = {
    name: "onebox-database-not-world",
    description: "F1: a published PostgreSQL port admits listed networks only, never the whole internet.",
    enforcementLevel: "mandatory",
    validateResource: (args: ResourceValidationArgs, report: Report) => {
        if (!isFirewall(args.type)) {
            return;
        }
        for (const o of openings(args.type, args.props)) {
            const db = (cfg(args).databasePorts ?? [5432]).filter((p) => covers(o.ports, p));
            const world = anywhere(o.sources);
            if (db.length > 0 && world.length > 0) {
                report(`${o.label}: PostgreSQL open to all of ${world.join(" and ")}; it admits listed networks only (database.allowedCidrs)`);
            }
        }
    },
};

/** Resources that point at `target` through the named property. */
function pointingAt(resources: PolicyResource[], type: string[], prop: string, target: PolicyResource): PolicyResource[] {
    const names = [known(() => target.props.bucket as unknown), known(() => target.props.id as unknown)].filter((v) => typeof v === "string");
    return resources.filter((r) => {
        if (!type.includes(r.type)) return false;
        const value = known(() => r.props[prop] as unknown);
        return (r.propertyDependencies[prop] ?? []).some((d) => d.urn === target.urn) || (typeof value === "string" && names.includes(value));
    });
}

const isBucket = (r: PolicyResource) => r.type === TYPES.bucket || r.type === TYPES.bucketV2;
const PAB_FLAGS = ["blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"] as const;

/** S1: every bucket has a public access block with all four flags, and no public ACL. */
export const bucketPublicAccess: StackValidationPolicy = {
    name: "onebox-bucket-public-access",
    description: "S1: every S3 bucket has a public access block with all four flags true and no public ACL.",
    enforcementLevel: "mandatory",
    validateStack: (args: StackValidationArgs, report: Report) => {
        for (const b of args.resources.filter(isBucket)) {
            const acl = known(() => b.props.acl as unknown);
            if (typeof acl === "string" && /public/.test(acl)) {
                report(`bucket ${b.name}: acl ${acl} makes it public`, b.urn);
            }
            const blocks = pointingAt(args.resources, [TYPES.publicAccessBlock], "bucket", b);
            if (blocks.length === 0) {
                report(`bucket ${b.name} has no BucketPublicAccessBlock`, b.urn);
            }
            for (const blk of blocks) {
                const off = PAB_FLAGS.filter((f) => known(() => blk.props[f] as unknown) !== true);
                if (off.length > 0) {
                    report(`bucket ${b.name}: public access block ${blk.name} leaves ${off.join(", ")} off`, blk.urn);
                }
            }
        }
    },
};

/** S2: every bucket has default server-side encryption. */
export const bucketEncryption: StackValidationPolicy = {
    name: "onebox-bucket-encryption",
    description: "S2: every S3 bucket has a default server-side encryption configuration (AES256 or aws:kms).",
    enforcementLevel: "mandatory",
    validateStack: (args: StackValidationArgs, report: Report) => {
        for (const b of args.resources.filter(isBucket)) {
            const configs = pointingAt(args.resources, [TYPES.encryption, TYPES.encryptionV2], "bucket", b);
            const algorithms = configs.flatMap((c) => asArray(known(() => c.props.rules as unknown)).map((r) => known(() => ((r as Props).applyServerSideEncryptionByDefault as Props | undefined)?.sseAlgorithm)));
            if (!algorithms.some((a) => a === "AES256" || a === "aws:kms" || a === "aws:kms:dsse")) {
                report(`bucket ${b.name} has no default server-side encryption (BucketServerSideEncryptionConfiguration with sseAlgorithm AES256 or aws:kms)`, b.urn);
            }
        }
    },
};

interface Statement {
    Effect?: string;
    Action?: string | string[];
    NotAction?: string | string[];
    Resource?: string | string[];
    NotResource?: string | string[];
}

/** Problems of one IAM policy document (S6): wildcards, Not* allows, deletes. */
export function iamProblems(document: unknown): string[] {
    let doc = document;
    if (typeof doc === "string") {
        try {
            doc = JSON.parse(doc) as unknown;
        } catch {
            return ["the policy is not valid JSON"];
        }
    }
    const statements = asArray((doc as { Statement?: unknown })?.Statement ?? []).concat(
        (doc as { Statement?: unknown })?.Statement && !Array.isArray((doc as { Statement?: unknown }).Statement) ? [(doc as { Statement: unknown }).Statement] : [],
    ) as Statement[];
    const problems: string[] = [];
    for (const [i, s] of statements.entries()) {
        if (s.Effect !== "Allow") {
            continue;
        }
        const list = (v: string | string[] | undefined) => (v === undefined ? [] : [v].flat());
        if (s.NotAction !== undefined || s.NotResource !== undefined) {
            problems.push(`statement ${i}: Allow with NotAction/NotResource grants everything not listed`);
        }
        for (const a of list(s.Action)) {
            if (a === "*" || /:\*$/.test(a)) {
                problems.push(`statement ${i}: action ${a} is a wildcard`);
            } else if (/^s3:Delete/i.test(a) || /^s3:PutLifecycle|^s3:PutBucketPolicy/i.test(a)) {
                problems.push(`statement ${i}: action ${a} lets the credentials destroy backups`);
            }
        }
        for (const r of list(s.Resource)) {
            if (r === "*" || r === "arn:aws:s3:::*") {
                problems.push(`statement ${i}: resource ${r} is every resource`);
            }
        }
    }
    return problems;
}

/** S6: least-privilege IAM: no wildcard action or resource, no delete, no broad managed policy. */
export const iamScope: ResourceValidationPolicy = {
    name: "onebox-iam-scope",
    description: "S6: IAM policies allow named actions on named resources only: no '*' action or resource, no NotAction, no s3:Delete*, no broad managed policy.",
    enforcementLevel: "mandatory",
    validateResource: (args: ResourceValidationArgs, report: Report) => {
        if (IAM_POLICY_TYPES.includes(args.type)) {
            for (const p of iamProblems(args.props.policy)) {
                report(p);
            }
        }
        if (IAM_ATTACHMENT_TYPES.includes(args.type)) {
            const arn = String(args.props.policyArn ?? "");
            if (/^arn:aws:iam::aws:policy\/(AdministratorAccess|PowerUserAccess|.*FullAccess)$/.test(arn)) {
                report(`attaches the AWS managed policy ${arn}; attach a policy scoped to the backup prefix`);
            }
        }
    },
};

/** R1: every remote command pins the server's host key. */
export const hostKeyPinned: ResourceValidationPolicy = {
    name: "onebox-host-key-pinned",
    description: "R1: every SSH connection of a remote command pins the host key (no trust on first use).",
    enforcementLevel: "mandatory",
    validateResource: (args: ResourceValidationArgs, report: Report) => {
        if (args.type === TYPES.remoteCommand || args.type === TYPES.copyToRemote) {
            const key = (args.props.connection as Props | undefined)?.hostKey;
            if (typeof key !== "string" || !/^(ssh-ed25519|ecdsa-sha2-nistp\d+|ssh-rsa) [A-Za-z0-9+/=]+/.test(key.trim())) {
                report("connection.hostKey is not set to the server's public host key; an SSH connection must pin it (R1)");
            }
        }
        if (args.type === TYPES.localCommand) {
            const env = (args.props.environment ?? {}) as Props;
            const script = String(args.props.create ?? "");
            if ("ONEBOX_SSH_HOST" in env && typeof env.ONEBOX_SSH_HOST_KEY !== "string") {
                report("a local command that opens SSH (ONEBOX_SSH_HOST) has no ONEBOX_SSH_HOST_KEY to pin");
            }
            if (/StrictHostKeyChecking[= ]+(no|accept-new)|UserKnownHostsFile[= ]+\/dev\/null/.test(script)) {
                report("the command turns SSH host key checking off");
            }
        }
    },
};

/** Text shaped like a secret whatever its value: private keys, age identities, passwords in a URL or variable. */
const SECRET_PATTERN = /-----BEGIN [A-Z ]*PRIVATE KEY-----|AGE-SECRET-KEY-1|PGPASSWORD=|\bpassword=[^\s&]{8,}/i;

/**
 * A command's text with its base64 blocks decoded beside it: the program ships
 * files to the host as base64 here-documents, and a secret spelt in base64 is
 * no less a secret.
 */
export function readable(text: string): string {
    // Multi-line blocks (here-documents) and single tokens (`echo <b64> | base64 -d`).
    const blocks = [...(text.match(/(?:^[A-Za-z0-9+/]{4,}={0,2}$\n?)+/gm) ?? []), ...(text.match(/[A-Za-z0-9+/]{16,}={0,2}/g) ?? [])];
    const decoded = blocks.filter((b) => b.replace(/\s/g, "").length >= 12).map((b) => Buffer.from(b.replace(/\s/g, ""), "base64").toString("utf8"));
    return [text, ...decoded].join("\n");
}

/** Whether a text carries a secret: a known secret value, or something shaped like one. */
export function carriesSecret(text: string, secrets: readonly string[]): boolean {
    const all = readable(text);
    return SECRET_PATTERN.test(all) || secrets.some((v) => all.includes(v));
}

const COMMAND_STRINGS = ["create", "update", "delete"] as const;
const isCommand = (type: string) => type === TYPES.remoteCommand || type === TYPES.localCommand;

/** Values that are secret in this stack: outputs of secret-producing resources, keys of connections. */
export function secretValues(resources: PolicyResource[]): string[] {
    const found: unknown[] = [];
    const read = (r: PolicyResource, ...keys: string[]) => keys.map((k) => known(() => r.props[k] as unknown));
    for (const r of resources) {
        if (r.type === TYPES.randomPassword) found.push(...read(r, "result"));
        if (r.type === TYPES.privateKey) found.push(...read(r, "privateKeyPem", "privateKeyOpenssh", "privateKeyPemPkcs8"));
        if (r.type === TYPES.accessKey) found.push(...read(r, "secret"));
        if (isCommand(r.type) || r.type === TYPES.copyToRemote) {
            found.push(known(() => (r.props.connection as Props | undefined)?.privateKey), known(() => (r.props.connection as Props | undefined)?.password));
        }
    }
    return [...new Set(found.filter((v): v is string => typeof v === "string" && v.length >= 8).map((v) => v.trim()))];
}

/** R3: no secret in a command string (the process list and the state show it). */
export const noSecretInCommand: StackValidationPolicy = {
    name: "onebox-no-secret-in-command",
    description: "R3: no secret value (generated password, private key, access key) and nothing shaped like one appears in a command's create/update/delete string; secrets travel on stdin.",
    enforcementLevel: "mandatory",
    validateStack: (args: StackValidationArgs, report: Report) => {
        const secrets = secretValues(args.resources);
        for (const r of args.resources.filter((x) => isCommand(x.type))) {
            for (const field of COMMAND_STRINGS) {
                const s = known(() => r.props[field] as unknown);
                if (typeof s !== "string") {
                    continue;
                }
                if (carriesSecret(s, secrets)) {
                    report(`command ${r.name}: its ${field} string carries a secret; pass it on stdin (R3)`, r.urn);
                }
            }
        }
    },
};

/** R4: a command whose stdin carries a secret logs nothing and keeps its outputs secret. */
export const secretStepsHidden: StackValidationPolicy = {
    name: "onebox-secret-steps-hidden",
    description: "R4: a remote command whose stdin carries a secret has logging 'none' and stdout/stderr as additional secret outputs.",
    enforcementLevel: "mandatory",
    validateStack: (args: StackValidationArgs, report: Report) => {
        const secrets = secretValues(args.resources);
        for (const r of args.resources.filter((x) => x.type === TYPES.remoteCommand)) {
            const stdin = known(() => r.props.stdin as unknown);
            if (typeof stdin !== "string" || !carriesSecret(stdin, secrets)) {
                continue;
            }
            const logging = known(() => r.props.logging as unknown);
            if (logging !== "none") {
                report(`command ${r.name} sends a secret on stdin but logs (${typeof logging === "string" ? logging : "stdoutAndStderr"}); set logging: "none" (R4)`, r.urn);
            }
            const hidden = new Set(r.opts.additionalSecretOutputs);
            const missing = ["stdout", "stderr"].filter((o) => !hidden.has(o));
            if (missing.length > 0) {
                report(`command ${r.name} sends a secret on stdin but ${missing.join(" and ")} are not secret outputs (additionalSecretOutputs)`, r.urn);
            }
        }
    },
};

/** Key algorithms accepted for TLS and SSH keys (the program uses ED25519 and ECDSA P-256). */
const STRONG_CURVES = new Set(["P256", "P384", "P521"]);
const MIN_RSA_BITS = 2048;

/** Keys the stack generates are of a strength nobody needs to rotate early: ED25519, ECDSA P-256+, RSA 2048+. */
export const keyStrength: ResourceValidationPolicy = {
    name: "onebox-key-strength",
    description: "Generated TLS and SSH private keys are ED25519, ECDSA on P-256 or larger, or RSA of at least 2048 bits.",
    enforcementLevel: "mandatory",
    validateResource: (args: ResourceValidationArgs, report: Report) => {
        if (args.type !== TYPES.privateKey) {
            return;
        }
        const algorithm: unknown = args.props.algorithm;
        if (algorithm === "ED25519") {
            return;
        }
        if (algorithm === "ECDSA") {
            const curve: unknown = args.props.ecdsaCurve ?? "P224";
            if (!STRONG_CURVES.has(String(curve))) {
                report(`${args.name}: ECDSA on ${String(curve)} is too weak; use P256 or ED25519`);
            }
            return;
        }
        if (algorithm === "RSA") {
            const bits = Number(args.props.rsaBits ?? 2048);
            if (bits < MIN_RSA_BITS) {
                report(`${args.name}: RSA of ${bits} bits is too weak; use at least ${MIN_RSA_BITS} bits, or ED25519`);
            }
            return;
        }
        report(`${args.name}: unknown key algorithm ${String(algorithm)}`);
    },
};

/** The stack a resource belongs to, from its URN (`urn:pulumi:<stack>::<project>::...`). */
export function stackOf(urn: string): string {
    return /^urn:pulumi:([^:]+)::/.exec(urn)?.[1] ?? "";
}

const SERVER_GUARDS: Record<string, string[]> = {
    [TYPES.doDroplet]: ["userData", "image"],
    [TYPES.lsInstance]: ["userData", "blueprintId"],
};
const DATA_TYPES: string[] = [TYPES.doVolume, TYPES.lsDisk, TYPES.bucket, TYPES.bucketV2];

/** K2/S5, production only: the server is not silently replaced, the data not deleted. */
export const productionGuards: ResourceValidationPolicy = {
    name: "onebox-production-guards",
    description:
        "K2/S5 (production stacks): the server ignores changes to user data and image (no silent replacement) unless allowServerReplacement is set; data volumes and the backup bucket are protected unless allowDataDeletion is set.",
    enforcementLevel: "mandatory",
    validateResource: (args: ResourceValidationArgs, report: Report) => {
        const c = cfg(args);
        if (!(c.productionStacks ?? ["prod", "production"]).includes(stackOf(args.urn))) {
            return;
        }
        const guards = SERVER_GUARDS[args.type];
        if (guards && !c.allowServerReplacement) {
            const ignored = new Set(args.opts.ignoreChanges);
            const missing = guards.filter((g) => !ignored.has(g));
            if (missing.length > 0) {
                report(`a change to ${missing.join(" or ")} would replace the production server; keep them in ignoreChanges, or set allowServerReplacement for this run`);
            }
        }
        if (DATA_TYPES.includes(args.type) && !c.allowDataDeletion && !args.opts.protect) {
            report(`${args.name} holds production data and is not protected; set protect (and retainOnDelete), or set allowDataDeletion for this run`);
        }
    },
};

const TAGGED_TYPES: string[] = [TYPES.doDroplet, TYPES.doVolume, TYPES.lsInstance, TYPES.lsDisk, TYPES.bucket, TYPES.bucketV2];

/** Advisory: resources that cost money carry tags naming their app and environment. */
export const tags: ResourceValidationPolicy = {
    name: "onebox-tags",
    description: "Advisory: servers, volumes and buckets carry tags (who owns the bill, which stack made it).",
    enforcementLevel: "advisory",
    validateResource: (args: ResourceValidationArgs, report: Report) => {
        if (!TAGGED_TYPES.includes(args.type)) {
            return;
        }
        const t: unknown = args.props.tags;
        const count = Array.isArray(t) ? t.length : t && typeof t === "object" ? Object.keys(t).length : 0;
        if (count === 0) {
            report(`${args.name} has no tags`);
        }
    },
};

/** Advisory: sizes a one-server stack is expected to use; a typo or a big size costs money. */
export const sizes: ResourceValidationPolicy = {
    name: "onebox-sizes",
    description: "Advisory: the server size and the data volume stay within what the team expects (allowedSizes, maxVolumeGb).",
    enforcementLevel: "advisory",
    validateResource: (args: ResourceValidationArgs, report: Report) => {
        const c = cfg(args);
        const allowed = c.allowedSizes ?? ["s-1vcpu-1gb", "s-1vcpu-2gb", "s-2vcpu-2gb", "s-2vcpu-4gb", "nano_3_0", "micro_3_0", "small_3_0", "medium_3_0"];
        const size: unknown = args.type === TYPES.doDroplet ? args.props.size : args.type === TYPES.lsInstance ? args.props.bundleId : undefined;
        if (typeof size === "string" && !allowed.includes(size)) {
            report(`server size ${size} is not among the expected ${allowed.join(", ")}`);
        }
        const gb: unknown = args.type === TYPES.doVolume ? args.props.size : args.type === TYPES.lsDisk ? args.props.sizeInGb : undefined;
        if (typeof gb === "number" && gb > (c.maxVolumeGb ?? 100)) {
            report(`data volume of ${gb} GB is above the expected ${c.maxVolumeGb ?? 100} GB`);
        }
    },
};

/** Every policy of the pack, mandatory ones first. */
export const POLICIES: (ResourceValidationPolicy | StackValidationPolicy)[] = [
    firewallPorts,
    sshExposure,
    databaseNotWorld,
    bucketPublicAccess,
    bucketEncryption,
    iamScope,
    hostKeyPinned,
    noSecretInCommand,
    secretStepsHidden,
    keyStrength,
    productionGuards,
    tags,
    sizes,
];
