/**
 * The GitHub Actions workflows: actionlint (built from its Go module by
 * scripts/lint-workflows.sh) accepts the committed ones and rejects broken
 * ones, and the delivery rules hold on the parsed files: actions pinned by
 * commit with their versions in README, least-privilege permissions, one
 * update of a stack at a time, prod behind staging and an approval, previews
 * and deploys with the policy pack for every committed stack. The render diff
 * the pull request comment carries is checked on constructed render outputs.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { parse } from "yaml";

const ROOT = path.resolve(__dirname, "../../..");
const WORKFLOWS = path.join(ROOT, ".github/workflows");
const README = readFileSync(path.join(ROOT, "README.md"), "utf8");

interface Step {
    uses?: string;
    run?: string;
    with?: Record<string, unknown>;
    env?: Record<string, string>;
}
interface Job {
    permissions?: Record<string, string>;
    environment?: string;
    needs?: string | string[];
    concurrency?: { group: string; "cancel-in-progress": boolean };
    strategy?: { matrix: Record<string, unknown[]> };
    steps: Step[];
    if?: string;
}
interface Workflow {
    on: Record<string, unknown>;
    permissions?: Record<string, string>;
    jobs: Record<string, Job>;
}

const files = readdirSync(WORKFLOWS).filter((f) => /\.ya?ml$/.test(f)).sort();
const text = (f: string) => readFileSync(path.join(WORKFLOWS, f), "utf8");
const load = (f: string) => parse(text(f)) as Workflow;
const stacks = readdirSync(ROOT)
    .filter((f) => /^Pulumi\.[a-z0-9-]+\.yaml$/.test(f))
    .map((f) => f.replace(/^Pulumi\.|\.yaml$/g, ""))
    .sort();

function actionlint(...args: string[]) {
    return spawnSync("bash", [path.join(ROOT, "scripts/lint-workflows.sh"), ...args], { cwd: ROOT, encoding: "utf8", timeout: 900_000 });
}

describe("actionlint", () => {
    it("accepts every committed workflow (what npm run lint runs)", () => {
        const r = actionlint();
        assert.equal(r.status, 0, r.stdout + r.stderr);
        assert.match(r.stdout, new RegExp(`actionlint v1\\.7\\.12: ${files.length} workflow\\(s\\) clean`));
        const pkg = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")) as { scripts: Record<string, string> };
        assert.match(pkg.scripts.lint, /bash scripts\/lint-workflows\.sh/);
    });

    const good = `name: t
on: [push]
permissions: {}
jobs:
  a:
    runs-on: ubuntu-24.04
    steps:
      - run: echo ok
`;
    const broken: [string, string, RegExp][] = [
        ["a job needing one that does not exist", good.replace("    runs-on:", "    needs: [nope]\n    runs-on:"), /needs.*nope|job "nope"/i],
        ["an unknown permission scope", good.replace("permissions: {}", "permissions:\n  repo: write"), /unknown permission scope "repo"/],
        ["a syntax error in an expression", good.replace("echo ok", "echo ${{ github.sha "), /expression|unexpected|closed/i],
        ["a pull request title interpolated into a script", good.replace("on: [push]", "on: [pull_request]").replace("echo ok", 'echo "${{ github.event.pull_request.title }}"'), /potentially untrusted/],
        ["a script ShellCheck refuses", good.replace("echo ok", "cd $HOME/x; rm -rf $DIR/*"), /shellcheck reported issue/],
        ["an undefined context property", good.replace("echo ok", "echo ${{ github.no_such_property }}"), /property "no_such_property" is not defined/],
    ];
    for (const [what, workflow, message] of broken) {
        it(`rejects ${what}`, () => {
            const dir = mkdtempSync(path.join(tmpdir(), "onebox-actionlint-"));
            const file = path.join(dir, "broken.yml");
            writeFileSync(file, workflow);
            const r = actionlint(file);
            assert.equal(r.status, 1, r.stdout + r.stderr);
            assert.match(r.stdout + r.stderr, message);
        });
    }

    it("the base of the broken cases is itself clean (each case fails for its own edit)", () => {
        const dir = mkdtempSync(path.join(tmpdir(), "onebox-actionlint-"));
        writeFileSync(path.join(dir, "good.yml"), good);
        const r = actionlint(path.join(dir, "good.yml"));
        assert.equal(r.status, 0, r.stdout + r.stderr);
    });
});

describe("workflow rules", () => {
    it("there is a pull request workflow and a deploy workflow", () => {
        assert.deepEqual(files, ["deploy.yml", "pull-request.yml"]);
    });

    it("every action is pinned by a full commit with its version beside it, and README names each pin", () => {
        let pins = 0;
        for (const f of files) {
            for (const line of text(f).split("\n").filter((l) => /^\s*-?\s*uses:/.test(l))) {
                const m = /uses:\s*([\w.-]+\/[\w.-]+)@([0-9a-f]{40}) # (v\d+\.\d+\.\d+)$/.exec(line);
                assert.ok(m, `${f}: not pinned by commit with "# vX.Y.Z": ${line.trim()}`);
                assert.ok(README.includes(`\`${m[1]}@${m[2]}\``) && README.includes(m[3]), `README does not list ${m[1]}@${m[2]} (${m[3]})`);
                pins++;
            }
        }
        assert.ok(pins >= 10, `only ${pins} uses: lines`);
    });

    it("no workflow runs on pull_request_target (it would hand secrets to a fork's code)", () => {
        for (const f of files) {
            assert.equal(Object.keys(load(f).on).includes("pull_request_target"), false, f);
        }
    });

    it("least privilege: nothing by default, each job lists its own, and only these write", () => {
        const allowedWrites: Record<string, string[]> = {
            "pull-request.yml/render-comment": ["pull-requests"],
            "pull-request.yml/preview": ["id-token", "pull-requests"],
            "deploy.yml/staging": ["id-token"],
            "deploy.yml/prod": ["id-token"],
        };
        for (const f of files) {
            const wf = load(f);
            assert.deepEqual(wf.permissions, {}, `${f}: top-level permissions must be {}`);
            for (const [name, job] of Object.entries(wf.jobs)) {
                assert.ok(job.permissions, `${f}/${name} has no permissions:`);
                const writes = Object.entries(job.permissions).filter(([, v]) => v === "write").map(([k]) => k).sort();
                assert.deepEqual(writes, allowedWrites[`${f}/${name}`] ?? [], `${f}/${name} writes`);
                for (const step of job.steps) {
                    if (step.uses?.startsWith("actions/checkout@")) {
                        assert.equal(step.with?.["persist-credentials"], false, `${f}/${name}: checkout keeps no token on disk`);
                    }
                }
            }
        }
    });

    it("the job that writes to the pull request runs none of its code", () => {
        const job = load("pull-request.yml").jobs["render-comment"];
        assert.deepEqual(job.steps.map((s) => s.uses?.split("@")[0] ?? "run"), ["actions/download-artifact", "run"]);
        assert.doesNotMatch(job.steps[1].run ?? "", /npm|npx|node|bash scripts|\.\//);
        assert.match(job.steps[1].run ?? "", /PATCH[\s\S]*POST/, "updates the earlier comment before adding one");
    });

    it("deploy: staging first, prod after it behind the production environment, one update per stack at a time", () => {
        const wf = load("deploy.yml");
        assert.deepEqual(Object.keys(wf.on).sort(), ["push", "workflow_dispatch"]);
        assert.deepEqual((wf.on.push as { branches: string[] }).branches, ["main"]);
        const { staging, prod } = wf.jobs;
        assert.equal(staging.environment, "staging");
        assert.equal(prod.environment, "production");
        assert.deepEqual([prod.needs].flat(), ["staging"]);
        for (const [stack, job] of [["staging", staging], ["prod", prod]] as const) {
            assert.deepEqual(job.concurrency, { group: `pulumi-stack-${stack}`, "cancel-in-progress": false });
            const pulumi = job.steps.find((s) => s.uses?.startsWith("pulumi/actions@"));
            assert.deepEqual(pulumi?.with && [pulumi.with.command, pulumi.with["stack-name"], pulumi.with.policyPacks], ["up", stack, "policy"]);
            const checkout = job.steps.find((s) => s.uses?.startsWith("actions/checkout@"));
            assert.equal(checkout?.with?.ref, "${{ github.sha }}", "prod deploys exactly the commit staging ran");
        }
        assert.deepEqual(Object.keys(wf.jobs).sort(), stacks, "deploy has one job per committed stack");
    });

    it("pull request: preview with diff, the policy pack and a PR comment for every committed stack, never in a deploy's concurrency group", () => {
        const wf = load("pull-request.yml");
        assert.deepEqual(Object.keys(wf.on), ["pull_request"]);
        const preview = wf.jobs.preview;
        assert.deepEqual([...(preview.strategy?.matrix.stack as string[])].sort(), stacks);
        const pulumi = preview.steps.find((s) => s.uses?.startsWith("pulumi/actions@"));
        assert.deepEqual(
            pulumi?.with && [pulumi.with.command, pulumi.with.diff, pulumi.with.policyPacks, pulumi.with["comment-on-pr"], pulumi.with["edit-pr-comment"]],
            ["preview", true, "policy", true, true],
        );
        // A pending run in a deploy's group would cancel the deploy waiting there.
        assert.doesNotMatch(text("pull-request.yml"), /pulumi-stack-/);
        const checks = wf.jobs.checks.steps.map((s) => s.run).filter(Boolean);
        for (const cmd of ["npm run typecheck", "npm run lint", "npm test", "npm run contract:outputs -- --check"]) {
            assert.ok(checks.includes(cmd), `checks job runs ${cmd}`);
        }
    });

    it("AWS credentials come through OIDC (a role), never stored keys", () => {
        for (const f of files) {
            assert.doesNotMatch(text(f), /aws-access-key-id|aws-secret-access-key|AWS_SECRET_ACCESS_KEY/, f);
            for (const job of Object.values(load(f).jobs)) {
                const aws = job.steps.find((s) => s.uses?.startsWith("aws-actions/configure-aws-credentials@"));
                if (aws) {
                    assert.equal(aws.with?.["role-to-assume"], "${{ vars.AWS_ROLE_ARN }}");
                    assert.equal(job.permissions?.["id-token"], "write");
                }
            }
        }
    });
});

describe("the render diff of the pull request comment (scripts/ci/render-diff.sh)", () => {
    function renders(files: Record<string, string>): string {
        const dir = mkdtempSync(path.join(tmpdir(), "onebox-render-"));
        for (const [rel, content] of Object.entries(files)) {
            mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
            writeFileSync(path.join(dir, rel), content);
        }
        return dir;
    }
    const diff = (base: string, head: string, env: Record<string, string> = {}) =>
        spawnSync("bash", [path.join(ROOT, "scripts/ci/render-diff.sh"), base, head], { encoding: "utf8", env: { ...process.env, ...env } });

    it("names each stack: changed files as a diff without file times, unchanged, new, invalid", () => {
        const base = renders({ "prod/deploy/Caddyfile": "a\nb\n", "prod/steps.json": "{}\n", "staging/steps.json": "{}\n", "qa/steps.json": "{}\n" });
        const head = renders({ "prod/deploy/Caddyfile": "a\nc\n", "prod/steps.json": "{}\n", "staging/steps.json": "{}\n", "demo/steps.json": "{}\n", "qa.error": "host.size: unknown size\n" });
        const r = diff(base, head);
        assert.equal(r.status, 0, r.stderr);
        const out = r.stdout;
        assert.equal(out.split("\n")[0], "<!-- onebox-render-diff -->");
        assert.match(out, /### prod: 1 file\(s\) change\n\n```diff\ndiff -ruN a\/deploy\/Caddyfile b\/deploy\/Caddyfile\n--- a\/deploy\/Caddyfile\n\+\+\+ b\/deploy\/Caddyfile\n@@ -1,2 \+1,2 @@\n a\n-b\n\+c\n```/);
        assert.match(out, /### staging: no change/);
        assert.match(out, /### demo: 1 file\(s\) change/);
        assert.match(out, /### qa: the configuration does not validate\n\n```\nhost\.size: unknown size\n```/);
        assert.match(out, /3 of 4 stack\(s\) change\.\n$/);
        assert.ok(!out.includes(base) && !out.includes(head), "no temporary paths in the comment");
    });

    it("two renders of unchanged stacks say so and nothing else", () => {
        const files = { "prod/steps.json": "{}\n", "prod/deploy/compose.yaml": "services: {}\n" };
        const r = diff(renders(files), renders(files));
        assert.equal(r.status, 0, r.stderr);
        assert.doesNotMatch(r.stdout, /```diff/);
        assert.match(r.stdout, /0 of 1 stack\(s\) change/);
    });

    it("a diff longer than the budget is cut and says so (GitHub refuses comments over 65536 characters)", () => {
        const long = Array.from({ length: 400 }, (_, i) => `line ${i}`).join("\n");
        const r = diff(renders({ "prod/f": "x\n" }), renders({ "prod/f": `${long}\n` }), { ONEBOX_MAX_DIFF_CHARS: "500" });
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.stdout, /Diff cut at 500 characters/);
        assert.ok(r.stdout.length < 1500, `${r.stdout.length} characters`);
    });

    it("render-stacks.sh renders every committed stack with one release directory name, and keeps an invalid stack's problems", () => {
        const tree = mkdtempSync(path.join(tmpdir(), "onebox-tree-"));
        for (const entry of ["scripts", "components", "package.json", "tsconfig.json", "node_modules", "tests"]) {
            spawnSync("ln", ["-s", path.join(ROOT, entry), path.join(tree, entry)]);
        }
        writeFileSync(path.join(tree, "Pulumi.yaml"), readFileSync(path.join(ROOT, "Pulumi.yaml")));
        writeFileSync(path.join(tree, "Pulumi.prod.yaml"), readFileSync(path.join(ROOT, "Pulumi.prod.yaml")));
        writeFileSync(path.join(tree, "Pulumi.broken.yaml"), readFileSync(path.join(ROOT, "Pulumi.prod.yaml"), "utf8").replace("size: s-1vcpu-1gb", "size: s-huge"));
        const out = path.join(tree, "out");
        const r = spawnSync("bash", [path.join(ROOT, "scripts/ci/render-stacks.sh"), tree, out], { encoding: "utf8", timeout: 600_000 });
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.stdout, /did not render broken[\s\S]*rendered prod\n2 stack\(s\)/);
        assert.deepEqual(readdirSync(path.join(out, "prod/deploy/srv/onebox/finances-prod/releases")), ["RELEASE"]);
        assert.match(readFileSync(path.join(out, "broken.error"), "utf8"), /host\.size/);
    });
});
