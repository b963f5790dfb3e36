/**
 * The backup bucket in AWS S3 and the only credentials allowed to use it.
 *
 * S1 public access blocked, S2 encrypted at rest, S3 versioned with lifecycle
 * expiry, S4 TLS-only policy, S5 protected from deletion, S6 a dedicated IAM
 * user whose group policy allows put/get/list on the backup prefix and nothing
 * else. The rules and policies are pure functions below, tested directly.
 */
import * as pulumi from "@pulumi/pulumi";
import * as aws from "@pulumi/aws";

export const BACKUP_BUCKET_TYPE = "onebox:storage:BackupBucket";

/** Days before an incomplete multipart upload is aborted (a crashed upload otherwise bills forever). */
export const ABORT_INCOMPLETE_UPLOAD_DAYS = 2;

/** Days a noncurrent (overwritten or expired) version is kept before it is deleted. */
export const DEFAULT_NONCURRENT_VERSION_DAYS = 7;

export interface BackupBucketArgs {
    /**
     * Rotation period of the access key (`rotationLabel()`), part of the key's
     * resource name: a new label creates a new key, the backup step installs
     * it, and the old key is deleted at the end of the update. Undefined: the
     * key never rotates.
     * @example "90d-2026-10-17"
     */
    readonly keyRotation?: string;
    /**
     * Globally unique bucket name (validated by the config schema).
     * @example "example-finances-prod-backups"
     */
    readonly bucket: string;
    /**
     * AWS region of the bucket. Set on every S3 resource (provider v7's
     * per-resource `region`), so no extra regional provider is needed; IAM is global.
     * @example "eu-central-1"
     */
    readonly region: string;
    /**
     * Key prefix every object lives under, without leading or trailing slash.
     * The credentials are limited to it.
     * @example "finances/prod"
     */
    readonly prefix: string;
    /** Days to keep daily dumps (`<prefix>/daily/`) and file archives (`<prefix>/files/`). */
    readonly retentionDays: number;
    /** Weeks to keep weekly dumps (`<prefix>/weekly/`); 0 means no weekly copies are made. */
    readonly weeklyRetentionWeeks: number;
    /**
     * Days an overwritten or expired version is kept. This is the window in
     * which a dump overwritten with the backup credentials can still be recovered.
     * @default 7
     */
    readonly noncurrentVersionDays?: number;
    /**
     * KMS key id or ARN for SSE-KMS. S3-managed keys (SSE-S3, AES256) otherwise,
     * which need no key policy for the backup user.
     * @default undefined (AES256)
     */
    readonly kmsKeyId?: pulumi.Input<string>;
    /** Tags for the bucket and the IAM user. */
    readonly tags?: Record<string, string>;
}

/** One lifecycle rule, in the shape of `aws.s3.BucketLifecycleConfiguration` rules. */
export interface LifecycleRule {
    id: string;
    status: "Enabled";
    filter: { prefix: string };
    expiration?: { days: number };
    noncurrentVersionExpiration?: { noncurrentDays: number };
    abortIncompleteMultipartUpload?: { daysAfterInitiation: number };
}

/** An IAM policy document. */
export interface PolicyDocument {
    Version: "2012-10-17";
    Statement: PolicyStatement[];
}

export interface PolicyStatement {
    Sid: string;
    Effect: "Allow" | "Deny";
    Principal?: "*";
    Action: string | string[];
    Resource: string | string[];
    Condition?: Record<string, Record<string, string | string[]>>;
}

/**
 * S3 lifecycle rules. Dumps expire per retention; overwritten or expired
 * versions (the bucket is versioned) and abandoned multipart uploads are
 * cleaned up under the whole prefix.
 *
 * `<prefix>/files/` expires like the daily dumps, which assumes each backup
 * run writes new, dated archives there. A mirror kept in place with `sync`
 * would lose files that stop changing, so backup scripts must not sync into it.
 *
 * Rules with `expiration.days` also remove the delete markers left behind
 * once their noncurrent versions are gone, so no separate
 * `expiredObjectDeleteMarker` rule is needed.
 */
