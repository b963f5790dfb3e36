/**
 * Writes docs/RUNBOOK.md: what runs where and in what order, how to re-run a
 * step, roll back, restore, rotate a secret and replace the server. The step
 * list, its order, hosts, users, locks, files, commands and every URN come
 * from the code itself: `buildSteps` on the committed production stack file
 * (plus the variants that add or change steps), the provisioner's triggers,
 * the systemd units it installs, and the committed URN lists that
 * tests/unit/program/urns.test.ts checks against the program. The prose
 * between them is written here.
 *
 *   tsx scripts/generate-runbook.ts            # write docs/RUNBOOK.md
 *   tsx scripts/generate-runbook.ts --check    # exit 1 if the committed file is stale (CI)
 *   ... [--file <path>]                        # another file (tests)
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import * as command from "@pulumi/command";
import { provisioningConfig, validateConfig, type RawConfig } from "../components/config/load";
import { planOf } from "../components/config/plan";
import { providerFactsOf, type StackConfig } from "../components/config/schema";
import { ALSO_TRIGGERED_BY, HOST_PROVISIONER_TYPE } from "../components/provisioning/host-provisioner";
import { defaultScriptsDir, loadHostScripts, UPLOAD_IMAGES_SCRIPT, type HostScripts } from "../components/provisioning/host-scripts";
import { appPaths, BACKUP_LIB_DIR, DEPLOY_SCRIPT, LAYOUT_SCRIPT } from "../components/provisioning/paths";
import { renderBackupUnits } from "../components/provisioning/render/systemd";
import { buildSteps, remoteCommand, renderRelease, STACK_LOCK_WAIT_SECONDS, type Step, type StepName } from "../components/provisioning/steps";
import { rawConfigFromStackFile } from "./render";

const ROOT = path.resolve(__dirname, "..");
export const DEFAULT_RUNBOOK_FILE = path.join(ROOT, "docs", "RUNBOOK.md");
/** The stack file whose steps the runbook lists. */
export const RUNBOOK_STACK_FILE = "Pulumi.prod.yaml";
/** The HostProvisioner's name in index.ts; tests check the URNs built with it against the program's. */
export const PROVISIONER_NAME = "provision";
/** Committed URN lists (tests/unit/program/urns.test.ts keeps them equal to the program's). */
const URN_LISTS = { digitalocean: "tests/unit/program/urns/digitalocean.txt", lightsail: "tests/unit/program/urns/lightsail.txt", prod: "tests/unit/program/urns/Pulumi.prod.yaml.txt" };
/** Stands in for Cloudflare's ranges: the step list's shape and file paths do not depend on them. */
const WEB_SOURCES_STAND_IN = { ipv4: ["192.0.2.0/24"], ipv6: [] as string[] };
const RELEASE = "<release>";

const pulumiType = (c: unknown): string => (c as { __pulumiType: string }).__pulumiType;

/** A variant of the production stack that changes the step list. */
interface Variant {
    label: string;
    change: (raw: RawConfig) => RawConfig;
}

const VARIANTS: Variant[] = [
    { label: `${RUNBOOK_STACK_FILE} as committed`, change: (raw) => raw },
    { label: "`deploy.imageSource: upload`", change: (raw) => ({ ...raw, deploy: { ...(raw.deploy as object | undefined), imageSource: "upload" } }) },
    { label: "`backups.enabled: false`", change: (raw) => ({ ...raw, backups: { ...(raw.backups as object | undefined), enabled: false } }) },
];

interface StackSteps {
    config: StackConfig;
    steps: Step[];
    releaseId: string;
    sshUser: string;
    dataPath: string;
}

function stepsOf(raw: RawConfig, scripts: HostScripts): StackSteps {
    const { config } = validateConfig(raw);
    const { layout, sshPort } = providerFactsOf(config.host);
    const part = provisioningConfig(config);
    // Behind Cloudflare's proxy the Caddyfile trusts its ranges; the same stand-in serves (contents are not shown).
    const trustedProxies = planOf(part).behindCloudflare ? WEB_SOURCES_STAND_IN : undefined;
    const steps = buildSteps(part, {
        dataPath: layout.dataPath,
        dataDevice: layout.dataDevice,
        sshUser: layout.sshUser,
        sshPort: sshPort.port,
        scripts,
        webSources: config.host.originLockdown ? WEB_SOURCES_STAND_IN : undefined,
        trustedProxies,
    });
    return { config, steps, releaseId: renderRelease(part, layout.dataPath, trustedProxies).id, sshUser: layout.sshUser, dataPath: layout.dataPath };
}

