/**
 * The backup bucket under recording mocks: S1-S6 on the registered inputs and
 * options, plus the pure lifecycle and policy functions with exact documents.
 */
import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as pulumi from "@pulumi/pulumi";
import { installMocks, unwrap, type RecordingMocks } from "../../helpers/mocks";
import { digitalOceanRaw, withValue } from "../../helpers/fixtures";
import { validateConfig } from "../../../components/config/load";
import {
    ABORT_INCOMPLETE_UPLOAD_DAYS,
    BackupBucket,
    bucketProtection,
    credentialsPolicyDocument,
    lifecyclePolicyRules,
    secureTransportPolicy,
    type BackupBucketArgs,
    type PolicyDocument,
} from "../../../components/storage/backup-bucket";
import { backupPrefix } from "../../../components/storage/backup-prefix";
import { OptionsRecorder } from "../../helpers/options-recorder";

const T = {
    bucket: "aws:s3/bucket:Bucket",
    pab: "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
    ownership: "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
    sse: "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    versioning: "aws:s3/bucketVersioning:BucketVersioning",
    lifecycle: "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
    policy: "aws:s3/bucketPolicy:BucketPolicy",
    user: "aws:iam/user:User",
    group: "aws:iam/group:Group",
    groupPolicy: "aws:iam/groupPolicy:GroupPolicy",
    membership: "aws:iam/groupMembership:GroupMembership",
    accessKey: "aws:iam/accessKey:AccessKey",
};

const ARGS: BackupBucketArgs = {
    bucket: "example-finances-prod-backups",
    region: "eu-central-1",
    prefix: "finances/prod",
    retentionDays: 14,
    weeklyRetentionWeeks: 8,
};

let mocks: RecordingMocks;

/** Builds a BackupBucket with an options recorder and waits until all its resources are registered. */
async function build(name: string, overrides: Partial<BackupBucketArgs> = {}) {
    const recorder = new OptionsRecorder();
    const bb = new BackupBucket(name, { ...ARGS, ...overrides }, { transformations: [recorder.transformation] });
    await recorder.settled(mocks);
    const input = (type: string, role: string) => mocks.one(type, `${name}-${role}`).inputs;
    return { bb, recorder, input };
}

function statementsOf(doc: PolicyDocument) {
    return doc.Statement.map((s) => ({ ...s, actions: ([] as string[]).concat(s.Action), resources: ([] as string[]).concat(s.Resource) }));
}

before(async () => {
    mocks = await installMocks();
});

