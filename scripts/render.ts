/**
 * Renders every provisioning step of a stack to disk for review, without
 * Pulumi, credentials or a server:
 *
 *   npm run render -- --stack-file Pulumi.prod.yaml --out out/prod
 *
 * Writes `<out>/<step>/<host path>` for every file a step installs, the step's
 * stdin script as `<out>/<step>.stdin.sh`, `<out>/steps.json` (modes, owners,
 * hashes, secret flags) and `<out>/validate.sh` (runs `docker compose config`
 * and `caddy validate` on the rendered files). Secrets are never read: values
 * stored encrypted in the stack file count as present, and every secret is
 * shown as ********. Two renders of the same stack file are byte-identical.
 *
 * Options:
 *   --stack-file FILE        Pulumi.<stack>.yaml to read (required)
 *   --out DIR                output directory (required; replaced if it holds an earlier render)
 *   --scripts-dir DIR        host scripts (default: scripts/host of this repository)
 *   --data-device PATH       data volume device of a cloud host (unknown until it exists)
 *   --docker-apt-source S    ONEBOX_DOCKER_SOURCE of the bootstrap: auto (default), docker or distro
 *   --cloudflare-ips FILE    Cloudflare's published ranges, required when host.originLockdown is on
 *                            or dns.proxied is (the proxy trusts only them to name the visitor)
 *                            (the bootstrap admits only them to 80/443; `pulumi up` looks them up).
 *                            The JSON of https://api.cloudflare.com/client/v4/ips, saved with e.g.
 *                            `curl -fsS https://api.cloudflare.com/client/v4/ips -o cloudflare-ips.json`
 *
 * Exit status: 0 rendered; 2 invalid configuration (every problem on stderr); 1 other errors.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { parse } from "yaml";
import { CONFIG_NAMESPACE, ConfigError, plaintextPaths, validateConfig, type RawConfig } from "../components/config/load";
import { providerFactsOf, type StackConfig } from "../components/config/schema";
import type { IpRanges } from "../components/hosts/firewall-rules";
import { cidrProblem } from "../components/config/validators";
import { loadHostScripts, defaultScriptsDir } from "../components/provisioning/host-scripts";
import { appPaths, CONFIG_DIR_VARIABLE, releaseDir } from "../components/provisioning/paths";
import { maskSecrets } from "../components/provisioning/placeholders";
import { projectName } from "../components/provisioning/render/compose";
import { behindCloudflare, ORIGIN_CERT_FILE, ORIGIN_KEY_FILE } from "../components/provisioning/render/caddyfile";
import { shellQuote } from "../components/provisioning/shell";
import { buildSteps, maskStepScript, remoteCommand, renderRelease, sha256, stepSecrets, type Step, type StepContext } from "../components/provisioning/steps";

/** Marker that an output directory holds an earlier render (and may be replaced). */
const STEPS_JSON = "steps.json";

/** Stand-ins for values stored encrypted: they pass validation and are never written anywhere. */
const ENCRYPTED_STAND_IN = "encrypted-in-stack-file-Qm7Tz2Kx9Lw4";
const ENCRYPTED_KEY_STAND_IN = "-----BEGIN OPENSSH PRIVATE KEY-----\nencrypted in the stack file\n-----END OPENSSH PRIVATE KEY-----\n";

const isEncrypted = (v: unknown): boolean => Boolean(v) && typeof v === "object" && !Array.isArray(v) && "secure" in (v as object);

export class UsageError extends Error {}

/** True when the value at a secret path is the stand-in for an encrypted value. */
function isStandIn(raw: RawConfig, secretPath: string): boolean {
    const v = secretPath === "sshPrivateKey" ? raw.sshPrivateKey : raw.secrets?.[secretPath.slice("secrets.".length)];
    return v === ENCRYPTED_STAND_IN || v === ENCRYPTED_KEY_STAND_IN;
}

/**
 * The raw configuration of a stack file: the `onebox:` keys of its `config`
 * map. A secret stored encrypted (`{ secure: ... }`: `secrets.NAME`,
 * `sshPrivateKey`) counts as present.
 */