export function lifecyclePolicyRules(args: {
    prefix: string;
    retentionDays: number;
    weeklyRetentionWeeks: number;
    noncurrentVersionDays?: number;
}): LifecycleRule[] {
    if (!Number.isInteger(args.retentionDays) || args.retentionDays < 1) {
        throw new Error(`retentionDays must be a whole number of days, at least 1 (got ${args.retentionDays})`);
    }
    if (!Number.isInteger(args.weeklyRetentionWeeks) || args.weeklyRetentionWeeks < 0) {
        throw new Error(`weeklyRetentionWeeks must be a whole number, 0 or more (got ${args.weeklyRetentionWeeks})`);
    }
    const noncurrentDays = args.noncurrentVersionDays ?? DEFAULT_NONCURRENT_VERSION_DAYS;
    if (!Number.isInteger(noncurrentDays) || noncurrentDays < 1) {
        throw new Error(`noncurrentVersionDays must be a whole number of days, at least 1 (got ${noncurrentDays})`);
    }
    const p = args.prefix;
    const rules: LifecycleRule[] = [
        { id: "expire-daily-dumps", status: "Enabled", filter: { prefix: `${p}/daily/` }, expiration: { days: args.retentionDays } },
    ];
    // With weekly copies disabled there is nothing to expire; weekly dumps made
    // before they were disabled are kept until removed by hand, never silently.
    if (args.weeklyRetentionWeeks > 0) {
        rules.push({
            id: "expire-weekly-dumps",
            status: "Enabled",
            filter: { prefix: `${p}/weekly/` },
            expiration: { days: args.weeklyRetentionWeeks * 7 },
        });
    }
    rules.push(
        { id: "expire-file-archives", status: "Enabled", filter: { prefix: `${p}/files/` }, expiration: { days: args.retentionDays } },
        {
            id: "expire-noncurrent-and-incomplete",
            status: "Enabled",
            filter: { prefix: `${p}/` },
            noncurrentVersionExpiration: { noncurrentDays },
            abortIncompleteMultipartUpload: { daysAfterInitiation: ABORT_INCOMPLETE_UPLOAD_DAYS },
        },
    );
    return rules;
}

/**
 * S6: the backup credentials' policy. Put and get objects under the prefix,
 * list only that prefix, find the bucket's region. No delete: expiry is the
 * lifecycle's job, so stolen credentials cannot erase the history (and
 * versioning keeps what they overwrite).
 *
 * s3:PutObjectAcl is there because the uploader (rclone 1.60, Debian 13's)
 * sends `x-amz-acl: private` with every upload and cannot be told not to, and
 * S3 authorizes an upload that carries ACL headers as PutObjectAcl as well;
 * the bucket has ACLs disabled (BucketOwnerEnforced), so the permission lets
 * nobody change who can read anything.
 *
 * What clients must expect from this policy: s3:PutObject covers multipart
 * uploads but not aborting them (the lifecycle cleans those up); the bucket
 * cannot be created or probed (rclone: `no_check_bucket`); and since listing
 * is conditioned on `s3:prefix`, S3 answers a HEAD on a missing key with 403
 * rather than 404, so uploads must not check the destination first
 * (rclone: `--no-check-dest`).
 */
export function credentialsPolicyDocument(bucket: string, prefix: string, partition = "aws"): PolicyDocument {
    const bucketArn = `arn:${partition}:s3:::${bucket}`;
    return {
        Version: "2012-10-17",
        Statement: [
            {
                Sid: "ListBackupPrefix",
                Effect: "Allow",
                Action: ["s3:ListBucket"],
                Resource: [bucketArn],
                Condition: { StringLike: { "s3:prefix": [`${prefix}/*`] } },
            },
            { Sid: "LocateBucket", Effect: "Allow", Action: ["s3:GetBucketLocation"], Resource: [bucketArn] },
            { Sid: "ReadWriteBackupObjects", Effect: "Allow", Action: ["s3:PutObject", "s3:PutObjectAcl", "s3:GetObject"], Resource: [`${bucketArn}/${prefix}/*`] },
        ],
    };
}

/** S4: deny every request to the bucket or its objects that is not made over TLS. */
export function secureTransportPolicy(bucketArn: string): PolicyDocument {
    return {
        Version: "2012-10-17",
        Statement: [
            {
                Sid: "DenyInsecureTransport",
                Effect: "Deny",
                Principal: "*",
                Action: "s3:*",
                Resource: [bucketArn, `${bucketArn}/*`],
                Condition: { Bool: { "aws:SecureTransport": "false" } },
            },
        ],
    };
}

