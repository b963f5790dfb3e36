/**
 * The policy pack, one table per policy: resources shaped as the program makes
 * them pass; each weakening of a SECURITY.md property (F1, S1, S2, S5, S6, K2,
 * R1, R3, R4) is reported, with its reason. Advisory policies likewise.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
    POLICIES,
    TYPES,
    bucketEncryption,
    bucketPublicAccess,
    databaseNotWorld,
    firewallPorts,
    hostKeyPinned,
    iamProblems,
    iamScope,
    noSecretInCommand,
    productionGuards,
    keyStrength,
    secretStepsHidden,
    sizes,
    sshExposure,
    stackOf,
    tags,
    type OneboxPolicyConfig,
} from "../../../policy/policies";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import * as policySdk from "@pulumi/policy";
import { violations, type Fake } from "./support";

/** The analyzer's wrapper that throws on reading a value unknown during preview (exported, untyped). */
const unknownCheckingProxy = (policySdk as unknown as { unknownCheckingProxy: (o: object) => Record<string, unknown> }).unknownCheckingProxy;

const HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyOfTheServer0000000000000000000000";
const PASSWORD = "Zq8-generated-Rk2vW9pLx4Tn7HsYb3";
const PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n";

const doFirewall = (rules: { portRange: string; sourceAddresses: string[] }[]): Fake => ({
    type: TYPES.doFirewall,
    props: { inboundRules: rules.map((r) => ({ protocol: "tcp", ...r })) },
});
const WEB = [
    { portRange: "80", sourceAddresses: ["0.0.0.0/0", "::/0"] },
    { portRange: "443", sourceAddresses: ["0.0.0.0/0", "::/0"] },
];
const SSH_ADMIN = { portRange: "22", sourceAddresses: ["203.0.113.7/32"] };
const lsPorts = (infos: Record<string, unknown>[]): Fake => ({ type: TYPES.lsPorts, props: { instanceName: "i", portInfos: infos } });

const remote = (props: Record<string, unknown>, opts: Fake["opts"] = {}, name = "deploy"): Fake => ({
    type: TYPES.remoteCommand,
    name,
    props: { connection: { host: "203.0.113.20", port: 22, user: "deploy", privateKey: PRIVATE_KEY, hostKey: HOST_KEY }, create: "sudo -n bash -s", logging: "stdoutAndStderr", ...props },
    opts,
});
const password: Fake = { type: TYPES.randomPassword, name: "db-password", props: { length: 48, result: PASSWORD } };

type Case = [what: string, fakes: Fake[], expected: RegExp[], config?: OneboxPolicyConfig];
type Table = [policy: (typeof POLICIES)[number], cases: Case[]];

const bucket = (extra: Record<string, unknown> = {}): Fake => ({ type: TYPES.bucket, name: "backups", props: { bucket: "example-backups", ...extra } });
const pab = (flags: Partial<Record<string, boolean>> = {}): Fake => ({
    type: TYPES.publicAccessBlock,
    name: "backups-public-access",
    props: { bucket: "example-backups", blockPublicAcls: true, blockPublicPolicy: true, ignorePublicAcls: true, restrictPublicBuckets: true, ...flags },
    deps: { bucket: ["backups"] },
});
const sse = (algorithm: string): Fake => ({
    type: TYPES.encryption,
    name: "backups-encryption",
    props: { bucket: "other-name-resolved-later", rules: [{ applyServerSideEncryptionByDefault: { sseAlgorithm: algorithm } }] },
    deps: { bucket: ["backups"] },
});
const groupPolicy = (statement: Record<string, unknown>): Fake => ({
    type: "aws:iam/groupPolicy:GroupPolicy",
    props: { group: "g", policy: JSON.stringify({ Version: "2012-10-17", Statement: [statement] }) },
});
const BACKUP_STATEMENT = { Effect: "Allow", Action: ["s3:PutObject", "s3:GetObject"], Resource: "arn:aws:s3:::example-backups/finances/prod/*" };