export function rawConfigFromStackFile(text: string): RawConfig {
    let doc: { config?: Record<string, unknown> };
    try {
        doc = (parse(text) ?? {}) as { config?: Record<string, unknown> };
    } catch (e) {
        // Duplicate keys, bad indentation...: a configuration problem (exit 2), not a crash.
        throw new ConfigError([{ path: "(stack file)", message: `is not valid YAML: ${(e as Error).message.split("\n")[0]}` }]);
    }
    const raw: RawConfig = {};
    const prefix = `${CONFIG_NAMESPACE}:`;
    for (const [key, value] of Object.entries(doc.config ?? {})) {
        if (!key.startsWith(prefix)) {
            continue;
        }
        const name = key.slice(prefix.length);
        if (name === "secrets" && value && typeof value === "object" && !Array.isArray(value)) {
            if ("secure" in value) {
                throw new UsageError(`${key} is encrypted as a whole, so its names cannot be read; set each secret with \`pulumi config set --secret --path 'secrets.NAME'\``);
            }
            raw.secrets = Object.fromEntries(Object.entries(value as Record<string, unknown>).map(([n, v]) => [n, isEncrypted(v) ? ENCRYPTED_STAND_IN : v]));
        } else if (name === "sshPrivateKey" && isEncrypted(value)) {
            raw[name] = ENCRYPTED_KEY_STAND_IN;
        } else {
            raw[name] = value;
        }
    }
    return raw;
}

/**
 * Cloudflare's ranges from a saved response of its IP list API
 * (`{"result": {"ipv4_cidrs": [...], "ipv6_cidrs": [...]}}`, or the `result`
 * object alone). Every entry must be a CIDR; both lists together non-empty.
 */
export function readCloudflareIps(file: string): IpRanges {
    let doc: unknown;
    try {
        doc = JSON.parse(fs.readFileSync(file, "utf8"));
    } catch (e) {
        throw new UsageError(`--cloudflare-ips ${file}: ${(e as Error).message}`);
    }
    const body = (doc && typeof doc === "object" && "result" in doc ? doc.result : doc) as Record<string, unknown> | null;
    const list = (key: string): string[] => {
        const v = body?.[key];
        if (!Array.isArray(v) || v.some((c) => typeof c !== "string")) {
            throw new UsageError(`--cloudflare-ips ${file}: ${key} must be a list of CIDRs (the JSON of https://api.cloudflare.com/client/v4/ips)`);
        }
        const bad = (v as string[]).map((c) => cidrProblem(c)).find((p) => p !== undefined);
        if (bad) {
            throw new UsageError(`--cloudflare-ips ${file}: ${key}: ${bad}`);
        }
        return v as string[];
    };
    const ranges = { ipv4: list("ipv4_cidrs"), ipv6: list("ipv6_cidrs") };
    if (ranges.ipv4.length + ranges.ipv6.length === 0) {
        throw new UsageError(`--cloudflare-ips ${file}: no ranges; origin lockdown would admit nobody`);
    }
    return ranges;
}

/** The step context the render uses: what a host of this kind would report. */
export function renderContext(
    config: StackConfig,
    scriptsDir: string,
    dataDevice?: string,
    dockerAptSource?: StepContext["dockerAptSource"],
    webSources?: IpRanges,
): StepContext {
    const { layout, sshPort } = providerFactsOf(config.host);
    return {
        dataPath: layout.dataPath,
        dataDevice: layout.dataDevice ?? dataDevice,
        sshUser: layout.sshUser,
        sshPort: sshPort.port,
        scripts: loadHostScripts(scriptsDir),
        dockerAptSource,
        webSources: config.host.originLockdown ? webSources : undefined,
        trustedProxies: behindCloudflare(config) ? webSources : undefined,
    };
}