void describe("BackupBucket resources", () => {
    void it("creates exactly the bucket, its five guards, the lifecycle and the IAM user, group, policy, membership and key", async () => {
        await build("inventory");
        const mine = mocks.resources.filter((r) => r.name.startsWith("inventory-")).map((r) => `${r.type} ${r.name}`).sort();
        assert.deepEqual(mine, [
            `${T.accessKey} inventory-access-key`,
            `${T.group} inventory-group`,
            `${T.groupPolicy} inventory-group-policy`,
            `${T.membership} inventory-membership`,
            `${T.user} inventory-user`,
            `${T.bucket} inventory-bucket`,
            `${T.lifecycle} inventory-lifecycle`,
            `${T.policy} inventory-policy`,
            `${T.pab} inventory-public-access-block`,
            `${T.ownership} inventory-ownership`,
            `${T.sse} inventory-encryption`,
            `${T.versioning} inventory-versioning`,
        ].sort());
    });

    void it("key rotation: the period label is part of the access key's name, so a new period creates a new key (the old one is deleted after)", async () => {
        await build("rot", { keyRotation: "90d-2026-09-04" });
        const keys = mocks.resources.filter((r) => r.type === T.accessKey && r.name.startsWith("rot-")).map((r) => r.name);
        assert.deepEqual(keys, ["rot-access-key-90d-2026-09-04"]);
        // Everything else keeps its name: only the key is replaced.
        const others = mocks.resources.filter((r) => r.name.startsWith("rot-") && r.type !== T.accessKey).map((r) => r.name.replace(/^rot-/, "")).sort();
        assert.deepEqual(others, ["bucket", "encryption", "group", "group-policy", "lifecycle", "membership", "ownership", "policy", "public-access-block", "user", "versioning"]);
    });

    void it("names the bucket from config, in its region, with forceDestroy off", async () => {
        const { input } = await build("naming");
        const bucket = input(T.bucket, "bucket");
        assert.equal(bucket.bucket, "example-finances-prod-backups");
        assert.equal(bucket.region, "eu-central-1");
        assert.equal(bucket.forceDestroy, false);
        // Every bucket-level setting targets the same bucket and region.
        for (const [type, role] of [[T.pab, "public-access-block"], [T.ownership, "ownership"], [T.sse, "encryption"], [T.versioning, "versioning"], [T.lifecycle, "lifecycle"], [T.policy, "policy"]]) {
            assert.equal(input(type, role).bucket, "naming-bucket-id", role);
            assert.equal(input(type, role).region, "eu-central-1", role);
        }
    });

    void it("S1: public access block sets all four flags to true", async () => {
        const { input } = await build("s1");
        const pab = input(T.pab, "public-access-block");
        assert.deepEqual(
            { a: pab.blockPublicAcls, b: pab.blockPublicPolicy, c: pab.ignorePublicAcls, d: pab.restrictPublicBuckets },
            { a: true, b: true, c: true, d: true },
        );
    });

    void it("S1: ACLs are disabled (BucketOwnerEnforced), so no ACL an upload sends can grant access", async () => {
        const { input } = await build("s1acl");
        assert.deepEqual(input(T.ownership, "ownership").rule, { objectOwnership: "BucketOwnerEnforced" });
    });

    void it("S2: default encryption is SSE-S3 (AES256) without a KMS key", async () => {
        const { input } = await build("s2");
        assert.deepEqual(input(T.sse, "encryption").rules, [{ applyServerSideEncryptionByDefault: { sseAlgorithm: "AES256" } }]);
    });

    void it("S2: default encryption is SSE-KMS with the given key and a bucket key", async () => {
        const key = "arn:aws:kms:eu-central-1:123456789012:key/11111111-2222-3333-4444-555555555555";
        const { input } = await build("s2kms", { kmsKeyId: key });
        assert.deepEqual(input(T.sse, "encryption").rules, [
            { applyServerSideEncryptionByDefault: { sseAlgorithm: "aws:kms", kmsMasterKeyId: key }, bucketKeyEnabled: true },
        ]);
    });

    void it("S3: versioning is enabled", async () => {
        const { input } = await build("s3v");
        assert.deepEqual(input(T.versioning, "versioning").versioningConfiguration, { status: "Enabled" });
    });

    void it("S3: lifecycle has the exact day counts from the arguments", async () => {
        const { input } = await build("s3l");
        assert.deepEqual(input(T.lifecycle, "lifecycle").rules, [
            { id: "expire-daily-dumps", status: "Enabled", filter: { prefix: "finances/prod/daily/" }, expiration: { days: 14 } },
            { id: "expire-weekly-dumps", status: "Enabled", filter: { prefix: "finances/prod/weekly/" }, expiration: { days: 56 } },
            { id: "expire-file-archives", status: "Enabled", filter: { prefix: "finances/prod/files/" }, expiration: { days: 14 } },
            {
                id: "expire-noncurrent-and-incomplete",
                status: "Enabled",
                filter: { prefix: "finances/prod/" },
                noncurrentVersionExpiration: { noncurrentDays: 7 },
                abortIncompleteMultipartUpload: { daysAfterInitiation: 2 },
            },
        ]);
    });

    void it("S4: bucket policy denies every request without TLS, on the bucket and its objects", async () => {
        const { input } = await build("s4");
        const policy = JSON.parse(input(T.policy, "policy").policy as string) as PolicyDocument;
        assert.deepEqual(policy, {
            Version: "2012-10-17",
            Statement: [
                {
                    Sid: "DenyInsecureTransport",
                    Effect: "Deny",
                    Principal: "*",
                    Action: "s3:*",
                    Resource: ["arn:aws:s3:::example-finances-prod-backups", "arn:aws:s3:::example-finances-prod-backups/*"],
                    Condition: { Bool: { "aws:SecureTransport": "false" } },
                },
            ],
        });
    });

    void it("S5: the bucket is registered with protect and retainOnDelete", async () => {
        const { recorder } = await build("s5");
        const opts = recorder.of(T.bucket, "s5-bucket");
        assert.equal(opts.protect, true);
        assert.equal(opts.retainOnDelete, true);
        assert.deepEqual(bucketProtection(), { protect: true, retainOnDelete: true });
    });

    void it("S5: the access block, ownership controls, encryption, versioning and TLS policy stay with a retained bucket; the lifecycle does not", async () => {
        const { recorder } = await build("s5g");
        for (const [type, role] of [[T.pab, "public-access-block"], [T.ownership, "ownership"], [T.sse, "encryption"], [T.versioning, "versioning"], [T.policy, "policy"]]) {
            assert.equal(recorder.of(type, `s5g-${role}`).retainOnDelete, true, role);
        }
        // After a destroy the last dumps must not keep expiring unattended.
        assert.notEqual(recorder.of(T.lifecycle, "s5g-lifecycle").retainOnDelete, true);
    });

    void it("S6: dedicated IAM user in a dedicated group, whose only policy is the prefix policy", async () => {
        const { input } = await build("s6");
        const user = input(T.user, "user");
        const group = input(T.group, "group");
        assert.equal(user.name, "example-finances-prod-backups");
        assert.equal(group.name, "example-finances-prod-backups-backup-writers");
        assert.deepEqual(input(T.membership, "membership"), { group: group.name, users: [user.name] });
        const groupPolicy = input(T.groupPolicy, "group-policy");
        assert.equal(groupPolicy.group, group.name);
        assert.deepEqual(JSON.parse(groupPolicy.policy as string), credentialsPolicyDocument("example-finances-prod-backups", "finances/prod"));
        assert.equal(input(T.accessKey, "access-key").user, user.name);
        // Permissions come from the group only: no inline or managed policy on the user.
        assert.equal(mocks.ofType("aws:iam/userPolicy:UserPolicy").length, 0);
        assert.equal(mocks.ofType("aws:iam/userPolicyAttachment:UserPolicyAttachment").length, 0);
    });

    void it("S6/R6: the access key secret is a secret output and secret in the state", async () => {
        const { bb, recorder } = await build("r6");
        assert.equal(await pulumi.isSecret(bb.secretAccessKey), true);
        assert.equal(await unwrap(bb.secretAccessKey), "fake-secret-access-key-0123456789abcdef");
        assert.ok(recorder.of(T.accessKey, "r6-access-key").additionalSecretOutputs.includes("secret"));
        assert.equal(await pulumi.isSecret(bb.accessKeyId), false);
    });

    void it("exposes bucket name, region, prefix, key id and no endpoint (AWS)", async () => {
        const { bb } = await build("outs");
        assert.equal(await unwrap(bb.bucketName), "example-finances-prod-backups");
        assert.equal(await unwrap(bb.bucketArn), "arn:aws:s3:::example-finances-prod-backups");
        assert.equal(bb.region, "eu-central-1");
        assert.equal(bb.prefix, "finances/prod");
        assert.equal(await unwrap(bb.accessKeyId), "outs-access-key-id");
        assert.equal(bb.endpoint, undefined);
    });

    void it("bad retention registers nothing, not even the component", () => {
        const before = mocks.resources.length;
        assert.throws(() => new BackupBucket("bad", { ...ARGS, retentionDays: 0 }), /retentionDays must be .* at least 1/);
        assert.equal(mocks.resources.filter((r) => r.name.startsWith("bad")).length, 0);
        assert.equal(mocks.resources.length, before);
    });
});

