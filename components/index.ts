/**
 * onebox as a library: the components another Pulumi program can use on their
 * own, their argument types, and the configuration schema the onebox program
 * itself is driven by.
 *
 * ```ts
 * import { ExistingHost, AppSecrets } from "onebox";
 * ```
 *
 * The onebox program (`index.ts` at the repository root) imports from here
 * exactly as an outside program would.
 */
export * from "./hosts";
export * from "./provisioning";
export { AppSecrets, type AppSecretsArgs } from "./secrets/app-secrets";
export { rotationLabel, nextRotation } from "./secrets/rotation";
export { CloudflareDns, type CloudflareDnsArgs } from "./dns/cloudflare-dns";
export { BackupBucket, type BackupBucketArgs } from "./storage/backup-bucket";
export { DatabaseTls, type DatabaseTlsArgs } from "./database/database-tls";
export { buildOutputs, type BuildOutputsArgs, type StackOutputs } from "./outputs/contract";
export * from "./outputs/consumer";
export { configSchema, provisioningSchema, type ProvisioningConfig, type ProvisioningInput, type HardeningConfig, type StackConfig, type HostConfig, type ServiceConfig, type RouteConfig, type BackupsConfig } from "./config/schema";
export { loadConfig, validateConfig, validateProvisioning, provisioningConfig, ConfigError, type ConfigProblem, type LoadedConfig, type ValidatedConfig } from "./config/load";
export { dnsHostnames, provisioningSecrets } from "./wiring";
export { planOf, type Plan, databasePublished, backupStatusHost, backupPrefix } from "./config/plan";
