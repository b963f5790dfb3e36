/**
 * Small pure glue used by index.ts: which hostnames get DNS records, and the
 * secret values the provisioning steps reference by name.
 */
import * as pulumi from "@pulumi/pulumi";
import { RESERVED_SECRETS as R } from "./config/plan";

export { dnsHostnames } from "./config/plan";

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
    add(R.postgresPassword, src.secrets.databasePassword);
    add(R.backupAccessKeyId, src.backupStorage?.accessKeyId);
    add(R.backupSecretAccessKey, src.backupStorage?.secretAccessKey);
    add(R.tlsOriginCert, src.dns?.certificatePem);
    add(R.tlsOriginKey, src.dns?.privateKeyPem);
    add(R.postgresTlsCert, src.databaseTls?.certPem);
    add(R.postgresTlsKey, src.databaseTls?.privateKeyPem);
    return out;
}
