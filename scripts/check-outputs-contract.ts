/**
 * Guards the outputs contract other teams build on: compares outputs.schema.json
 * with the last released contract (`contracts/outputs.v<major>.json`, the
 * highest major committed) and fails on any change a reader of the `onebox`
 * output could trip over, unless the contract's major version is bumped and
 * README's changelog describes the break.
 *
 *   tsx scripts/check-outputs-contract.ts --check      # CI: exit 1 on an unannounced break
 *   tsx scripts/check-outputs-contract.ts --release    # after a compatible check: the current
 *                                                      # schema becomes the baseline of its major
 *   ... [--schema <file>] [--contracts <dir>] [--readme <file>]   # other files (tests)
 *
 * Both directions of a change break someone. A value the new schema accepts and
 * the old one did not (an enum gaining a value, a field becoming nullable or
 * optional) breaks consumers written against the old one; a value the old schema
 * accepted and the new one refuses (an enum losing a value, a new pattern, a new
 * required field) breaks the typed reader on stacks deployed before the change,
 * since `readOneboxOutputs` validates with the current schema. So within one
 * major version the only compatible changes are new optional properties and
 * new or changed descriptions.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";

const ROOT = path.resolve(__dirname, "..");

/** A JSON Schema node as zod emits it (draft 2020-12 subset). */
export type SchemaNode = { [key: string]: unknown };

/** One incompatible difference, at a dotted path (`[]` for array items, `{}` for record values). */
export interface Break {
    readonly path: string;
    readonly kind: "removed" | "renamed" | "retyped" | "narrowed" | "widened" | "changed";
    readonly detail: string;
}

/** Keywords that document and never constrain a value. */
const ANNOTATIONS = new Set(["description", "title", "$schema", "$comment", "examples", "deprecated"]);
/** Keywords compared by their own rules below; any other keyword is compared as a whole. */
const STRUCTURAL = new Set(["type", "anyOf", "properties", "required", "items", "additionalProperties", "propertyNames", "enum", "const"]);

function isNode(v: unknown): v is SchemaNode {
    return v !== null && typeof v === "object" && !Array.isArray(v);
}

/** Canonical JSON of a schema without its annotations (for equality and rename detection). */
export function canonical(node: unknown): string {
    const strip = (v: unknown): unknown => {
        if (Array.isArray(v)) {
            return v.map(strip);
        }
        if (isNode(v)) {
            return Object.fromEntries(
                Object.keys(v)
                    .filter((k) => !ANNOTATIONS.has(k))
                    .sort()
                    .map((k) => [k, k === "required" || k === "enum" ? [...(v[k] as unknown[])].map(String).sort() : strip(v[k])]),
            );
        }
        return v;
    };
    return JSON.stringify(strip(node));
}

/** The alternatives of a node: the branches of an `anyOf`, or the node itself. */
function alternatives(node: SchemaNode): SchemaNode[] {
    return Array.isArray(node.anyOf) ? (node.anyOf as unknown[]).filter(isNode).flatMap(alternatives) : [node];
}

/** What an alternative is, for pairing the branches of two `anyOf`s. */
function kindOf(node: SchemaNode): string {
    if (node.const !== undefined) {
        return typeof node.type === "string" ? node.type : typeof node.const;
    }
    return typeof node.type === "string" ? node.type : Array.isArray(node.type) ? (node.type as string[]).join("|") : "any";
}

function show(v: unknown): string {
    return v === undefined ? "(none)" : JSON.stringify(v);
}