/** S2: default encryption rule: SSE-KMS with the given key, otherwise SSE-S3 (AES256). */
export function encryptionRule(kmsKeyId?: pulumi.Input<string>): aws.types.input.s3.BucketServerSideEncryptionConfigurationRule {
    if (kmsKeyId === undefined) {
        return { applyServerSideEncryptionByDefault: { sseAlgorithm: "AES256" } };
    }
    // The bucket key cuts KMS request costs for the daily uploads.
    return { applyServerSideEncryptionByDefault: { sseAlgorithm: "aws:kms", kmsMasterKeyId: kmsKeyId }, bucketKeyEnabled: true };
}

/**
 * S5: resource options of the bucket. `protect` makes `pulumi destroy` (or a
 * change that would replace the bucket) fail; `retainOnDelete` keeps the
 * bucket in AWS even after it is unprotected and removed from the stack.
 */
export function bucketProtection(): { protect: true; retainOnDelete: true } {
    return { protect: true, retainOnDelete: true };
}

/**
 * Options of the settings that keep a retained bucket private, encrypted and
 * versioned: they are retained with it, so a destroyed stack never leaves an
 * unguarded bucket behind. The lifecycle is deliberately not retained: after
 * a destroy the last dumps stay until someone decides otherwise, instead of
 * expiring while nobody is watching.
 */
export function guardSettingsProtection(): { retainOnDelete: true } {
    return { retainOnDelete: true };
}

export class BackupBucket extends pulumi.ComponentResource {
    public readonly bucketName: pulumi.Output<string>;
    public readonly bucketArn: pulumi.Output<string>;
    public readonly region: string;
    public readonly prefix: string;
    /** Always undefined: buckets created here are in AWS, where clients derive the endpoint from the region. */
    public readonly endpoint: string | undefined = undefined;
    public readonly accessKeyId: pulumi.Output<string>;
    /** Secret access key of the backup user (secret). */
    public readonly secretAccessKey: pulumi.Output<string>;

    constructor(name: string, args: BackupBucketArgs, opts?: pulumi.ComponentResourceOptions) {
        // Computed before super(): bad retention throws and registers nothing, not even the component.
        const rules = lifecyclePolicyRules(args);
        super(BACKUP_BUCKET_TYPE, name, {}, opts);
        this.region = args.region;
        this.prefix = args.prefix;

        const bucket = this.createBucket(name, args);
        const publicAccessBlock = this.blockPublicAccess(name, bucket);
        this.disableAcls(name, bucket);
        this.encrypt(name, bucket, args.kmsKeyId);
        const versioning = this.enableVersioning(name, bucket);
        this.expireOldBackups(name, bucket, rules, versioning);
        this.requireTls(name, bucket, publicAccessBlock);
        const accessKey = this.createCredentials(name, args);

        this.bucketName = bucket.bucket;
        this.bucketArn = bucket.arn;
        this.accessKeyId = accessKey.id;
        this.secretAccessKey = pulumi.secret(accessKey.secret);

        this.registerOutputs({
            bucketName: this.bucketName,
            bucketArn: this.bucketArn,
            region: this.region,
            prefix: this.prefix,
            accessKeyId: this.accessKeyId,
            secretAccessKey: this.secretAccessKey,
        });
    }

    private createBucket(name: string, args: BackupBucketArgs): aws.s3.Bucket {
        return new aws.s3.Bucket(
            `${name}-bucket`,
            // forceDestroy false: deleting a bucket that still holds backups must fail.
            { bucket: args.bucket, region: args.region, forceDestroy: false, tags: args.tags },
            { parent: this, ...bucketProtection() },
        );
    }

    /** S1 */
    private blockPublicAccess(name: string, bucket: aws.s3.Bucket): aws.s3.BucketPublicAccessBlock {
        return new aws.s3.BucketPublicAccessBlock(
            `${name}-public-access-block`,
            {
                bucket: bucket.id,
                region: this.region,
                blockPublicAcls: true,
                blockPublicPolicy: true,
                ignorePublicAcls: true,
                restrictPublicBuckets: true,
            },
            { parent: this, ...guardSettingsProtection() },
        );
    }

