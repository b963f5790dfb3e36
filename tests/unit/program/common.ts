/** Assertions shared by the program tests (one test file per host kind). */
import assert from "node:assert/strict";
import type { RecordedResource, RecordingMocks } from "../../helpers/mocks";
import { stackOutputsSchema } from "../../../components/outputs/contract";

/** The secret marker Pulumi puts around secret values in serialized inputs. */
const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";

export function isSecretInput(value: unknown): boolean {
    return typeof value === "object" && value !== null && Object.values(value).includes(SECRET_SIG);
}

/** The value inside Pulumi's secret marker, or the value itself. */
export function plain<T = unknown>(value: unknown): T {
    return (isSecretInput(value) ? (value as { value: unknown }).value : value) as T;
}

export function remoteCommands(mocks: RecordingMocks): RecordedResource[] {
    return mocks.ofType("command:remote:Command");
}

/** Every secret value the mocks generate, plus the ones the config supplies. */
export function secretValuesIn(mocks: RecordingMocks, supplied: string[]): string[] {
    const generated = mocks
        .ofType("random:index/randomPassword:RandomPassword")
        .map((r) => `generated-${r.name}-Zq8w1Xr5Tn3Vb7Mk2Lp9Hs4Jd6Fg0`);
    return [...generated, ...supplied];
}

/** R3: no secret value in any command string or other plain (non-secret) input of a command. */
export function assertNoSecretInCommands(mocks: RecordingMocks, secrets: string[]): void {
    const commands = [...remoteCommands(mocks), ...mocks.ofType("command:local:Command")];
    assert.ok(commands.length > 0, "no command resources recorded");
    for (const cmd of commands) {
        for (const [key, value] of Object.entries(cmd.inputs)) {
            if (isSecretInput(value)) {
                continue;
            }
            const text = JSON.stringify(value) ?? "";
            for (const s of secrets) {
                assert.ok(!text.includes(s), `R3: secret found in plain input ${key} of ${cmd.name}`);
            }
        }
    }
}

/** The outputs contract parses and holds none of the secret values. */
export function assertOutputsClean(outputs: unknown, secrets: string[]): void {
    stackOutputsSchema.parse(outputs);
    const text = JSON.stringify(outputs);
    for (const s of secrets) {
        assert.ok(!text.includes(s), "secret value in stack outputs");
    }
    assert.ok(!/PRIVATE KEY/.test(text), "private key in stack outputs");
}