/** The raw configuration of the committed production stack file. */
function prodRaw(): RawConfig {
    return rawConfigFromStackFile(readFileSync(path.join(ROOT, RUNBOOK_STACK_FILE), "utf8"));
}

/** URN of a step's command resource (`<stack>` and `<project>` left for the reader). */
export function stepUrn(step: Pick<Step, "name" | "upload">, project = "<project>", stack = "<stack>"): string {
    const type = step.upload ? pulumiType(command.local.Command) : pulumiType(command.remote.Command);
    return `urn:pulumi:${stack}::${project}::${HOST_PROVISIONER_TYPE}$${type}::${PROVISIONER_NAME}-${step.name}`;
}

/** URNs of a committed list, with the stack and project of the test run replaced by placeholders. */
function urnList(rel: string): string[] {
    return readFileSync(path.join(ROOT, rel), "utf8")
        .split("\n")
        .filter((l) => l.startsWith("urn:"))
        .map((u) => u.replace(/^urn:pulumi:test::onebox::/, "urn:pulumi:<stack>::<project>::"));
}

function findUrn(rel: string, suffix: string): string {
    const found = urnList(rel).filter((u) => u.endsWith(suffix));
    if (found.length !== 1) {
        throw new Error(`runbook: expected one URN ending in ${suffix} in ${rel}, found ${found.length}`);
    }
    return found[0];
}

const code = (s: string) => `\`${s}\``;
const shellArg = (s: string) => `'${s}'`;
const withRelease = (s: string, id: string) => s.split(id).join(RELEASE);

function whereItRuns(step: Step, sshUser: string): string {
    if (step.upload) {
        return `on the machine running Pulumi: ${code(`bash ${UPLOAD_IMAGES_SCRIPT}`)} (docker save, piped over SSH into docker load)`;
    }
    return `on the server over SSH as ${code(sshUser)}: ${code(remoteCommand(sshUser))} with the step's script on stdin (${code(remoteCommand("root"))} when the login user is root)`;
}

function triggerText(step: Step): string {
    if (step.upload) {
        return "the list of images changes (push a new tag to upload again)";
    }
    const others = ALSO_TRIGGERED_BY[step.name] ?? [];
    const base = "its script changes (a hash of the rendered script: files, settings and commands)";
    return others.length > 0 ? `${base}, or the script of ${others.map((o) => code(o)).join(", ")} changes` : base;
}

/** The steps from `from` on, in order (what follows a step in the list). */
function fromStep(steps: Step[], from: StepName): Step[] {
    return steps.slice(steps.findIndex((s) => s.name === from));
}

function replaceArgs(steps: Step[]): string {
    return steps.map((s) => `--replace ${shellArg(stepUrn(s))}`).join(" \\\n    ");
}