const TABLES: Table[] = [
    [
        firewallPorts,
        [
            ["F1: SSH from the admin, 80/443 from anywhere", [doFirewall([SSH_ADMIN, ...WEB])], []],
            ["F1: PostgreSQL to a listed network", [doFirewall([SSH_ADMIN, ...WEB, { portRange: "5432", sourceAddresses: ["76.76.21.0/24"] }])], []],
            ["F1: an application port", [doFirewall([SSH_ADMIN, ...WEB, { portRange: "8000", sourceAddresses: ["203.0.113.7/32"] }])], [/inbound tcp 8000 opens port 8000; only 22, 80, 443, 5432 may be open/]],
            ["H8: Redis, even to one address", [doFirewall([{ portRange: "6379", sourceAddresses: ["203.0.113.7/32"] }])], [/opens 6379 \(Redis is never published\)/]],
            ["F1: a range of ports", [doFirewall([{ portRange: "1-1024", sourceAddresses: ["203.0.113.7/32"] }])], [/opens ports 1-1024/]],
            ["F1: all ports", [doFirewall([{ portRange: "all", sourceAddresses: ["203.0.113.7/32"] }])], [/Redis is never published/]],
            ["F3: a Lightsail port outside the list", [lsPorts([{ protocol: "tcp", fromPort: 3000, toPort: 3000, cidrs: ["203.0.113.7/32"], ipv6Cidrs: [] }])], [/port tcp 3000-3000 opens port 3000/]],
            ["another SSH port from the config", [doFirewall([{ portRange: "2222", sourceAddresses: ["203.0.113.7/32"] }])], [], { sshPorts: [2222] }],
        ],
    ],
    [
        sshExposure,
        [
            ["F1: SSH from the admin CIDR", [doFirewall([SSH_ADMIN, ...WEB])], []],
            ["F1: SSH from 0.0.0.0/0", [doFirewall([{ portRange: "22", sourceAddresses: ["0.0.0.0/0"] }])], [/SSH open to all of IPv4/]],
            ["F1: SSH from the world spelt as two halves", [doFirewall([{ portRange: "22", sourceAddresses: ["0.0.0.0/1", "128.0.0.0/1"] }])], [/SSH open to all of IPv4/]],
            ["F1: SSH from 2000::/3", [doFirewall([{ portRange: "22", sourceAddresses: ["203.0.113.7/32", "2000::/3"] }])], [/SSH open to all of IPv6/]],
            ["F3: a Lightsail SSH port without ipv6Cidrs is open to ::/0", [lsPorts([{ protocol: "tcp", fromPort: 22, toPort: 22, cidrs: ["203.0.113.7/32"] }])], [/SSH open to all of IPv6/]],
            ["F1: SSH from anywhere with the opt-in", [doFirewall([{ portRange: "22", sourceAddresses: ["0.0.0.0/0", "::/0"] }])], [], { allowSshFromAnywhere: true }],
        ],
    ],
    [
        databaseNotWorld,
        [
            ["F1: PostgreSQL to the frontend's range", [lsPorts([{ protocol: "tcp", fromPort: 5432, toPort: 5432, cidrs: ["76.76.21.0/24"], ipv6Cidrs: ["2001:db8::/48"] }])], []],
            ["F1: PostgreSQL to the world", [doFirewall([{ portRange: "5432", sourceAddresses: ["0.0.0.0/0"] }])], [/PostgreSQL open to all of IPv4/]],
            // No flag lets the database be world-reachable, not even the SSH opt-in.
            ["F1: PostgreSQL to the world with allowSshFromAnywhere", [doFirewall([{ portRange: "5432", sourceAddresses: ["::/0"] }])], [/PostgreSQL open to all of IPv6/], { allowSshFromAnywhere: true }],
        ],
    ],
    [
        bucketPublicAccess,
        [
            ["S1: all four flags", [bucket(), pab()], []],
            ["S1: no public access block", [bucket()], [/bucket backups has no BucketPublicAccessBlock/]],
            ["S1: a flag off", [bucket(), pab({ restrictPublicBuckets: false })], [/leaves restrictPublicBuckets off/]],
            ["S1: a block for another bucket does not count", [bucket(), { ...pab(), deps: {}, props: { ...pab().props, bucket: "elsewhere" } }], [/has no BucketPublicAccessBlock/]],
            ["S1: a public-read ACL", [bucket({ acl: "public-read" }), pab()], [/acl public-read makes it public/]],
        ],
    ],
    [
        bucketEncryption,
        [
            ["S2: AES256 by default", [bucket(), sse("AES256")], []],
            ["S2: KMS by default", [bucket(), sse("aws:kms")], []],
            ["S2: no encryption configuration", [bucket()], [/bucket backups has no default server-side encryption/]],
            ["S2: an empty algorithm", [bucket(), sse("")], [/no default server-side encryption/]],
        ],
    ],
    [
        iamScope,
        [
            ["S6: put/get on the backup prefix", [groupPolicy(BACKUP_STATEMENT)], []],
            ["S6: a wildcard action", [groupPolicy({ ...BACKUP_STATEMENT, Action: "s3:*" })], [/action s3:\* is a wildcard/]],
            ["S6: every resource", [groupPolicy({ ...BACKUP_STATEMENT, Resource: "*" })], [/resource \* is every resource/]],
            ["S6: a delete", [groupPolicy({ ...BACKUP_STATEMENT, Action: ["s3:PutObject", "s3:DeleteObject"] })], [/s3:DeleteObject lets the credentials destroy backups/]],
            ["S6: NotAction", [groupPolicy({ Effect: "Allow", NotAction: "iam:*", Resource: "arn:aws:s3:::b/*" })], [/NotAction\/NotResource/]],
            ["S6: a Deny with a wildcard is fine", [groupPolicy({ Effect: "Deny", Action: "*", Resource: "*" })], []],
            ["S6: a broad managed policy", [{ type: "aws:iam/userPolicyAttachment:UserPolicyAttachment", props: { user: "u", policyArn: "arn:aws:iam::aws:policy/AmazonS3FullAccess" } }], [/AmazonS3FullAccess/]],
        ],
    ],
    [
        hostKeyPinned,
        [
            ["R1: the host key pinned", [remote({})], []],
            ["R1: no host key", [remote({ connection: { host: "h", user: "deploy", privateKey: PRIVATE_KEY } })], [/connection.hostKey is not set/]],
            ["R1: a host key that is not a public key", [remote({ connection: { host: "h", user: "deploy", hostKey: "yes" } })], [/connection.hostKey is not set/]],
            ["R1: an upload with its host key", [{ type: TYPES.localCommand, props: { create: "bash upload.sh", environment: { ONEBOX_SSH_HOST: "h", ONEBOX_SSH_HOST_KEY: HOST_KEY } } }], []],
            ["R1: an upload without one", [{ type: TYPES.localCommand, props: { create: "bash upload.sh", environment: { ONEBOX_SSH_HOST: "h" } } }], [/no ONEBOX_SSH_HOST_KEY/]],
            ["R1: a local command that turns checking off", [{ type: TYPES.localCommand, props: { create: "ssh -o StrictHostKeyChecking=no h true" } }], [/host key checking off/]],
        ],
    ],
    [
        noSecretInCommand,
        [
            ["R3: secrets on stdin, none in the command", [password, remote({ stdin: `printf %s '${PASSWORD}' > f` }, { additionalSecretOutputs: ["stdout", "stderr"] })], []],
            ["R3: a generated password in the command", [password, remote({ create: `psql -c "ALTER ROLE app PASSWORD '${PASSWORD}'"` })], [/command deploy: its create string carries a secret/]],
            ["R3: a private key in the delete command", [remote({ delete: `echo '${PRIVATE_KEY}' > k` })], [/its delete string carries a secret/]],
            ["R3: a generated password in base64", [password, remote({ create: `echo ${Buffer.from(`PW=${PASSWORD}\n`).toString("base64")} | base64 -d > f` })], [/its create string carries a secret/]],
            ["R3: PGPASSWORD in a local command", [{ type: TYPES.localCommand, name: "dump", props: { create: "PGPASSWORD=hunter2hunter2 pg_dump" } }], [/command dump: its create string/]],
        ],
    ],
    [
        secretStepsHidden,
        [
            ["R4: a secret step logs nothing and hides its outputs", [password, remote({ stdin: `x='${PASSWORD}'`, logging: "none" }, { additionalSecretOutputs: ["stdout", "stderr"] })], []],
            ["R4: a step without secrets may log", [password, remote({ stdin: "docker compose up -d" })], []],
            ["R4: a secret step that logs", [password, remote({ stdin: `x='${PASSWORD}'` }, { additionalSecretOutputs: ["stdout", "stderr"] })], [/sends a secret on stdin but logs \(stdoutAndStderr\)/]],
            ["R4: a secret step whose stderr is not secret", [password, remote({ stdin: `x='${PASSWORD}'`, logging: "none" }, { additionalSecretOutputs: ["stdout"] })], [/stderr are not secret outputs/]],
            [
                "R4: a secret file shipped as a base64 here-document counts",
                [password, remote({ stdin: `put_file /etc/x 0600 root:root <<'_EOF_'\n${Buffer.from(`DATABASE_PASSWORD=${PASSWORD}\n`).toString("base64")}\n_EOF_\n` })],
                [/sends a secret on stdin but logs/, /stdout and stderr are not secret outputs/],
            ],
            ["R4: a private key on stdin counts", [remote({ stdin: PRIVATE_KEY, logging: "none" })], [/stdout and stderr are not secret outputs/]],
        ],
    ],
    [
        keyStrength,
        [
            ["an ED25519 SSH key", [{ type: TYPES.privateKey, props: { algorithm: "ED25519" } }], []],
            ["an ECDSA P-256 TLS key", [{ type: TYPES.privateKey, props: { algorithm: "ECDSA", ecdsaCurve: "P256" } }], []],
            ["an RSA 4096 key", [{ type: TYPES.privateKey, props: { algorithm: "RSA", rsaBits: 4096 } }], []],
            ["an RSA 1024 key", [{ type: TYPES.privateKey, name: "old", props: { algorithm: "RSA", rsaBits: 1024 } }], [/old: RSA of 1024 bits is too weak/]],
            ["ECDSA on the provider's default curve (P224)", [{ type: TYPES.privateKey, name: "k", props: { algorithm: "ECDSA" } }], [/k: ECDSA on P224 is too weak/]],
        ],
    ],
    [
        productionGuards,
        [
            [
                "K2/S5: guarded server and protected volume and bucket in prod",
                [
                    { type: TYPES.doDroplet, props: { size: "s-1vcpu-1gb" }, opts: { ignoreChanges: ["userData", "image", "sshKeys"] } },
                    { type: TYPES.doVolume, props: { size: 10 }, opts: { protect: true } },
                    { type: TYPES.bucket, props: {}, opts: { protect: true } },
                ],
                [],
            ],
            ["K2: a droplet that a user-data change would replace", [{ type: TYPES.doDroplet, props: {}, opts: { ignoreChanges: ["image"] } }], [/a change to userData would replace the production server/]],
            ["K2: a Lightsail instance without guards", [{ type: TYPES.lsInstance, props: {} }], [/userData or blueprintId would replace/]],
            ["S5: an unprotected volume", [{ type: TYPES.doVolume, name: "data", props: {} }], [/data holds production data and is not protected/]],
            ["S5: an unprotected Lightsail disk", [{ type: TYPES.lsDisk, name: "disk", props: {} }], [/disk holds production data/]],
            ["staging is not production", [{ type: TYPES.doDroplet, props: {}, stack: "staging" }, { type: TYPES.doVolume, props: {}, stack: "staging" }], []],
            ["the explicit flags, for one run", [{ type: TYPES.doDroplet, props: {} }, { type: TYPES.doVolume, props: {} }], [], { allowServerReplacement: true, allowDataDeletion: true }],
            ["one flag does not lift the other guard", [{ type: TYPES.doDroplet, props: {} }, { type: TYPES.doVolume, name: "data", props: {} }], [/data holds production data/], { allowServerReplacement: true }],
            ["production stacks from the config", [{ type: TYPES.doVolume, name: "data", props: {}, stack: "live" }], [/data holds production data/], { productionStacks: ["live"] }],
        ],
    ],
    [
        tags,
        [
            ["a tagged droplet", [{ type: TYPES.doDroplet, props: { tags: ["onebox", "app:finances"] } }], []],
            ["a tagged bucket", [{ type: TYPES.bucket, props: { tags: { "onebox:app": "finances" } } }], []],
            ["an untagged volume", [{ type: TYPES.doVolume, name: "data", props: {} }], [/data has no tags/]],
        ],
    ],
    [
        sizes,
        [
            ["a 1 GB droplet and a 10 GB volume", [{ type: TYPES.doDroplet, props: { size: "s-1vcpu-1gb" } }, { type: TYPES.doVolume, props: { size: 10 } }], []],
            ["a large droplet", [{ type: TYPES.doDroplet, props: { size: "c-32" } }], [/server size c-32 is not among the expected/]],
            ["a large Lightsail disk", [{ type: TYPES.lsDisk, props: { sizeInGb: 500 } }], [/500 GB is above the expected 100 GB/]],
            ["sizes from the config", [{ type: TYPES.lsInstance, props: { bundleId: "large_3_0" } }], [], { allowedSizes: ["large_3_0"] }],
        ],
    ],
];

