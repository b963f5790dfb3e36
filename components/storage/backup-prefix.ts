/**
 * Where a stack's backups live inside the bucket. Kept apart from the bucket
 * component (and free of @pulumi/aws) because the outputs contract, which
 * consuming programs import, needs it too.
 */
import type { StackConfig } from "../config/schema";

/** The key prefix for backups: the configured one or "<app>/<environment>". */
export function backupPrefix(config: Pick<StackConfig, "app" | "backups">): string {
    return config.backups?.prefix ?? `${config.app.name}/${config.app.environment}`;
}