/** Every incompatible difference between the released schema and the new one. */
export function contractBreaks(base: SchemaNode, head: SchemaNode, at = ""): Break[] {
    const where = at || "(root)";
    const baseAlts = alternatives(base);
    const headAlts = alternatives(head);
    if (baseAlts.length > 1 || headAlts.length > 1) {
        const breaks: Break[] = [];
        const headByKind = new Map(headAlts.map((a) => [kindOf(a), a]));
        const baseKinds = new Set(baseAlts.map(kindOf));
        for (const b of baseAlts) {
            const h = headByKind.get(kindOf(b));
            if (h) {
                breaks.push(...contractBreaks(b, h, at));
            } else {
                breaks.push({ path: where, kind: kindOf(b) === "null" ? "narrowed" : "retyped", detail: `no longer accepts ${kindOf(b)}` });
            }
        }
        for (const h of headAlts) {
            if (!baseKinds.has(kindOf(h))) {
                breaks.push({ path: where, kind: kindOf(h) === "null" ? "widened" : "retyped", detail: `now also ${kindOf(h)}` });
            }
        }
        return breaks;
    }
    if (kindOf(base) !== kindOf(head)) {
        return [{ path: where, kind: "retyped", detail: `type ${kindOf(base)} became ${kindOf(head)}` }];
    }
    const breaks: Break[] = [];
    breaks.push(...objectBreaks(base, head, at));
    if (isNode(base.items) || isNode(head.items)) {
        breaks.push(...pairBreaks(base.items, head.items, `${at}[]`));
    }
    if (isNode(base.additionalProperties) || isNode(head.additionalProperties)) {
        breaks.push(...pairBreaks(base.additionalProperties, head.additionalProperties, `${at}{}`));
    } else if (base.additionalProperties !== head.additionalProperties) {
        breaks.push({ path: where, kind: "changed", detail: `additionalProperties ${show(base.additionalProperties)} became ${show(head.additionalProperties)}` });
    }
    if (isNode(base.propertyNames) || isNode(head.propertyNames)) {
        breaks.push(...pairBreaks(base.propertyNames, head.propertyNames, `${at}{key}`));
    }
    breaks.push(...enumBreaks(base, head, where));
    const keys = new Set([...Object.keys(base), ...Object.keys(head)].filter((k) => !ANNOTATIONS.has(k) && !STRUCTURAL.has(k)));
    for (const k of [...keys].sort()) {
        if (canonical(base[k]) !== canonical(head[k])) {
            breaks.push({ path: where, kind: "changed", detail: `${k} ${show(base[k])} became ${show(head[k])}` });
        }
    }
    return breaks;
}

function pairBreaks(base: unknown, head: unknown, at: string): Break[] {
    if (!isNode(base) || !isNode(head)) {
        return [{ path: at, kind: isNode(base) ? "removed" : "changed", detail: isNode(base) ? "no longer described" : "newly constrained" }];
    }
    return contractBreaks(base, head, at);
}

function enumBreaks(base: SchemaNode, head: SchemaNode, where: string): Break[] {
    const breaks: Break[] = [];
    if (base.const !== undefined || head.const !== undefined) {
        if (canonical(base.const) !== canonical(head.const)) {
            breaks.push({ path: where, kind: "changed", detail: `constant ${show(base.const)} became ${show(head.const)}` });
        }
    }
    const b = Array.isArray(base.enum) ? (base.enum as unknown[]).map((v) => JSON.stringify(v)) : undefined;
    const h = Array.isArray(head.enum) ? (head.enum as unknown[]).map((v) => JSON.stringify(v)) : undefined;
    if (b && h) {
        for (const v of b.filter((x) => !h.includes(x))) {
            breaks.push({ path: where, kind: "narrowed", detail: `enum lost ${v} (stacks deployed before publish it)` });
        }
        for (const v of h.filter((x) => !b.includes(x))) {
            breaks.push({ path: where, kind: "widened", detail: `enum gained ${v} (consumers that handle each value do not know it)` });
        }
    } else if (b || h) {
        breaks.push({ path: where, kind: b ? "widened" : "narrowed", detail: b ? "no longer an enum" : "became an enum" });
    }
    return breaks;
}