describe("policy pack: each policy passes the program's shapes and reports each weakening", () => {
    for (const [policy, cases] of TABLES) {
        describe(policy.name, () => {
            it("has a passing and a violating case", () => {
                assert.ok(cases.some(([, , e]) => e.length === 0) && cases.some(([, , e]) => e.length > 0));
            });
            for (const [what, fakes, expected, config] of cases) {
                it(`${expected.length === 0 ? "passes" : "reports"}: ${what}`, async () => {
                    const found = await violations(policy, fakes, config);
                    assert.equal(found.length, expected.length, `violations: ${JSON.stringify(found)}`);
                    expected.forEach((re, i) => assert.match(found[i], re));
                });
            }
        });
    }

    it("every policy of the pack has its table; the mandatory ones are those of SECURITY.md", () => {
        assert.deepEqual(TABLES.map(([p]) => p.name).sort(), POLICIES.map((p) => p.name).sort());
        assert.deepEqual(
            POLICIES.filter((p) => p.enforcementLevel === "mandatory").map((p) => p.name),
            [
                "onebox-firewall-ports",
                "onebox-ssh-exposure",
                "onebox-database-not-world",
                "onebox-bucket-public-access",
                "onebox-bucket-encryption",
                "onebox-iam-scope",
                "onebox-host-key-pinned",
                "onebox-no-secret-in-command",
                "onebox-secret-steps-hidden",
                "onebox-key-strength",
                "onebox-production-guards",
            ],
        );
        assert.deepEqual(POLICIES.filter((p) => p.enforcementLevel === "advisory").map((p) => p.name), ["onebox-tags", "onebox-sizes"]);
    });
});

