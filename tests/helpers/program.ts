/**
 * Runs the program entry (index.ts) under recording mocks, the way `pulumi up`
 * would load it, and waits until every resource has been registered.
 */
import * as path from "node:path";
import type * as pulumi from "@pulumi/pulumi";
import { installMocks, unwrap, type CallHandler, type RecordingMocks } from "./mocks";
import { asPulumiConfig, type Raw } from "./fixtures";
import { GET_IP_RANGES, ipRangesHandler } from "./cloudflare";

export { FAKE_CLOUDFLARE_RANGES as CLOUDFLARE_RANGES } from "./cloudflare";

/** Invokes the program may make, answered with fixed data. */
export const PROGRAM_CALLS: Record<string, CallHandler> = {
    "cloudflare:index/getZone:getZone": () => ({ id: "", zoneId: "0123456789abcdef0123456789abcdef", name: "example.com" }),
    [GET_IP_RANGES]: ipRangesHandler(),
};

export interface ProgramRun {
    mocks: RecordingMocks;
    /** The module's exports (stack outputs). */
    exports: Record<string, pulumi.Output<unknown>>;
}

/** Polls until the number of recorded resources stops changing (bounded: 5 s). */
export async function settle(mocks: RecordingMocks): Promise<void> {
    let last = -1;
    let stable = 0;
    for (let i = 0; i < 500 && stable < 10; i++) {
        await new Promise((r) => setTimeout(r, 10));
        stable = mocks.resources.length === last ? stable + 1 : 0;
        last = mocks.resources.length;
    }
}

/**
 * Loads index.ts with the given raw config. Call once per test file: the
 * module (and Pulumi's runtime settings) are per process.
 */
export async function runProgram(raw: Raw): Promise<ProgramRun> {
    return runProgramWith(asPulumiConfig(raw));
}

/** Loads index.ts with config already in Pulumi's `namespace:key` → text form. */
export async function runProgramWith(config: Record<string, string>): Promise<ProgramRun> {
    const mocks = await installMocks(config, PROGRAM_CALLS);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const exports = require(path.resolve(__dirname, "../../index.ts")) as Record<string, pulumi.Output<unknown>>;
    for (const value of Object.values(exports)) {
        await unwrap(value);
    }
    await settle(mocks);
    return { mocks, exports };
}
