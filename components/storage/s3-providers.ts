/**
 * S3-compatible storage services the backups can be sent to, and what each one
 * needs: its endpoint, how its regions are spelled, whether buckets are
 * addressed by host name or by path, and which rclone provider profile the host
 * scripts use (scripts/host/backup/lib.sh maps `BACKUP_S3_PROVIDER` to it).
 *
 * One table, read by the config schema (validation and defaults), the rendered
 * backup settings and the documentation tests. Free of @pulumi/* so the config
 * module can import it.
 */

/** `backups.provider` values. */
export const S3_PROVIDERS = ["aws", "b2", "r2", "spaces", "minio", "other"] as const;
export type S3Provider = (typeof S3_PROVIDERS)[number];

export interface S3Preset {
    /** What the service is called in error messages. */
    readonly label: string;
    /** Pattern every region of the service matches. */
    readonly region: RegExp;
    /** A region to show in error messages. */
    readonly regionExample: string;
    /** Region used when the configuration names none; undefined: the region is required. */
    readonly defaultRegion?: string;
    /** Endpoint for a region; undefined: the service's endpoint depends on the account, so `backups.endpoint` is required. */
    readonly endpointFor?: (region: string) => string | undefined;
    /** What an endpoint of this service looks like (error message), for services whose endpoint must be given. */
    readonly endpointExample?: string;
    /**
     * Path-style addressing (`https://endpoint/bucket/key`) instead of
     * virtual-hosted (`https://bucket.endpoint/key`).
     */
    readonly pathStyle: boolean;
}

/**
 * The presets. Why each choice:
 * - aws: virtual-hosted addressing (AWS is retiring path-style for new buckets);
 *   the SDK default endpoint of the region.
 * - b2: Backblaze's S3 API lives at s3.<region>.backblazeb2.com and its regions
 *   are spelled us-west-004, eu-central-003 (the AWS pattern refuses them). Path
 *   style works for every bucket name (dots included) and B2 accepts it.
 * - r2: the endpoint carries the account id (https://<account>.r2.cloudflarestorage.com),
 *   so it must be given; R2 signs with region "auto".
 * - spaces: DigitalOcean Spaces lives at <region>.digitaloceanspaces.com (fra1, nyc3)
 *   and documents virtual-hosted addressing.
 * - minio / other: the endpoint is yours; path style, which self-hosted servers
 *   serve without wildcard DNS; any region name (MinIO's default is us-east-1).
 */
export const S3_PRESETS: Record<S3Provider, S3Preset> = {
    aws: { label: "AWS S3", region: /^[a-z]{2}(-[a-z]+)+-\d$/, regionExample: "eu-central-1", defaultRegion: "us-east-1", endpointFor: () => undefined, pathStyle: false },
    b2: {
        label: "Backblaze B2",
        region: /^[a-z]{2}-[a-z]+-\d{3}$/,
        regionExample: "eu-central-003",
        endpointFor: (r) => `https://s3.${r}.backblazeb2.com`,
        pathStyle: true,
    },
    r2: { label: "Cloudflare R2", region: /^auto$/, regionExample: "auto", defaultRegion: "auto", endpointExample: "https://<account id>.r2.cloudflarestorage.com", pathStyle: true },
    spaces: {
        label: "DigitalOcean Spaces",
        region: /^[a-z]{3}\d$/,
        regionExample: "fra1",
        endpointFor: (r) => `https://${r}.digitaloceanspaces.com`,
        pathStyle: false,
    },
    minio: { label: "MinIO", region: /^[a-z0-9][a-z0-9-]{0,62}$/, regionExample: "us-east-1", defaultRegion: "us-east-1", endpointExample: "https://minio.example.com:9000", pathStyle: true },
    other: { label: "an S3-compatible service", region: /^[a-z0-9][a-z0-9-]{0,62}$/, regionExample: "us-east-1", defaultRegion: "us-east-1", endpointExample: "https://s3.example.com", pathStyle: true },
};

/** Where the backups go, with every default filled in. */
export interface S3Target {
    readonly provider: S3Provider;
    /** Empty when the region is required and missing (the schema reports it). */
    readonly region: string;
    /** undefined: the service's default endpoint (AWS only). */
    readonly endpoint: string | undefined;
    readonly pathStyle: boolean;
}

/**
 * Fills in the defaults of a backups target: the provider ("aws", or "other"
 * when only an endpoint is given, which is how configurations written before
 * the presets existed keep their meaning), the region and the endpoint.
 */
export function resolveS3Target(b: { provider?: S3Provider; region?: string; endpoint?: string }): S3Target {
    const provider = b.provider ?? (b.endpoint ? "other" : "aws");
    const preset = S3_PRESETS[provider];
    const region = b.region ?? preset.defaultRegion ?? "";
    const endpoint = b.endpoint ?? (region && preset.region.test(region) ? preset.endpointFor?.(region) : undefined);
    return { provider, region, endpoint, pathStyle: preset.pathStyle };
}

/**
 * Problems of a resolved target, as [setting, message] pairs (empty when fine).
 * Used by the config schema, which adds the `backups.` path.
 */
export function s3TargetProblems(t: S3Target, raw: { region?: string; endpoint?: string }): [string, string][] {
    const preset = S3_PRESETS[t.provider];
    const problems: [string, string][] = [];
    if (!t.region) {
        problems.push(["region", `${preset.label} needs its region; set backups.region (e.g. ${preset.regionExample})`]);
    } else if (!preset.region.test(t.region)) {
        problems.push(["region", `"${t.region}" is not a valid region for ${preset.label}; use one such as ${preset.regionExample}`]);
    }
    if (!raw.endpoint && !preset.endpointFor) {
        problems.push(["endpoint", `${preset.label} has no fixed endpoint; set backups.endpoint (e.g. ${preset.endpointExample ?? "https://..."})`]);
    }
    if (t.provider === "r2" && raw.endpoint && !new URL(raw.endpoint).hostname.endsWith(".r2.cloudflarestorage.com")) {
        problems.push(["endpoint", `R2's S3 API is served at ${preset.endpointExample}; "${raw.endpoint}" is not an R2 endpoint`]);
    }
    return problems;
}
