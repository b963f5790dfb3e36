/**
 * docs/RUNBOOK.md is generated from the step list (scripts/generate-runbook.ts,
 * `npm run docs:runbook`): the committed file must be exactly what the
 * generator writes, its steps must be buildSteps' steps in buildSteps' order,
 * and every URN it tells an operator to replace must be one the program
 * registers (the committed URN lists, which tests/unit/program/urns.test.ts
 * keeps equal to the program's).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { loadHostScripts } from "../../../components/provisioning/host-scripts";
import { STEP_NAMES } from "../../../components/provisioning/steps";
import { DEFAULT_RUNBOOK_FILE, renderRunbook, run, stepUrn } from "../../../scripts/generate-runbook";

const ROOT = path.resolve(__dirname, "../../..");
const URN_DIR = path.join(ROOT, "tests/unit/program/urns");
const generated = renderRunbook();

/** Every URN of the committed lists, as the runbook writes them. */
function programUrns(): Set<string> {
    const urns = fs.readdirSync(URN_DIR).flatMap((f) => fs.readFileSync(path.join(URN_DIR, f), "utf8").split("\n"));
    return new Set(urns.filter((u) => u.startsWith("urn:")).map((u) => u.replace(/^urn:pulumi:test::onebox::/, "urn:pulumi:<stack>::<project>::")));
}

function quiet<T>(f: () => T): T {
    const log = console.log;
    const error = console.error;
    console.log = () => undefined;
    console.error = () => undefined;
    try {
        return f();
    } finally {
        console.log = log;
        console.error = error;
    }
}

describe("docs/RUNBOOK.md: generated from the step list, checked for drift", () => {
    it("the committed runbook is what `npm run docs:runbook` writes", () => {
        const committed = fs.readFileSync(DEFAULT_RUNBOOK_FILE, "utf8");
        assert.equal(committed, generated, "docs/RUNBOOK.md is out of date: run `npm run docs:runbook` and commit it");
    });

    it("--check fails on a stale file and passes once it is written", () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "onebox-runbook-"));
        try {
            const file = path.join(dir, "RUNBOOK.md");
            assert.equal(quiet(() => run(["--check", "--file", file])), 1, "a missing file fails");
            fs.writeFileSync(file, generated.replace("## Roll back a release", "## Roll back"));
            assert.equal(quiet(() => run(["--check", "--file", file])), 1, "an edited file fails");
            assert.equal(quiet(() => run(["--file", file])), 0);
            assert.equal(quiet(() => run(["--check", "--file", file])), 0);
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });

    it("lists every step, numbered in the step list's order", () => {
        const sections = [...generated.matchAll(/^### (\d+)\. `([a-z-]+)`$/gm)].map((m) => [Number(m[1]), m[2]] as const);
        assert.deepEqual(
            sections.map(([, n]) => n),
            [...STEP_NAMES],
        );
        assert.deepEqual(
            sections.map(([i]) => i),
            STEP_NAMES.map((_, i) => i + 1),
        );
        const table = [...generated.matchAll(/^\| (\d+) \| `([a-z-]+)` \|/gm)].map((m) => m[2]);
        assert.deepEqual(table, [...STEP_NAMES]);
    });

    it("follows the code: a file added to the bootstrap appears in its step, with its mode", () => {
        const scripts = loadHostScripts();
        const changed = renderRunbook({ ...scripts, bootstrap: { ...scripts.bootstrap, "zz-extra.conf": "x=1\n" } });
        assert.doesNotMatch(generated, /zz-extra\.conf/);
        const bootstrap = changed.slice(changed.indexOf("### 2. `bootstrap`"), changed.indexOf("### 3. `secrets`"));
        assert.match(bootstrap, /^\| `\/usr\/local\/lib\/onebox\/zz-extra\.conf` \| 0644 \| root:root \|$/m);
    });

    it("every URN it names is one the program registers (or the upload step's)", () => {
        const known = programUrns();
        const named = [...new Set([...generated.matchAll(/urn:pulumi:[^\s'`]+/g)].map((m) => m[0]))];
        assert.ok(named.length >= STEP_NAMES.length + 4, `the runbook names URNs (${named.length})`);
        const uploadStep = stepUrn({ name: "images", upload: { images: [] } });
        const unknown = named.filter((u) => !known.has(u) && u !== uploadStep);
        assert.deepEqual(unknown, []);
        for (const name of STEP_NAMES.filter((n) => n !== "images")) {
            assert.ok(known.has(stepUrn({ name })), `the program registers ${stepUrn({ name })}`);
        }
    });

    it("a step that holds secrets is never offered for a run by hand (its render is masked)", () => {
        for (const name of ["secrets", "backup"]) {
            const at = generated.search(new RegExp(`^### \\d+\\. \`${name}\`$`, "m"));
            assert.ok(at > 0, `the ${name} step has a section`);
            const end = generated.slice(at + 1).search(/\n##+ /);
            const section = generated.slice(at, end < 0 ? undefined : at + 1 + end);
            assert.match(section, /Not by hand/);
            assert.doesNotMatch(section, /stdin\.sh/);
        }
    });
});
