/**
 * Where a stack's backups live inside the bucket. Kept apart from the bucket
 * component (and free of @pulumi/aws) because the outputs contract, which
 * consuming programs import, needs it too.
 */
export { backupPrefix } from "../config/plan";
