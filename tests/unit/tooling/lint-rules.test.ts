/**
 * The project's ESLint configuration really rejects Pulumi outputs in plain
 * template literals: a committed fixture is linted with the project's own
 * config (the fixture is skipped by `npm run lint` on purpose).
 *
 * `@pulumi/no-output-in-template-literal` catches an `Output<T>`. Its sibling
 * for `OutputInstance<T>` is enabled too, but with this SDK it never fires:
 * it matches the type's alias name and `OutputInstance` is an interface. The
 * typescript-eslint template checks are what stop that case, so the test pins
 * both guards.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { ESLint } from "eslint";

const ROOT = path.resolve(__dirname, "../../..");
const FIXTURE = path.join(ROOT, "tests/fixtures/lint/output-in-template.ts");

/** 1-based line of the fixture that contains `needle`. */
function lineOf(needle: string): number {
    const index = readFileSync(FIXTURE, "utf8").split("\n").findIndex((l) => l.includes(needle));
    assert.ok(index >= 0, `fixture has no line with ${needle}`);
    return index + 1;
}

const OUTPUT_LINE = lineOf("return `https://${address}/`");
const OUTPUT_INSTANCE_LINE = lineOf("return `ssh root@${address}`");
const INTERPOLATED_FROM = lineOf("export function interpolated");

interface Finding {
    rule: string | null;
    severity: number;
    line: number;
}

async function lintFixture(): Promise<Finding[]> {
    const eslint = new ESLint({ cwd: ROOT, ignore: false });
    const [result] = await eslint.lintFiles([FIXTURE]);
    return result.messages.map((m) => ({ rule: m.ruleId, severity: m.severity, line: m.line }));
}

void describe("ESLint configuration", () => {
    let found: Finding[] = [];

    void it("reports an Output<T> in a template literal with Pulumi's rule, as an error", async () => {
        found = await lintFixture();
        assert.deepEqual(
            found.filter((m) => m.rule?.startsWith("@pulumi/")),
            [{ rule: "@pulumi/no-output-in-template-literal", severity: 2, line: OUTPUT_LINE }],
        );
    });

    void it("reports both template literals through typescript-eslint's template checks, as errors", () => {
        for (const line of [OUTPUT_LINE, OUTPUT_INSTANCE_LINE]) {
            assert.ok(
                found.some((m) => m.rule === "@typescript-eslint/restrict-template-expressions" && m.severity === 2 && m.line === line),
                `line ${line}: ${JSON.stringify(found)}`,
            );
        }
    });

    void it("accepts the pulumi.interpolate form", () => {
        assert.ok(found.length > 0, "the fixture was linted");
        assert.deepEqual(found.filter((m) => m.line >= INTERPOLATED_FROM), []);
    });
});