void describe("lifecyclePolicyRules (S3)", () => {
    const cases = [
        { retentionDays: 7, weeklyRetentionWeeks: 4, noncurrent: undefined, daily: 7, weekly: 28, nc: 7 },
        { retentionDays: 30, weeklyRetentionWeeks: 0, noncurrent: undefined, daily: 30, weekly: undefined, nc: 7 },
        { retentionDays: 1, weeklyRetentionWeeks: 52, noncurrent: 30, daily: 1, weekly: 364, nc: 30 },
    ];
    for (const c of cases) {
        void it(`retention ${c.retentionDays} d, weekly ${c.weeklyRetentionWeeks} w → daily ${c.daily}, weekly ${c.weekly ?? "none"}, noncurrent ${c.nc}`, () => {
            const rules = lifecyclePolicyRules({ prefix: "a/b", retentionDays: c.retentionDays, weeklyRetentionWeeks: c.weeklyRetentionWeeks, noncurrentVersionDays: c.noncurrent });
            const byPrefix = new Map(rules.map((r) => [r.filter.prefix, r]));
            assert.equal(byPrefix.get("a/b/daily/")?.expiration?.days, c.daily);
            assert.equal(byPrefix.get("a/b/weekly/")?.expiration?.days, c.weekly);
            assert.equal(byPrefix.get("a/b/files/")?.expiration?.days, c.daily);
            assert.equal(byPrefix.get("a/b/")?.noncurrentVersionExpiration?.noncurrentDays, c.nc);
            assert.ok(rules.every((r) => r.status === "Enabled"));
            assert.equal(new Set(rules.map((r) => r.id)).size, rules.length, "rule ids are unique");
            // No rule may reach outside the prefix (another app's objects in a shared bucket).
            assert.ok(rules.every((r) => r.filter.prefix.startsWith("a/b/")));
        });
    }

    void it("aborts incomplete multipart uploads within 1-7 days under the whole prefix", () => {
        const rules = lifecyclePolicyRules({ prefix: "p", retentionDays: 7, weeklyRetentionWeeks: 4 });
        const abort = rules.filter((r) => r.abortIncompleteMultipartUpload);
        assert.equal(abort.length, 1);
        assert.equal(abort[0].filter.prefix, "p/");
        assert.equal(abort[0].abortIncompleteMultipartUpload?.daysAfterInitiation, ABORT_INCOMPLETE_UPLOAD_DAYS);
        assert.ok(ABORT_INCOMPLETE_UPLOAD_DAYS >= 1 && ABORT_INCOMPLETE_UPLOAD_DAYS <= 7);
    });

    for (const [field, value] of [["retentionDays", 0], ["retentionDays", 1.5], ["weeklyRetentionWeeks", -1], ["noncurrentVersionDays", 0]] as const) {
        void it(`rejects ${field} = ${value}`, () => {
            const args = { prefix: "p", retentionDays: 7, weeklyRetentionWeeks: 4, [field]: value };
            assert.throws(() => lifecyclePolicyRules(args), new RegExp(field));
        });
    }
});

