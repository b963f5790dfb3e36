/**
 * Resource identity is part of the library's contract: a refactor of the
 * components must not rename or re-parent a resource of an existing stack
 * (Pulumi would replace it: a new server, a new bucket, a new database
 * password). Each pinned stack runs index.ts under mocks in its own process
 * and its sorted URNs must equal the committed list in urns/<stack>.txt.
 *
 * A deliberate change (a new resource, a rename with `aliases`) updates the
 * lists with: ONEBOX_UPDATE_URNS=1 node --import tsx --test tests/unit/program/urns.test.ts
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { STACKS } from "../../helpers/print-urns";

const ROOT = path.resolve(__dirname, "../../..");
const TSX = path.join(ROOT, "node_modules", ".bin", "tsx");

function urnsOf(stack: string): string {
    return execFileSync(TSX, [path.join(ROOT, "tests/helpers/print-urns.ts"), stack], { cwd: ROOT, encoding: "utf8", timeout: 120_000 });
}

describe("resource identities of the pinned stacks", () => {
    for (const stack of Object.keys(STACKS)) {
        it(`${stack}: every URN is unchanged (nothing renamed, re-parented, added or dropped)`, () => {
            const file = path.join(__dirname, "urns", `${stack}.txt`);
            const actual = urnsOf(stack);
            if (process.env.ONEBOX_UPDATE_URNS === "1") {
                writeFileSync(file, actual);
            }
            const expected = readFileSync(file, "utf8");
            assert.ok(expected.split("\n").filter(Boolean).length >= 5, `${file} lists the stack's resources`);
            const lines = (s: string) => new Set(s.split("\n").filter(Boolean));
            const [want, got] = [lines(expected), lines(actual)];
            assert.deepEqual(
                { missing: [...want].filter((u) => !got.has(u)), added: [...got].filter((u) => !want.has(u)) },
                { missing: [], added: [] },
                `URNs of ${stack} changed: a missing URN is a resource Pulumi would delete (or replace) in an existing stack`,
            );
        });
    }
});