function objectBreaks(base: SchemaNode, head: SchemaNode, at: string): Break[] {
    const bProps = isNode(base.properties) ? base.properties : {};
    const hProps = isNode(head.properties) ? head.properties : {};
    const bReq = new Set(Array.isArray(base.required) ? (base.required as string[]) : []);
    const hReq = new Set(Array.isArray(head.required) ? (head.required as string[]) : []);
    const join = (k: string) => (at ? `${at}.${k}` : k);
    const breaks: Break[] = [];
    const removed = Object.keys(bProps).filter((k) => !(k in hProps));
    const added = Object.keys(hProps).filter((k) => !(k in bProps));
    for (const k of removed) {
        const twin = added.find((a) => canonical(hProps[a]) === canonical(bProps[k]));
        breaks.push(
            twin
                ? { path: join(k), kind: "renamed", detail: `renamed to ${join(twin)}` }
                : { path: join(k), kind: "removed", detail: "removed" },
        );
    }
    for (const k of added) {
        if (hReq.has(k)) {
            breaks.push({ path: join(k), kind: "narrowed", detail: "new required field (stacks deployed before it lack it; add it as optional)" });
        }
    }
    for (const k of Object.keys(bProps).filter((x) => x in hProps)) {
        if (bReq.has(k) && !hReq.has(k)) {
            breaks.push({ path: join(k), kind: "widened", detail: "became optional" });
        } else if (!bReq.has(k) && hReq.has(k)) {
            breaks.push({ path: join(k), kind: "narrowed", detail: "became required" });
        }
        const b = bProps[k];
        const h = hProps[k];
        if (isNode(b) && isNode(h)) {
            breaks.push(...contractBreaks(b, h, join(k)));
        }
    }
    return breaks;
}

/** The contract's major version: `properties.schemaVersion.const`. */
export function majorOf(schema: SchemaNode): number {
    const props = isNode(schema.properties) ? schema.properties : {};
    const sv = props.schemaVersion;
    const v = isNode(sv) ? sv.const : undefined;
    if (typeof v !== "number" || !Number.isInteger(v) || v < 1) {
        throw new Error("the schema has no integer properties.schemaVersion.const; is it the onebox outputs schema?");
    }
    return v;
}

/**
 * The body of README's changelog entry for a contract major version: the text
 * under a heading `### Outputs contract v<major>` inside `## Changelog`, up to
 * the next heading. Undefined when there is none.
 */
