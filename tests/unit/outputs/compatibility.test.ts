/**
 * The outputs contract in CI: a change to outputs.schema.json that removes,
 * renames, retypes, narrows or widens a field fails against the released
 * contract (contracts/outputs.v<major>.json) unless the major version is bumped
 * and README's changelog names the break. Pairs of schemas, each built from the
 * real generated schema by one edit, must pass or fail as listed.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { outputsJsonSchema } from "../../../components/outputs/contract";
import { changelogEntry, contractBreaks, judge, majorOf, run, type Break, type SchemaNode } from "../../../scripts/check-outputs-contract";

const ROOT = path.resolve(__dirname, "../../..");
const README = readFileSync(path.join(ROOT, "README.md"), "utf8");

type Json = { [key: string]: Json } & SchemaNode;
const current = () => JSON.parse(outputsJsonSchema()) as Json;
const props = (s: Json, ...at: string[]) => at.reduce((n, k) => n.properties[k], s);

/** Each case: what the edit does, the edit, and the breaks it must report (path, kind). */
const BREAKING: [string, (s: Json) => void, [string, Break["kind"]][]][] = [
    ["a field removed", (s) => delete props(s, "host").properties.sshUser, [["host.sshUser", "removed"]]],
    [
        "a field renamed (same schema under a new name)",
        (s) => {
            const host = props(s, "host");
            host.properties.loginUser = host.properties.sshUser;
            delete host.properties.sshUser;
        },
        [["host.sshUser", "renamed"]],
    ],
    ["a field retyped (number to string)", (s) => (props(s, "host", "sshPort").type = "string" as unknown as Json), [["host.sshPort", "retyped"]]],
    [
        "a field retyped (integer to number widens it)",
        (s) => (props(s, "backups").anyOf[0].properties.retentionDays.type = "number" as unknown as Json),
        [["backups.retentionDays", "retyped"]],
    ],
    [
        "an enum losing a value",
        (s) => (props(s, "host", "provider").enum = ["digitalocean", "lightsail"] as unknown as Json),
        [["host.provider", "narrowed"]],
    ],
    [
        "an enum gaining a value (consumers that switch on it break)",
        (s) => (props(s, "host", "provider").enum = ["digitalocean", "lightsail", "existing", "hetzner"] as unknown as Json),
        [["host.provider", "widened"]],
    ],
    ["a nullable field no longer null", (s) => (props(s, "host").properties.ipv6 = props(s, "host", "ipv6").anyOf[0]), [["host.ipv6", "narrowed"]]],
    [
        "a field becoming nullable",
        (s) => (props(s, "host").properties.sshUser = { anyOf: [{ type: "string" }, { type: "null" }] } as unknown as Json),
        [["host.sshUser", "widened"]],
    ],
    [
        "a required field becoming optional",
        (s) => ((props(s, "environment").required as unknown as string[]).splice(1, 1)),
        [["environment.environment", "widened"]],
    ],
    [
        "a new required field (stacks deployed before it lack it)",
        (s) => {
            props(s, "host").properties.region = { type: "string" } as unknown as Json;
            (props(s, "host").required as unknown as string[]).push("region");
        },
        [["host.region", "narrowed"]],
    ],
    ["a tighter bound", (s) => (props(s, "host", "sshPort").minimum = 1024 as unknown as Json), [["host.sshPort", "changed"]]],
    ["a new pattern", (s) => (props(s, "environment", "app").pattern = "^[a-z]+$" as unknown as Json), [["environment.app", "changed"]]],
    ["an array item field removed", (s) => delete props(s, "urls").items.properties.routes, [["urls[].routes", "removed"]]],
    ["a record's value retyped", (s) => (props(s, "versions", "images").additionalProperties = { type: "number" } as unknown as Json), [["versions.images{}", "retyped"]]],
    ["a constant changed", (s) => (props(s, "database").anyOf[0].properties.sslmode.const = "require" as unknown as Json), [["database.sslmode", "changed"]]],
];

