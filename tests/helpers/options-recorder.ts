/**
 * Records the resource OPTIONS every resource is registered with, which the
 * recording mocks cannot see: `MockResourceArgs` carries type, name, inputs,
 * provider and id, but not `protect`, `retainOnDelete` or
 * `additionalSecretOutputs`. A resource transformation passed to a component
 * is inherited by all its children and runs in the Resource constructor with
 * the final, merged options (including those the provider SDK adds), so it
 * observes exactly what is sent to the engine.
 *
 * Also used to wait until every constructed resource has reached the mocks.
 */
import * as pulumi from "@pulumi/pulumi";
import type { RecordingMocks } from "./mocks";

export interface RegisteredOptions {
    type: string;
    name: string;
    /** Name of the parent resource; undefined for a root resource. */
    parent: string | undefined;
    /** The options as given; custom-resource fields (deleteBeforeReplace, ...) are absent on components. */
    opts: pulumi.CustomResourceOptions;
    protect?: boolean;
    retainOnDelete?: boolean;
    additionalSecretOutputs: string[];
}

export class OptionsRecorder {
    readonly seen: RegisteredOptions[] = [];

    /** Pass as `{ transformations: [recorder.transformation] }` to the component under test. */
    readonly transformation: pulumi.ResourceTransformation = (a) => {
        const parent = a.opts.parent as { __name?: string } | undefined;
        this.seen.push({
            type: a.type,
            name: a.name,
            parent: parent?.__name,
            opts: a.opts,
            protect: a.opts.protect,
            retainOnDelete: a.opts.retainOnDelete,
            additionalSecretOutputs: [...((a.opts as pulumi.CustomResourceOptions).additionalSecretOutputs ?? [])],
        });
        return undefined;
    };

    /** The options of the one resource with this type (and name); throws otherwise. */
    of(type: string, name?: string): RegisteredOptions {
        const found = this.seen.filter((r) => r.type === type && (name === undefined || r.name === name));
        if (found.length !== 1) {
            throw new Error(`expected one ${type}${name ? ` named ${name}` : ""}, saw ${found.length}`);
        }
        return found[0];
    }

    /** The options of the one resource with this name; throws otherwise. */
    named(name: string): RegisteredOptions {
        const found = this.seen.filter((r) => r.name === name);
        if (found.length !== 1) {
            throw new Error(`expected one resource named ${name}, saw ${found.length} (seen: ${this.seen.map((r) => r.name).join(", ")})`);
        }
        return found[0];
    }

    /** Waits until every resource constructed so far has been registered with the mocks. */
    async settled(mocks: RecordingMocks, timeoutMs = 5000): Promise<void> {
        const deadline = Date.now() + timeoutMs;
        for (;;) {
            const missing = this.seen.filter((s) => !mocks.resources.some((r) => r.type === s.type && r.name === s.name));
            if (missing.length === 0) {
                return;
            }
            if (Date.now() > deadline) {
                throw new Error(`not registered after ${timeoutMs} ms: ${missing.map((m) => m.name).join(", ")}`);
            }
            await new Promise((resolve) => setTimeout(resolve, 5));
        }
    }
}
