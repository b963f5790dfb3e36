/**
 * For programs that consume a onebox stack: read its `onebox` output through a
 * StackReference, check the contract version and validate the shape, so a
 * mismatch fails loudly with the stack and the field instead of surfacing as
 * `undefined` somewhere downstream.
 *
 * ```ts
 * const app = readOneboxOutputs("acme/onebox/prod");
 * export const apiUrl = app.apply((o) => o.urls.find((u) => u.hostname.startsWith("api."))?.url);
 * ```
 */
import * as pulumi from "@pulumi/pulumi";
import { z } from "zod";
import { ONEBOX_OUTPUT_KEY, OUTPUTS_SCHEMA_VERSION, stackOutputsSchema, type StackOutputs } from "./contract";

/**
 * Validates a raw `onebox` output read from `stackName`. Refuses a different
 * major contract version (a newer one means this consumer must be upgraded),
 * and names every mismatched path. Unknown fields are ignored (they are
 * additions within the same version).
 */
export function parseOneboxOutputs(raw: unknown, stackName: string): StackOutputs {
    if (raw === undefined || raw === null) {
        throw new Error(`stack "${stackName}" has no "${ONEBOX_OUTPUT_KEY}" output; is it a onebox stack, deployed with a version that publishes the outputs contract?`);
    }
    const version = typeof raw === "object" ? (raw as { schemaVersion?: unknown }).schemaVersion : undefined;
    if (typeof version !== "number" || !Number.isInteger(version)) {
        throw new Error(`stack "${stackName}": "${ONEBOX_OUTPUT_KEY}" output has no integer schemaVersion; it is not a onebox outputs contract`);
    }
    if (version > OUTPUTS_SCHEMA_VERSION) {
        throw new Error(
            `stack "${stackName}" publishes onebox outputs schema v${version}, but this consumer understands v${OUTPUTS_SCHEMA_VERSION}; upgrade the consumer's onebox package`,
        );
    }
    if (version < OUTPUTS_SCHEMA_VERSION) {
        throw new Error(
            `stack "${stackName}" publishes onebox outputs schema v${version}, older than v${OUTPUTS_SCHEMA_VERSION} which this consumer needs; redeploy the stack with a current onebox`,
        );
    }
    const parsed = stackOutputsSchema.safeParse(raw);
    if (!parsed.success) {
        throw new Error(`stack "${stackName}": "${ONEBOX_OUTPUT_KEY}" output does not match schema v${OUTPUTS_SCHEMA_VERSION}:\n${z.prettifyError(parsed.error)}`);
    }
    return parsed.data;
}

/**
 * Reads and validates the `onebox` output of a stack.
 * @param stackRef a StackReference, or a fully qualified stack name ("org/project/stack")
 */
export function readOneboxOutputs(stackRef: pulumi.StackReference | string): pulumi.Output<StackOutputs> {
    const ref = typeof stackRef === "string" ? new pulumi.StackReference(stackRef) : stackRef;
    return pulumi.all([ref.name, ref.getOutput(ONEBOX_OUTPUT_KEY)]).apply(([name, raw]) => parseOneboxOutputs(raw, name));
}