function stepSummary(step: Step, sshUser: string): Record<string, unknown> {
    const summary: Record<string, unknown> = {
        name: step.name,
        description: step.description,
        secret: step.secret,
        dependsOn: step.dependsOn,
    };
    if (step.upload) {
        return { ...summary, runs: "locally", images: step.upload.images, trigger: step.upload.images };
    }
    const script = maskStepScript(step);
    return {
        ...summary,
        runs: "remote",
        command: remoteCommand(sshUser),
        stdin: `${step.name}.stdin.sh`,
        // Secret steps hash the script with the real values (so a changed secret re-runs them); not computable here.
        trigger: step.secret ? null : sha256(script),
        secretsUsed: stepSecrets(step),
        directories: step.directories,
        files: step.files.map((f) => {
            const content = maskSecrets(f.content);
            return { path: f.path, mode: f.mode, owner: f.owner, sha256: sha256(content), masked: content !== f.content };
        }),
        run: step.run,
    };
}

/** validate.sh: the two offline validators, pointed at the rendered files. */
export function renderValidateScript(config: StackConfig, dataPath: string, trustedProxies?: IpRanges): string {
    const paths = appPaths(projectName(config), dataPath);
    const rendered = renderRelease(config, dataPath, trustedProxies);
    const release = releaseDir(paths, rendered.id).replace(/^\//, "");
    const hasCaddyfile = rendered.files.some((f) => f.name === "Caddyfile");
    const lines = [
        "#!/usr/bin/env bash",
        "# Validates the rendered compose file and Caddyfile offline. Needs `docker compose`",
        "# (or COMPOSE=/usr/libexec/docker/cli-plugins/docker-compose) and `caddy` on PATH.",
        "set -euo pipefail",
        "",
        "main() {",
        '  local here compose_cmd',
        '  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"',
        '  read -r -a compose_cmd <<<"${COMPOSE:-docker compose}"',
        `  ${CONFIG_DIR_VARIABLE}="\${here}/secrets${paths.configDir}" "\${compose_cmd[@]}" -f "\${here}/deploy/${release}/compose.yaml" config -q`,
        "  echo 'compose.yaml: valid'",
    ];
    if (hasCaddyfile) {
        if (config.tls.mode === "cloudflare-origin" && config.proxy.kind === "caddy") {
            const tlsLine = `tls ${ORIGIN_CERT_FILE} ${ORIGIN_KEY_FILE}`;
            lines.push(
                "  # The origin certificate is a secret: validate with Caddy's internal CA in its place.",
                '  local tmp',
                '  tmp="$(mktemp -d)"',
                `  sed 's#${tlsLine}#tls internal#' "\${here}/deploy/${release}/Caddyfile" >"\${tmp}/Caddyfile"`,
                '  caddy validate --adapter caddyfile --config "${tmp}/Caddyfile"',
                '  rm -rf -- "${tmp}"',
            );
        } else {
            lines.push(`  caddy validate --adapter caddyfile --config "\${here}/deploy/${release}/Caddyfile"`);
        }
        lines.push("  echo 'Caddyfile: valid'");
    }
    lines.push("}", "", 'main "$@"', "");
    return lines.join("\n");
}

/** Replaces `out` only when it is empty, missing, or an earlier render. */
function prepareOut(out: string): void {
    if (fs.existsSync(out)) {
        const entries = fs.readdirSync(out);
        if (entries.length > 0 && !entries.includes(STEPS_JSON)) {
            throw new UsageError(`${out} is not empty and holds no earlier render (${STEPS_JSON}); choose another --out`);
        }
        fs.rmSync(out, { recursive: true, force: true });
    }
    fs.mkdirSync(out, { recursive: true });
}

function write(file: string, content: string, mode = 0o644): void {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, content, { mode });
}

/** Renders a stack file into `out`. Throws ConfigError (exit 2) or other errors (exit 1). */
export interface RenderOptions {
    scriptsDir?: string;
    dataDevice?: string;
    dockerAptSource?: StepContext["dockerAptSource"];
    /** Cloudflare's ranges (`--cloudflare-ips`); required when host.originLockdown is on or dns.proxied is (the proxy trusts them). */
    webSources?: IpRanges;
}