function stepSection(step: Step, index: number, all: Step[], st: StackSteps): string[] {
    const lines = [`### ${index + 1}. ${code(step.name)}`, "", `${withRelease(step.description, st.releaseId)}.`, ""];
    lines.push(`- **Runs** ${whereItRuns(step, st.sshUser)}.`);
    lines.push(`- **After** ${step.dependsOn.length > 0 ? step.dependsOn.map(code).join(", ") : "the server is ready (address, data volume and firewall attached)"}.`);
    lines.push(`- **Stack lock** ${step.lock ? `${code(step.lock)}, held for the whole step (waits at most ${STACK_LOCK_WAIT_SECONDS} s for another run)` : "none"}.`);
    lines.push(`- **Secrets** ${step.secret ? "yes: it logs nothing and its output is secret (R4)" : "none"}.`);
    lines.push(`- **Re-runs by itself when** ${triggerText(step)}.`);
    lines.push(`- **URN** ${code(stepUrn(step))}`);
    lines.push("");
    if (step.directories.length + step.files.length > 0) {
        lines.push("| installs | mode | owner |", "| --- | --- | --- |");
        for (const d of step.directories) lines.push(`| ${code(withRelease(`${d.path}/`, st.releaseId))} | ${d.mode} | ${d.owner} |`);
        for (const f of step.files) lines.push(`| ${code(withRelease(f.path, st.releaseId))} | ${f.mode} | ${f.owner} |`);
        lines.push("");
    }
    if (step.run !== "") {
        lines.push("Then it runs (as root):", "", "```bash", withRelease(step.run, st.releaseId), "```", "");
    }
    lines.push("Re-run this step alone, or it and every step after it:", "", "```sh", `pulumi up --target-replace ${shellArg(stepUrn(step))}`);
    const rest = fromStep(all, step.name);
    if (rest.length > 1) {
        lines.push(`pulumi up ${replaceArgs(rest)}`);
    }
    lines.push("```", "");
    if (!step.upload && !step.secret) {
        lines.push(
            "Or by hand, without Pulumi (the script is complete and holds no secret):",
            "",
            "```sh",
            `npm run render -- --stack-file Pulumi.<stack>.yaml --out out/<stack>`,
            `ssh <user>@<server> ${shellArg(remoteCommand(st.sshUser))} < out/<stack>/${step.name}.stdin.sh`,
            "```",
            "",
        );
    } else if (step.secret) {
        lines.push("Not by hand: the rendered script shows its secrets as `********`; re-run it through Pulumi.", "");
    }
    return lines;
}

