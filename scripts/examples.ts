/**
 * The maintained examples (examples/<NNN-name>/, one per plan of DEPLOYMENTS.md):
 * where their stack files are, which secrets each README tells the user to set,
 * and the stack file "as set up", with a `secure:` stand-in for each of those
 * secrets, so that the render and the tests see what `pulumi config set --secret`
 * would leave in the file (without any value):
 *
 *   tsx scripts/examples.ts --out DIR    writes DIR/<example>/Pulumi.<stack>.yaml
 *
 * tests/render/validate-render.sh renders and validates those copies like the
 * repository's own stack files; tests/unit/examples/plans.test.ts runs them.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { parseDocument } from "yaml";
import { CONFIG_NAMESPACE } from "../components/config/load";

export const ROOT = path.resolve(__dirname, "..");
export const EXAMPLES_DIR = path.join(ROOT, "examples");

export interface ExampleStack {
    /** Directory name, e.g. "003-intentional-social". */
    readonly example: string;
    /** Absolute directory of the example. */
    readonly dir: string;
    /** Stack name, from Pulumi.<stack>.yaml. */
    readonly stack: string;
    /** Absolute path of the stack file. */
    readonly file: string;
}

/** Every examples/<NNN-name>/Pulumi.<stack>.yaml, sorted. */
export function exampleStacks(examplesDir = EXAMPLES_DIR): ExampleStack[] {
    const out: ExampleStack[] = [];
    for (const example of fs.readdirSync(examplesDir).filter((d) => /^\d{3}-[a-z0-9-]+$/.test(d)).sort()) {
        const dir = path.join(examplesDir, example);
        for (const f of fs.readdirSync(dir).filter((n) => /^Pulumi\.[a-z0-9-]+\.yaml$/.test(n)).sort()) {
            out.push({ example, dir, stack: f.replace(/^Pulumi\.|\.yaml$/g, ""), file: path.join(dir, f) });
        }
    }
    return out;
}

/** What an example's README tells the user to set with `pulumi config set --secret`. */
export interface ReadmeSecrets {
    /** Names under `secrets.` (`--path 'secrets.NAME'`). */
    readonly names: string[];
    /** Whether `sshPrivateKey` is set (existing servers). */
    readonly sshPrivateKey: boolean;
}

/** The onebox secrets a README's `pulumi config set --secret ...` lines set (other namespaces, e.g. `digitalocean:token`, are not the program's). */
export function readmeSecrets(readme: string): ReadmeSecrets {
    const names = new Set<string>();
    let sshPrivateKey = false;
    for (const line of readme.split("\n")) {
        // A command line of its own; optional ones are shown commented out (`# pulumi config set ...`).
        if (!/^\s*pulumi config set\b.*--secret\b/.test(line)) continue;
        const named = /--path\s+['"]?secrets\.([A-Z][A-Z0-9_]*)['"]?/.exec(line);
        if (named) names.add(named[1]);
        if (/--secret\s+(?:onebox:)?sshPrivateKey\b/.test(line)) sshPrivateKey = true;
    }
    return { names: [...names].sort(), sshPrivateKey };
}

/** Stand-in ciphertext: what `pulumi config set --secret` leaves in the file, minus any real value. */
export const SECURE_STAND_IN = "v1:c3RhbmQtaW4tZm9yLWFuLWVuY3J5cHRlZC12YWx1ZQ==";

/**
 * The stack file's text with a `secure:` entry for each secret (as `pulumi config
 * set --secret` would add it). Refuses a file that already holds secrets: the
 * examples keep them out, the README lists the commands.
 */
export function setUpStackText(text: string, secrets: ReadmeSecrets, file = "stack file"): string {
    const doc = parseDocument(text);
    const secretsKey = `${CONFIG_NAMESPACE}:secrets`;
    const keyKey = `${CONFIG_NAMESPACE}:sshPrivateKey`;
    for (const key of [secretsKey, keyKey]) {
        if (doc.hasIn(["config", key])) {
            throw new Error(`${file}: ${key} is in the example's stack file; list a \`pulumi config set --secret\` command in its README instead`);
        }
    }
    if (secrets.names.length > 0) {
        doc.setIn(["config", secretsKey], Object.fromEntries(secrets.names.map((n) => [n, { secure: SECURE_STAND_IN }])));
    }
    if (secrets.sshPrivateKey) {
        doc.setIn(["config", keyKey], { secure: SECURE_STAND_IN });
    }
    return doc.toString();
}

/** The set-up text of one example stack (its README's secrets added). */
export function setUpExample(stack: ExampleStack): string {
    const readme = fs.readFileSync(path.join(stack.dir, "README.md"), "utf8");
    return setUpStackText(fs.readFileSync(stack.file, "utf8"), readmeSecrets(readme), path.relative(ROOT, stack.file));
}

export function main(argv: string[]): number {
    const { values } = parseArgs({ args: argv, options: { out: { type: "string" } }, strict: true });
    if (!values.out) {
        process.stderr.write("usage: tsx scripts/examples.ts --out DIR\n");
        return 1;
    }
    for (const s of exampleStacks()) {
        const target = path.join(values.out, s.example, path.basename(s.file));
        fs.mkdirSync(path.dirname(target), { recursive: true });
        fs.writeFileSync(target, setUpExample(s));
        process.stdout.write(`${path.relative(ROOT, s.file)} -> ${target}\n`);
    }
    return 0;
}

if (require.main === module) {
    try {
        process.exitCode = main(process.argv.slice(2));
    } catch (e) {
        process.stderr.write(`examples: ${(e as Error).message}\n`);
        process.exitCode = 1;
    }
}