    /**
     * S1: ACLs disabled, the bucket owner owns every object (the default for
     * new buckets since 2023, made explicit so it cannot drift): access is
     * decided by policies alone, whatever ACL header an upload carries.
     */
    private disableAcls(name: string, bucket: aws.s3.Bucket): aws.s3.BucketOwnershipControls {
        return new aws.s3.BucketOwnershipControls(
            `${name}-ownership`,
            { bucket: bucket.id, region: this.region, rule: { objectOwnership: "BucketOwnerEnforced" } },
            { parent: this, ...guardSettingsProtection() },
        );
    }

    /** S2 */
    private encrypt(name: string, bucket: aws.s3.Bucket, kmsKeyId?: pulumi.Input<string>): aws.s3.BucketServerSideEncryptionConfiguration {
        return new aws.s3.BucketServerSideEncryptionConfiguration(
            `${name}-encryption`,
            { bucket: bucket.id, region: this.region, rules: [encryptionRule(kmsKeyId)] },
            { parent: this, ...guardSettingsProtection() },
        );
    }

    /** S3 (versioning) */
    private enableVersioning(name: string, bucket: aws.s3.Bucket): aws.s3.BucketVersioning {
        return new aws.s3.BucketVersioning(
            `${name}-versioning`,
            { bucket: bucket.id, region: this.region, versioningConfiguration: { status: "Enabled" } },
            { parent: this, ...guardSettingsProtection() },
        );
    }

    /** S3 (lifecycle) */
    private expireOldBackups(
        name: string,
        bucket: aws.s3.Bucket,
        rules: LifecycleRule[],
        versioning: aws.s3.BucketVersioning,
    ): aws.s3.BucketLifecycleConfiguration {
        // Noncurrent-version rules only make sense once versioning is on; AWS
        // documents this ordering for lifecycle on versioned buckets.
        return new aws.s3.BucketLifecycleConfiguration(
            `${name}-lifecycle`,
            { bucket: bucket.id, region: this.region, rules },
            { parent: this, dependsOn: [versioning] },
        );
    }

    /** S4 */
    private requireTls(name: string, bucket: aws.s3.Bucket, publicAccessBlock: aws.s3.BucketPublicAccessBlock): aws.s3.BucketPolicy {
        // After the public access block: S3 rejects concurrent policy and
        // access-block changes on one bucket ("conflicting conditional operation").
        return new aws.s3.BucketPolicy(
            `${name}-policy`,
            { bucket: bucket.id, region: this.region, policy: bucket.arn.apply((arn) => JSON.stringify(secureTransportPolicy(arn))) },
            { parent: this, dependsOn: [publicAccessBlock], ...guardSettingsProtection() },
        );
    }

    /** S6 */
    private createCredentials(name: string, args: BackupBucketArgs): aws.iam.AccessKey {
        // IAM names are explicit so the console shows whose they are; bucket
        // names are global and at most 63 characters, IAM user names 64.
        const user = new aws.iam.User(`${name}-user`, { name: args.bucket, path: "/onebox/", tags: args.tags }, { parent: this });
        const group = new aws.iam.Group(`${name}-group`, { name: `${args.bucket}-backup-writers`, path: "/onebox/" }, { parent: this });
        new aws.iam.GroupPolicy(
            `${name}-group-policy`,
            { group: group.name, name: "backup-prefix-read-write", policy: JSON.stringify(credentialsPolicyDocument(args.bucket, args.prefix)) },
            { parent: this },
        );
        const membership = new aws.iam.GroupMembership(
            `${name}-membership`,
            { group: group.name, users: [user.name] },
            { parent: this },
        );
        // The provider marks `secret` secret already; listing it keeps R6 true
        // even if that default changes. The key waits for the membership so it
        // never exists without its permissions.
        return new aws.iam.AccessKey(
            args.keyRotation === undefined ? `${name}-access-key` : `${name}-access-key-${args.keyRotation}`,
            { user: user.name },
            { parent: this, dependsOn: [membership], additionalSecretOutputs: ["secret", "sesSmtpPasswordV4"] },
        );
    }
}