/** The generated runbook. */
export function renderRunbook(scripts: HostScripts = loadHostScripts(defaultScriptsDir())): string {
    const raw = prodRaw();
    const variants = VARIANTS.map((v) => ({ label: v.label, st: stepsOf(v.change(structuredClone(raw)), scripts) }));
    const prod = variants[0].st;
    // The fullest list (every step that any variant has, in order) is the one described step by step.
    const full = variants.reduce((a, b) => (b.st.steps.length > a.st.steps.length ? b : a)).st;
    const project = `${prod.config.app.name}-${prod.config.app.environment}`;
    const paths = appPaths(project, prod.dataPath);
    // Paths per stack read as /<app>-<env>/ (the example stack's own name is only an example).
    const generic = (s: string) => s.split(project).join("<app>-<env>").split(`${LAYOUT_SCRIPT} ${prod.config.app.name} `).join(`${LAYOUT_SCRIPT} <app> `);
    const backupStep = prod.steps.find((s) => s.name === "backup");
    const restore = backupStep?.files.find((f) => f.path === `${BACKUP_LIB_DIR}/restore.sh`);
    if (!restore) {
        throw new Error(`runbook: the backup step of ${RUNBOOK_STACK_FILE} installs no ${BACKUP_LIB_DIR}/restore.sh`);
    }
    const units = renderBackupUnits({ project: "<app>-<env>", backupEnv: generic(paths.backupEnv), schedule: prod.config.backups?.schedule ?? "30 3 * * *", drillSchedule: prod.config.backups?.drill.schedule });
    const prodUrns = URN_LISTS.prod;
    const dbPassword = findUrn(prodUrns, "::secrets-database-password");
    const generated = urnList(prodUrns).filter((u) => u.includes("::secrets-generated-"));
    const accessKey = findUrn(prodUrns, "::backups-access-key");
    const servers = [
        { provider: "DigitalOcean", server: findUrn(URN_LISTS.digitalocean, "droplet:Droplet::server-server"), volume: findUrn(URN_LISTS.digitalocean, "volume:Volume::server-data") },
        { provider: "Lightsail", server: findUrn(URN_LISTS.lightsail, "lightsail/instance:Instance::server-server"), volume: findUrn(URN_LISTS.lightsail, "lightsail/disk:Disk::server-data") },
    ];

    const out: string[] = [
        "# Runbook",
        "",
        "<!-- Generated by `npm run docs:runbook` (scripts/generate-runbook.ts); do not edit by hand: tests/unit/tooling/runbook.test.ts fails when this file differs from what the generator writes. -->",
        "",
        `How a onebox stack reaches its server and how to operate it. The steps, their order, hosts, users, files, commands and URNs are read off the code (the step list of ${code(RUNBOOK_STACK_FILE)} and the variants below; ${code("<app>-<env>")} in a path or unit name is ${code("app.name")}-${code("app.environment")}, the stack's compose project, ${code(project)} there); in URNs, ${code("<stack>")} is the stack (e.g. ${code("prod")}) and ${code("<project>")} the project (${code("onebox")}). ${code("pulumi stack --show-urns")} prints the real ones.`,
        "",
        "## What runs where, in order",
        "",
        `\`pulumi up\` creates one command resource per step, each after the one before it (${code(HOST_PROVISIONER_TYPE)} ${code(PROVISIONER_NAME)}). A step whose trigger is unchanged does not run again, so an unchanged configuration runs nothing on the server.`,
        "",
        "| # | step | runs on | stack lock | secrets | after |",
        "| --- | --- | --- | --- | --- | --- |",
        ...full.steps.map(
            (s, i) =>
                `| ${i + 1} | ${code(s.name)} | ${s.upload ? "the machine running Pulumi" : `the server (${code(remoteCommand(prod.sshUser))})`} | ${s.lock ? "yes" : "no"} | ${s.secret ? "yes" : "no"} | ${s.dependsOn.map(code).join(", ") || "—"} |`,
        ),
        "",
        "Which steps a stack has depends on its configuration:",
        "",
        `| configuration | steps |`,
        "| --- | --- |",
        ...variants.map((v) => `| ${v.label} | ${v.st.steps.map((s) => code(s.name)).join(" → ")} |`),
        "",
        ...variants.slice(1).flatMap((v) =>
            v.st.steps
                .filter((s) => withRelease(s.description, v.st.releaseId) !== withRelease(full.steps.find((f) => f.name === s.name)?.description ?? "", full.releaseId))
                .map((s) => `With ${v.label} the ${code(s.name)} step does this instead: ${withRelease(s.description, v.st.releaseId)}.\n`),
        ),
        "On the server, on their own (systemd timers the `backup` step installs):",
        "",
        "| timer | when (UTC) | runs |",
        "| --- | --- | --- |",
        ...units
            .filter((u) => u.name.endsWith(".timer"))
            .map((t) => {
                const service = units.find((u) => u.name === t.name.replace(/\.timer$/, ".service"));
                const when = /^OnCalendar=(.*)$/m.exec(t.content)?.[1] ?? "?";
                const exec = service ? (/^ExecStart=(.*)$/m.exec(service.content)?.[1] ?? "?") : "?";
                return `| ${code(t.name)} | ${code(when)} | ${code(exec)} |`;
            }),
        "",
        "## The steps",
        "",
        `Described for ${variants.find((v) => v.st === full)?.label ?? RUNBOOK_STACK_FILE}, the fullest list.`,
        "",
        ...full.steps.flatMap((s, i) => stepSection(s, i, full.steps, full).map(generic)),
        "## Roll back a release",
        "",
        `The deploy step already rolls back by itself: when the new release fails its health gate, the previous one keeps (or resumes) serving and \`pulumi up\` fails. To go back to an earlier release on purpose, on the server:`,
        "",
        "```sh",
        generic(`ls -t ${paths.releasesDir}/`),
        generic(`sudo ${DEPLOY_SCRIPT} ${paths.releasesDir}/<id>`),
        "```",
        "",
        `It goes through the same health gate and takes the same stack lock (${code(generic(paths.lockFile))}). The next \`pulumi up\` that changes the configuration deploys the configured release again; to keep the old one, revert the configuration (the image tags) and run \`pulumi up\`.`,
        "",
        "## Restore the database",
        "",
        `The backup step installs ${code(restore.path)}; the backup status is ${code(generic(paths.backupStatusFile))} (its ${code("lastKey")} names the newest dump). On a server with several stacks, name the stack's settings first: ${code(`sudo ONEBOX_BACKUP_ENV=${generic(paths.backupEnv)} ${restore.path} ...`)}. On the server, as root:`,
        "",
        "```sh",
        `sudo ${restore.path} --key latest                               # download and verify only`,
        `sudo ${restore.path} --key latest --into-scratch restore_check  # restore beside the live database`,
        `sudo ${restore.path} --key latest --into-live --yes             # over the live database (stop the app first)`,
        "```",
        "",
        "`--into-live` takes a safety dump first and restores in one transaction. Encrypted dumps read the age identity on stdin (`... < backup-identity.txt`), never from a file on the server. README \"Backups and restore\" has the whole procedure.",
        "",
        "## Rotate a secret",
        "",
        "| secret | how |",
        "| --- | --- |",
        `| database password | \`database.passwordRotationDays\` rotates it on the first \`pulumi up\` of each period; now: \`pulumi up --replace ${shellArg(dbPassword)}\` |`,
        ...generated.map((u) => `| generated ${code(u.split("::secrets-generated-")[1])} | \`pulumi up --replace ${shellArg(u)}\` |`),
        "| a secret you set (`secrets.NAME`) | `pulumi config set --secret --path 'onebox:secrets.NAME'`, then `pulumi up` |",
        `| backup access key (\`backups.create: true\`) | \`backups.keyRotationDays\`; now: \`pulumi up --replace ${shellArg(accessKey)}\` (the old key is deleted at the end of the update) |`,
        "",
        `Use a whole \`pulumi up --replace\`, not \`--target-replace\`: the new value must also reach the server, which the ${code("secrets")} step does when its script changes, and the ${code("deploy")} step then restarts the services that read it (its trigger includes the ${code("secrets")} step's). The SSH deploy key and the server's host key are not rotated this way.`,
        "",
        "## Replace the server without losing data",
        "",
        "The data volume is protected and retained on delete (S5) and the address is reserved or static (K2), so a new server gets the same address, the same data and the same pinned host key. Every step's triggers include the server's own identity (`Host.serverId`: the droplet id, the instance ARN), so the steps run again on the new machine without being named:",
        "",
        `1. Take a fresh backup and check it: \`sudo systemctl start onebox-<app>-<env>-backup.service\`, then ${code(generic(paths.backupStatusFile))}.`,
        "2. Preview, and check that only the server, its attachments and the steps are replaced (never the volume):",
        "",
        ...servers.flatMap((s) => [
            `   ${s.provider}:`,
            "",
            "   ```sh",
            `   pulumi preview --replace ${shellArg(s.server)}`,
            "   ```",
            "",
            `   The data volume (${code(s.volume)}) must not be in the plan.`,
            "",
        ]),
        "3. Run the same command with `pulumi up`. The policy pack judges the desired state, not the operation (README \"Policy pack\"): it does not stop a replacement asked for by URN, so the preview is the check. A plan that would delete the volume fails anyway, because it is `protect`ed.",
        "4. The steps run again on the new server in order: the bootstrap mounts the retained volume, the deploy starts PostgreSQL on its data. Check `/healthz/backup` and the application.",
        "",
        "An existing server (`host.provider: existing`) has no volume the program manages: set the new `host.address` and `host.hostKey` (a new host key is a new server: every step runs again), `pulumi up`, then restore the latest dump on it (`--into-live`).",
        "",
    ];
    return `${out.join("\n").replace(/\n{3,}/g, "\n\n").trimEnd()}\n`;
}

/** Runs the command; returns the process exit code. */
export function run(argv: string[]): number {
    const check = argv.includes("--check");
    const fileIndex = argv.indexOf("--file");
    const file = fileIndex >= 0 && argv[fileIndex + 1] ? path.resolve(argv[fileIndex + 1]) : DEFAULT_RUNBOOK_FILE;
    const expected = renderRunbook();
    const shown = path.relative(process.cwd(), file) || file;
    if (check) {
        const actual = existsSync(file) ? readFileSync(file, "utf8") : undefined;
        if (actual !== expected) {
            console.error(`${shown} is ${actual === undefined ? "missing" : "out of date"}; run \`npm run docs:runbook\` and commit the result`);
            return 1;
        }
        console.log(`${shown} is up to date`);
        return 0;
    }
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, expected);
    console.log(`wrote ${shown}`);
    return 0;
}

if (require.main === module) {
    process.exitCode = run(process.argv.slice(2));
}

