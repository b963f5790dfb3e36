/**
 * README's consumer example is a real program (examples/consumer/): README shows
 * its index.ts verbatim, `npm run typecheck` compiles it, and the engine suite
 * (tests/engine/engine.test.ts) runs it against a real stack. These checks keep
 * the three from drifting apart.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { parse } from "yaml";

const ROOT = path.resolve(__dirname, "../../..");
const EXAMPLE = "examples/consumer/index.ts";
const read = (rel: string) => fs.readFileSync(path.join(ROOT, rel), "utf8");

/** The first fenced ```ts block after the README's link to the example, or undefined. */
function exampleBlock(readme: string, file: string): string | undefined {
    const link = readme.indexOf(`](${file})`);
    if (link < 0) return undefined;
    const m = /^```ts\n([\s\S]*?)^```$/m.exec(readme.slice(link));
    return m?.[1];
}

describe("README's consumer example is examples/consumer", () => {
    it("README's code block is the file, byte for byte", () => {
        const block = exampleBlock(read("README.md"), EXAMPLE);
        assert.ok(block !== undefined, `README links ${EXAMPLE} and shows it in a \`\`\`ts block`);
        assert.equal(block, read(EXAMPLE), `README's consumer example differs from ${EXAMPLE}: copy the file into the block`);
    });

    it("the block finder sees a difference (the check can fail)", () => {
        const readme = read("README.md");
        const changed = readme.replace("readOneboxOutputs(new pulumi.Config()", "readOneboxOutputs(new pulumi.Config( )");
        assert.notEqual(changed, readme);
        assert.notEqual(exampleBlock(changed, EXAMPLE), read(EXAMPLE));
    });

    it("`npm run typecheck` compiles it (its own tsconfig, \"onebox\" resolved to the library)", () => {
        const pkg = JSON.parse(read("package.json")) as { scripts: Record<string, string> };
        assert.match(pkg.scripts.typecheck, /tsc --noEmit -p examples\/consumer(\s|$)/);
        const tsconfig = JSON.parse(read("examples/consumer/tsconfig.json")) as { include: string[]; compilerOptions: { paths: Record<string, string[]> } };
        assert.deepEqual(tsconfig.include, ["index.ts"]);
        assert.deepEqual(tsconfig.compilerOptions.paths.onebox, ["../../components/index.ts"]);
    });

    it("every setting the program reads is declared in its Pulumi.yaml", () => {
        const project = parse(read("examples/consumer/Pulumi.yaml")) as { name: string; config?: Record<string, unknown> };
        const used = [...read(EXAMPLE).matchAll(/Config\(\)\.(?:require|get)\w*\("([^"]+)"\)/g)].map((m) => m[1]);
        assert.ok(used.length > 0, "the example reads its settings through pulumi.Config");
        for (const key of used) {
            assert.ok(project.config && key in project.config, `examples/consumer/Pulumi.yaml declares config "${key}"`);
        }
    });
});
