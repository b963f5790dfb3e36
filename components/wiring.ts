/**
 * Small pure glue used by index.ts: which hostnames get DNS records, and the
 * secret values the provisioning steps reference by name.
 */
import * as pulumi from "@pulumi/pulumi";
import type { StackConfig } from "./config/schema";

/** Every routed hostname plus `dns.extraHostnames`, each once, in first-seen order. */
export function dnsHostnames(config: Pick<StackConfig, "routes" | "dns">): string[] {
    return [...new Set([...config.routes.map((r) => r.host), ...(config.dns?.extraHostnames ?? [])])];
}

export interface SecretSources {
    secrets: { values: Record<string, pulumi.Output<string>>; databasePassword?: pulumi.Output<string> };
    backupStorage?: { accessKeyId: pulumi.Output<string>; secretAccessKey: pulumi.Output<string> };
    dns?: { certificatePem?: pulumi.Output<string>; privateKeyPem?: pulumi.Output<string> };
    databaseTls?: { certPem: pulumi.Output<string>; privateKeyPem: pulumi.Output<string> };
}

/**
 * The values behind the `{{secret:NAME}}` placeholders of the host steps:
 * app secrets by their names plus the reserved POSTGRES_PASSWORD,
 * BACKUP_S3_ACCESS_KEY_ID / BACKUP_S3_SECRET_ACCESS_KEY (from the created
 * bucket, else user-supplied), TLS_ORIGIN_CERT / TLS_ORIGIN_KEY and
 * POSTGRES_TLS_CERT / POSTGRES_TLS_KEY. All secret.
 */
export function provisioningSecrets(src: SecretSources): Record<string, pulumi.Output<string>> {
    const out: Record<string, pulumi.Output<string>> = { ...src.secrets.values };
    const add = (name: string, value: pulumi.Output<string> | undefined) => {
        if (value !== undefined) {
            out[name] = pulumi.secret(value);
        }
    };
    add("POSTGRES_PASSWORD", src.secrets.databasePassword);
    add("BACKUP_S3_ACCESS_KEY_ID", src.backupStorage?.accessKeyId);
    add("BACKUP_S3_SECRET_ACCESS_KEY", src.backupStorage?.secretAccessKey);
    add("TLS_ORIGIN_CERT", src.dns?.certificatePem);
    add("TLS_ORIGIN_KEY", src.dns?.privateKeyPem);
    add("POSTGRES_TLS_CERT", src.databaseTls?.certPem);
    add("POSTGRES_TLS_KEY", src.databaseTls?.privateKeyPem);
    return out;
}