const COMPATIBLE: [string, (s: Json) => void][] = [
    ["nothing changed", () => undefined],
    ["a description changed", (s) => (props(s, "host", "sshUser").description = "Who logs in." as unknown as Json)],
    ["a new optional field", (s) => (props(s, "host").properties.region = { type: "string" } as unknown as Json)],
    ["a new optional top-level object", (s) => (s.properties.monitoring = { anyOf: [{ type: "object", properties: { url: { type: "string" } } }, { type: "null" }] } as unknown as Json)],
    ["enum values reordered", (s) => (props(s, "host", "provider").enum = ["existing", "digitalocean", "lightsail"] as unknown as Json)],
];

function edited(edit: (s: Json) => void): Json {
    const s = current();
    edit(s);
    return s;
}

describe("contractBreaks: schema pairs", () => {
    for (const [what, edit, expected] of BREAKING) {
        it(`breaking: ${what}`, () => {
            const breaks = contractBreaks(current(), edited(edit));
            assert.deepEqual(breaks.map((b) => [b.path, b.kind]), expected);
            assert.equal(judge(current(), edited(edit), README).ok, false);
        });
    }
    for (const [what, edit] of COMPATIBLE) {
        it(`compatible: ${what}`, () => {
            assert.deepEqual(contractBreaks(current(), edited(edit)), []);
            assert.equal(judge(current(), edited(edit), README).ok, true);
        });
    }

    it("the committed baseline is the released v1 and the current schema is compatible with it", () => {
        const baseline = JSON.parse(readFileSync(path.join(ROOT, "contracts/outputs.v1.json"), "utf8")) as SchemaNode;
        assert.equal(majorOf(baseline), 1);
        assert.deepEqual(judge(baseline, current(), README), { ok: true, messages: ["outputs contract v1: compatible with the released contract"] });
    });
});

/** The current schema as major `n` (what bumping OUTPUTS_SCHEMA_VERSION generates). */
function asMajor(s: Json, n: number): Json {
    props(s, "schemaVersion").const = n as unknown as Json;
    return s;
}
const dropSshUser = (s: Json) => delete props(s, "host").properties.sshUser;

