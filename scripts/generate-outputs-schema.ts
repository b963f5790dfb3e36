/**
 * Writes outputs.schema.json (the JSON Schema of the `onebox` stack output)
 * from the zod contract in components/outputs/contract.ts.
 *
 *   tsx scripts/generate-outputs-schema.ts            # write the file
 *   tsx scripts/generate-outputs-schema.ts --check    # exit 1 if the committed file is stale (CI)
 *   ... [--file <path>]                               # another file (tests)
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { outputsJsonSchema } from "../components/outputs/contract";

export const DEFAULT_SCHEMA_FILE = path.resolve(__dirname, "..", "outputs.schema.json");

/** Runs the command; returns the process exit code. */
export function run(argv: string[]): number {
    const check = argv.includes("--check");
    const fileIndex = argv.indexOf("--file");
    const file = fileIndex >= 0 && argv[fileIndex + 1] ? path.resolve(argv[fileIndex + 1]) : DEFAULT_SCHEMA_FILE;
    const expected = outputsJsonSchema();
    if (check) {
        const actual = existsSync(file) ? readFileSync(file, "utf8") : undefined;
        if (actual !== expected) {
            console.error(`${path.relative(process.cwd(), file) || file} is ${actual === undefined ? "missing" : "out of date"}; run \`npm run schema:outputs\` and commit the result`);
            return 1;
        }
        console.log(`${path.relative(process.cwd(), file) || file} is up to date`);
        return 0;
    }
    writeFileSync(file, expected);
    console.log(`wrote ${path.relative(process.cwd(), file) || file}`);
    return 0;
}

if (require.main === module) {
    process.exitCode = run(process.argv.slice(2));
}