void describe("credentialsPolicyDocument (S6)", () => {
    for (const [bucket, prefix] of [["example-finances-prod-backups", "finances/prod"], ["ff-backups", "fingerflow/prod/db"], ["b.with.dots", "x"]]) {
        void it(`${bucket} / ${prefix}: put/get on the prefix, list limited to it, no wildcard action or resource, no delete`, () => {
            const doc = credentialsPolicyDocument(bucket, prefix);
            const statements = statementsOf(doc);
            assert.equal(doc.Version, "2012-10-17");
            assert.ok(statements.every((s) => s.Effect === "Allow"));
            const actions = statements.flatMap((s) => s.actions).sort();
            // PutObjectAcl: uploads carry rclone's `x-amz-acl: private`; inert with ACLs disabled (S1).
            assert.deepEqual(actions, ["s3:GetBucketLocation", "s3:GetObject", "s3:ListBucket", "s3:PutObject", "s3:PutObjectAcl"]);
            for (const s of statements) {
                assert.ok(!s.actions.some((a) => a.includes("*")), `wildcard action in ${s.Sid}`);
                assert.ok(!s.actions.some((a) => /delete/i.test(a)), `delete action in ${s.Sid}`);
                assert.ok(!s.resources.some((r) => r === "*" || r === "arn:aws:s3:::*"), `wildcard resource in ${s.Sid}`);
                assert.ok(s.resources.every((r) => r.startsWith(`arn:aws:s3:::${bucket}`)), `foreign resource in ${s.Sid}`);
                assert.equal(s.Principal, undefined);
            }
            const objects = statements.find((s) => s.actions.includes("s3:PutObject"));
            assert.deepEqual(objects?.resources, [`arn:aws:s3:::${bucket}/${prefix}/*`]);
            assert.deepEqual(statements.find((s) => s.actions.includes("s3:GetObject"))?.resources, [`arn:aws:s3:::${bucket}/${prefix}/*`]);
            assert.deepEqual(statements.find((s) => s.actions.includes("s3:PutObjectAcl"))?.resources, [`arn:aws:s3:::${bucket}/${prefix}/*`]);
            const list = statements.find((s) => s.actions.includes("s3:ListBucket"));
            assert.deepEqual(list?.resources, [`arn:aws:s3:::${bucket}`]);
            assert.deepEqual(list?.Condition, { StringLike: { "s3:prefix": [`${prefix}/*`] } });
        });
    }
});

void describe("secureTransportPolicy (S4)", () => {
    void it("denies s3:* for everyone when aws:SecureTransport is false, on bucket and objects", () => {
        const [s, ...rest] = secureTransportPolicy("arn:aws:s3:::b").Statement;
        assert.equal(rest.length, 0);
        assert.equal(s.Effect, "Deny");
        assert.equal(s.Principal, "*");
        assert.equal(s.Action, "s3:*");
        assert.deepEqual(s.Resource, ["arn:aws:s3:::b", "arn:aws:s3:::b/*"]);
        assert.deepEqual(s.Condition, { Bool: { "aws:SecureTransport": "false" } });
    });
});

void describe("backupPrefix", () => {
    void it("defaults to <app>/<environment>", () => {
        assert.equal(backupPrefix(validateConfig(digitalOceanRaw()).config), "finances/prod");
    });
    void it("uses backups.prefix when set", () => {
        assert.equal(backupPrefix(validateConfig(withValue(digitalOceanRaw(), "backups.prefix", "team/finances")).config), "team/finances");
    });
});