describe("README's policy table", () => {
    it("names every policy of the pack with its enforcement level", () => {
        const readme = readFileSync(path.resolve(__dirname, "../../../README.md"), "utf8");
        for (const p of POLICIES) {
            const row = readme.split("\n").find((l) => l.startsWith(`| \`${p.name}\` |`));
            assert.ok(row, `README has no row for ${p.name}`);
            assert.ok(row.includes(`| ${p.enforcementLevel}`), `README row of ${p.name} does not say ${p.enforcementLevel ?? ""}`);
        }
    });
});

describe("policy helpers", () => {
    it("a value unknown during preview does not stop a stack policy from judging the rest", async () => {
        // The engine's marker for a value not known yet; the analyzer wraps props so reading it throws.
        const unknownPassword: Fake = { type: TYPES.randomPassword, name: "new-password", props: unknownCheckingProxy({ length: 48, result: "04da6b54-80e4-46f7-96ec-b56ff0331ba9" }) };
        assert.throws(() => unknownPassword.props.result, /can't be known during preview/);
        const found = await violations(secretStepsHidden, [unknownPassword, remote({ stdin: PRIVATE_KEY })]);
        assert.equal(found.length, 2, JSON.stringify(found));
        assert.match(found[0], /sends a secret on stdin but logs/);
    });

    it("iamProblems reads a document given as an object or JSON, with one statement or a list", () => {
        assert.deepEqual(iamProblems({ Statement: { Effect: "Allow", Action: "*", Resource: "arn:aws:s3:::b" } }), ["statement 0: action * is a wildcard"]);
        assert.deepEqual(iamProblems("not json"), ["the policy is not valid JSON"]);
        assert.deepEqual(iamProblems(JSON.stringify({ Statement: [BACKUP_STATEMENT] })), []);
    });

    it("stackOf reads the stack from a URN", () => {
        assert.equal(stackOf("urn:pulumi:prod::onebox::digitalocean:index/droplet:Droplet::host"), "prod");
        assert.equal(stackOf("garbage"), "");
    });
});