export function changelogEntry(readme: string, major: number): string | undefined {
    const lines = readme.split("\n");
    const start = lines.findIndex((l) => /^## Changelog\s*$/.test(l));
    if (start < 0) {
        return undefined;
    }
    const end = lines.findIndex((l, i) => i > start && /^## /.test(l));
    const section = lines.slice(start + 1, end < 0 ? undefined : end);
    const heading = section.findIndex((l) => new RegExp(`^### Outputs contract v${major}\\b`).test(l));
    if (heading < 0) {
        return undefined;
    }
    const next = section.findIndex((l, i) => i > heading && /^#{1,3} /.test(l));
    return section.slice(heading + 1, next < 0 ? undefined : next).join("\n");
}

/** Committed baselines, `contracts/outputs.v<major>.json`, by major. */
export function baselines(dir: string): Map<number, string> {
    const found = new Map<number, string>();
    if (!existsSync(dir)) {
        return found;
    }
    for (const f of readdirSync(dir)) {
        const m = /^outputs\.v([1-9][0-9]*)\.json$/.exec(f);
        if (m) {
            found.set(Number(m[1]), path.join(dir, f));
        }
    }
    return found;
}

export interface Verdict {
    readonly ok: boolean;
    readonly messages: string[];
}

const describeBreak = (b: Break) => `  ${b.path}: ${b.kind}: ${b.detail}`;

/**
 * The whole rule. `base` is the last released contract. Same major: no break
 * allowed. The next major: breaks allowed when README's changelog has an entry
 * for it that says "breaking" and names every broken field's path. Any other
 * major: refused.
 */
export function judge(base: SchemaNode, head: SchemaNode, readme: string): Verdict {
    const baseMajor = majorOf(base);
    const headMajor = majorOf(head);
    if (headMajor === baseMajor) {
        const breaks = contractBreaks(base, head);
        if (breaks.length === 0) {
            return { ok: true, messages: [`outputs contract v${headMajor}: compatible with the released contract`] };
        }
        return {
            ok: false,
            messages: [
                `outputs.schema.json breaks the released outputs contract v${baseMajor} (contracts/outputs.v${baseMajor}.json):`,
                ...breaks.map(describeBreak),
                `Keep the field (add new ones as optional), or bump OUTPUTS_SCHEMA_VERSION to ${baseMajor + 1} in components/outputs/contract.ts ` +
                    `and add "### Outputs contract v${baseMajor + 1}" under "## Changelog" in README.md saying what breaks.`,
            ],
        };
    }
    if (headMajor !== baseMajor + 1) {
        return {
            ok: false,
            messages: [`outputs contract v${headMajor} does not follow the released v${baseMajor}: the next major version is ${baseMajor + 1}`],
        };
    }
    const breaks = contractBreaks(base, head).filter((b) => b.path !== "schemaVersion");
    const entry = changelogEntry(readme, headMajor);
    if (entry === undefined) {
        return {
            ok: false,
            messages: [
                `outputs contract v${headMajor}: README.md has no "### Outputs contract v${headMajor}" entry under "## Changelog"; ` +
                    `consumers need to know what breaks:`,
                ...breaks.map(describeBreak),
            ],
        };
    }
    const unnamed = breaks.filter((b) => !entry.includes(b.path));
    if (!/\bbreaking\b/i.test(entry) || unnamed.length > 0) {
        return {
            ok: false,
            messages: [
                `outputs contract v${headMajor}: README's changelog entry must say "breaking" and name every broken field${unnamed.length > 0 ? "; it does not name:" : ""}`,
                ...unnamed.map(describeBreak),
            ],
        };
    }
    return { ok: true, messages: [`outputs contract v${headMajor}: a new major version over v${baseMajor}, announced in README's changelog (${breaks.length} breaking changes)`] };
}

function readJson(file: string): SchemaNode {
    const v = JSON.parse(readFileSync(file, "utf8")) as unknown;
    if (!isNode(v)) {
        throw new Error(`${file}: not a JSON object`);
    }
    return v;
}

/** Runs the command; returns the process exit code. */
export function run(argv: string[]): number {
    const opt = (name: string, fallback: string) => {
        const i = argv.indexOf(name);
        return i >= 0 && argv[i + 1] ? path.resolve(argv[i + 1]) : fallback;
    };
    const schemaFile = opt("--schema", path.join(ROOT, "outputs.schema.json"));
    const contractsDir = opt("--contracts", path.join(ROOT, "contracts"));
    const readmeFile = opt("--readme", path.join(ROOT, "README.md"));
    const release = argv.includes("--release");
    if (!release && !argv.includes("--check")) {
        console.error("usage: check-outputs-contract.ts --check | --release [--schema f] [--contracts dir] [--readme f]");
        return 2;
    }
    const head = readJson(schemaFile);
    const found = baselines(contractsDir);
    if (found.size === 0) {
        console.error(`${contractsDir} holds no released contract (outputs.v<major>.json); run with --release to record the first`);
        if (!release) {
            return 1;
        }
    }
    const lastMajor = Math.max(0, ...found.keys());
    if (lastMajor > 0) {
        const verdict = judge(readJson(found.get(lastMajor) as string), head, readFileSync(readmeFile, "utf8"));
        for (const m of verdict.messages) {
            (verdict.ok ? console.log : console.error)(m);
        }
        if (!verdict.ok) {
            return 1;
        }
    }
    if (release) {
        const target = path.join(contractsDir, `outputs.v${majorOf(head)}.json`);
        mkdirSync(contractsDir, { recursive: true });
        writeFileSync(target, readFileSync(schemaFile, "utf8"));
        console.log(`released ${path.relative(process.cwd(), target) || target}`);
    }
    return 0;
}

if (require.main === module) {
    process.exitCode = run(process.argv.slice(2));
}