export function render(stackFile: string, out: string, opts: RenderOptions = {}): Step[] {
    const text = fs.readFileSync(stackFile, "utf8");
    const raw = rawConfigFromStackFile(text);
    // Every secret must be stored encrypted in the file (the engine is not here to say).
    const { config, warnings } = validateConfig(raw, { plaintextPaths: plaintextPaths(raw, () => false, text).filter((p) => !isStandIn(raw, p)) });
    for (const w of warnings) {
        process.stderr.write(`warning: ${w}\n`);
    }
    if (config.host.originLockdown && !opts.webSources) {
        throw new UsageError(
            "host.originLockdown is on, so the server's firewall admits only Cloudflare's ranges to 80/443 (pulumi up looks them up); " +
                "pass them with --cloudflare-ips FILE, saved by `curl -fsS https://api.cloudflare.com/client/v4/ips -o FILE`",
        );
    }
    if (behindCloudflare(config) && !opts.webSources) {
        throw new UsageError(
            "dns.proxied is on, so the proxy trusts only Cloudflare's ranges to name the visitor's address (pulumi up looks them up); " +
                "pass them with --cloudflare-ips FILE, saved by `curl -fsS https://api.cloudflare.com/client/v4/ips -o FILE`",
        );
    }
    const ctx = renderContext(config, opts.scriptsDir ?? defaultScriptsDir(), opts.dataDevice, opts.dockerAptSource, opts.webSources);
    const steps = buildSteps(config, ctx);
    prepareOut(out);
    for (const step of steps) {
        for (const f of step.files) {
            write(path.join(out, step.name, f.path), maskSecrets(f.content));
        }
        if (!step.upload) {
            write(path.join(out, `${step.name}.stdin.sh`), maskStepScript(step));
        }
    }
    const summary = {
        project: projectName(config),
        releaseId: renderRelease(config, ctx.dataPath, ctx.trustedProxies).id,
        dataPath: ctx.dataPath,
        dataDevice: ctx.dataDevice ?? null,
        steps: steps.map((s) => stepSummary(s, ctx.sshUser)),
    };
    write(path.join(out, STEPS_JSON), `${JSON.stringify(summary, null, 2)}\n`);
    write(path.join(out, "validate.sh"), renderValidateScript(config, ctx.dataPath, ctx.trustedProxies), 0o755);
    return steps;
}

export function main(argv: string[]): number {
    let values: Record<string, string | undefined>;
    try {
        ({ values } = parseArgs({
            args: argv,
            options: {
                "stack-file": { type: "string" },
                out: { type: "string" },
                "scripts-dir": { type: "string" },
                "data-device": { type: "string" },
                "docker-apt-source": { type: "string" },
                "cloudflare-ips": { type: "string" },
            },
            strict: true,
        }));
    } catch (e) {
        process.stderr.write(`render: ${(e as Error).message}\n`);
        return 1;
    }
    const stackFile = values["stack-file"];
    const out = values.out;
    const apt = values["docker-apt-source"];
    if (!stackFile || !out) {
        process.stderr.write("usage: npm run render -- --stack-file Pulumi.<stack>.yaml --out <dir> [--scripts-dir DIR] [--data-device PATH] [--docker-apt-source auto|docker|distro] [--cloudflare-ips FILE]\n");
        return 1;
    }
    if (apt !== undefined && apt !== "docker" && apt !== "distro" && apt !== "auto") {
        process.stderr.write(`render: --docker-apt-source must be auto, docker or distro, not ${shellQuote(apt)}\n`);
        return 1;
    }
    try {
        const cloudflareIps = values["cloudflare-ips"];
        const steps = render(stackFile, out, {
            scriptsDir: values["scripts-dir"],
            dataDevice: values["data-device"],
            dockerAptSource: apt,
            webSources: cloudflareIps === undefined ? undefined : readCloudflareIps(cloudflareIps),
        });
        process.stdout.write(`rendered ${steps.length} steps of ${stackFile} into ${out}\n`);
        return 0;
    } catch (e) {
        if (e instanceof ConfigError) {
            process.stderr.write(`${e.message}\n`);
            return 2;
        }
        process.stderr.write(`render: ${(e as Error).message}\n`);
        return 1;
    }
}

if (require.main === module) {
    process.exitCode = main(process.argv.slice(2));
}