describe("a major version bump", () => {
    /** README with one more changelog entry, at the top of its ## Changelog. */
    const readmeWith = (entry: string) => README.replace(/^## Changelog\n/m, `## Changelog\n\n${entry}\n`);

    it("a break with the next major and a changelog entry naming it passes", () => {
        const head = asMajor(edited(dropSshUser), 2);
        const v = judge(current(), head, readmeWith("### Outputs contract v2\n\nBreaking: `host.sshUser` is removed; read the user from the stack's config.\n"));
        assert.equal(v.ok, true, v.messages.join("\n"));
        assert.match(v.messages[0], /v2: a new major version over v1, announced in README's changelog \(1 breaking changes\)/);
    });

    const failing: [string, Json, string, RegExp][] = [
        ["no changelog entry", asMajor(edited(dropSshUser), 2), README, /README\.md has no "### Outputs contract v2" entry[\s\S]*host\.sshUser: removed/],
        [
            "an entry that does not name the broken field",
            asMajor(edited(dropSshUser), 2),
            readmeWith("### Outputs contract v2\n\nBreaking: some fields changed.\n"),
            /must say "breaking" and name every broken field; it does not name:\n {2}host\.sshUser: removed/,
        ],
        [
            "an entry that does not say it breaks",
            asMajor(edited(dropSshUser), 2),
            readmeWith("### Outputs contract v2\n\n`host.sshUser` is gone.\n"),
            /must say "breaking"/,
        ],
        ["skipping a major", asMajor(edited(dropSshUser), 3), readmeWith("### Outputs contract v3\n\nBreaking: `host.sshUser`.\n"), /does not follow the released v1: the next major version is 2/],
    ];
    for (const [what, head, readme, message] of failing) {
        it(`fails: ${what}`, () => {
            const v = judge(current(), head, readme);
            assert.equal(v.ok, false);
            assert.match(v.messages.join("\n"), message);
        });
    }

    it("fails: a break without bumping the major, naming the fix", () => {
        const v = judge(current(), edited(dropSshUser), README);
        assert.equal(v.ok, false);
        assert.match(v.messages.join("\n"), /breaks the released outputs contract v1 \(contracts\/outputs\.v1\.json\):\n {2}host\.sshUser: removed: removed\nKeep the field .* bump OUTPUTS_SCHEMA_VERSION to 2/);
    });

    it("fails: a lower major than the released one", () => {
        const v = judge(asMajor(current(), 2), current(), README);
        assert.equal(v.ok, false);
        assert.match(v.messages[0], /v1 does not follow the released v2/);
    });

    it("changelogEntry reads only the entry of that major inside ## Changelog", () => {
        const readme = "# x\n### Outputs contract v2\noutside\n## Changelog\n### Outputs contract v2\nBreaking: a.b\n### Outputs contract v1\nfirst\n## Next\n";
        assert.equal(changelogEntry(readme, 2), "Breaking: a.b");
        assert.equal(changelogEntry(readme, 1), "first");
        assert.equal(changelogEntry(readme, 3), undefined);
        assert.equal(changelogEntry("# x\n### Outputs contract v2\nBreaking\n", 2), undefined);
    });

    it("README's changelog has the entry of the current major", () => {
        assert.ok(changelogEntry(README, majorOf(current())), "README.md: ## Changelog has no entry for the current outputs contract");
    });
});

describe("the command CI runs (npm run contract:outputs -- --check)", () => {
    const script = path.join(ROOT, "scripts/check-outputs-contract.ts");
    const cli = (...args: string[]) => spawnSync(process.execPath, ["--import", "tsx", script, ...args], { cwd: ROOT, encoding: "utf8" });

    function workspace(head: Json, readme = README): { dir: string; args: string[] } {
        const dir = mkdtempSync(path.join(tmpdir(), "onebox-contract-"));
        mkdirSync(path.join(dir, "contracts"));
        writeFileSync(path.join(dir, "contracts/outputs.v1.json"), outputsJsonSchema());
        writeFileSync(path.join(dir, "outputs.schema.json"), `${JSON.stringify(head, null, 2)}\n`);
        writeFileSync(path.join(dir, "README.md"), readme);
        return { dir, args: ["--schema", path.join(dir, "outputs.schema.json"), "--contracts", path.join(dir, "contracts"), "--readme", path.join(dir, "README.md")] };
    }

    it("passes on the repository's own files", () => {
        const r = cli("--check");
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.stdout, /compatible with the released contract/);
    });

    it("exits 1 on a breaking change and names it", () => {
        const { args } = workspace(edited(dropSshUser));
        const r = cli("--check", ...args);
        assert.equal(r.status, 1);
        assert.match(r.stderr, /host\.sshUser: removed/);
    });

    it("compares against the highest released major", () => {
        const { dir, args } = workspace(asMajor(edited(dropSshUser), 2));
        writeFileSync(path.join(dir, "contracts/outputs.v2.json"), `${JSON.stringify(asMajor(edited(dropSshUser), 2), null, 2)}\n`);
        assert.equal(run(["--check", ...args]), 0);
        writeFileSync(path.join(dir, "outputs.schema.json"), `${JSON.stringify(asMajor(edited((s) => { dropSshUser(s); delete props(s, "host").properties.sshPort; }), 2), null, 2)}\n`);
        assert.equal(run(["--check", ...args]), 1);
    });

    it("--release records the baseline of a new major only when the change is announced", () => {
        const { dir, args } = workspace(asMajor(edited(dropSshUser), 2));
        assert.equal(run(["--release", ...args]), 1);
        writeFileSync(path.join(dir, "README.md"), README.replace(/^## Changelog\n/m, "## Changelog\n\n### Outputs contract v2\n\nBreaking: `host.sshUser` removed.\n"));
        assert.equal(run(["--release", ...args]), 0);
        assert.equal(majorOf(JSON.parse(readFileSync(path.join(dir, "contracts/outputs.v2.json"), "utf8")) as SchemaNode), 2);
    });

    it("fails without any released contract", () => {
        const { dir, args } = workspace(current());
        const r = cli("--check", ...args.map((a) => (a === path.join(dir, "contracts") ? path.join(dir, "none") : a)));
        assert.equal(r.status, 1);
        assert.match(r.stderr, /holds no released contract/);
    });
});
