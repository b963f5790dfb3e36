/**
 * The provisioning steps as data: which files each step installs on the host
 * and which commands it runs afterwards. `buildSteps` is pure; the
 * HostProvisioner maps each remote step onto one SSH command whose stdin is
 * `renderStepScript(step, secrets)`, and the render command writes the same
 * steps to disk for review.
 *
 * Steps, in order (names are a contract; other components depend on them):
 * - `wait-ready`: wait for cloud-init to finish (H1), bounded.
 * - `bootstrap`: install and run the host bootstrap (Docker, firewall, hardening).
 * - `secrets`: env files, database password files, origin certificate (secret; H10).
 * - `images`: only for `deploy.imageSource: upload`; runs locally (`docker save | ssh docker load`).
 * - `deploy`: the release (compose.yaml, Caddyfile, manifest) and deploy.sh, which
 *   starts it behind a health gate and rolls back on failure.
 * - `backup`: backup scripts, /etc/onebox/backup.env (secret) and systemd timers.
 * - `jobs`: the scheduled jobs' runner, settings and timers; removes those of jobs no longer configured.
 *
 * File content may hold `{{secret:NAME}}` placeholders (see placeholders.ts),
 * never values; only steps flagged `secret` may hold them.
 *
 * `secrets`, `deploy`, `backup` and `jobs` change the stack on the host: each holds the stack's
 * host-wide lock (`lock`, R7) from before its first file until it exits, and the deploy
 * hands it down to deploy.sh, which a manual rollback runs under the same lock.
 */
import { createHash } from "node:crypto";
import * as path from "node:path";
import { databaseEnvOf, type ProvisioningConfig } from "../config/schema";
import type { IpRanges } from "../hosts/firewall-rules";
import { isWorldCidr } from "../config/validators";
import { planOf } from "../config/plan";
import type { HostScripts } from "./host-scripts";
import {
    appPaths,
    type AppPaths,
    BACKUP_LIB_DIR,
    BOOTSTRAP_SCRIPT,
    LAYOUT_SCRIPT,
    LAYOUT_SCRIPT_NAME,
    containerSecretsDir,
    DB_PASSWORD_FILE_NAME,
    DEPLOY_SCRIPT,
    envFilePath,
    ETC_DIR,
    LIB_DIR,
    POSTGRES_HBA_FILE_NAME,
    POSTGRES_PASSWORD_FILE_NAME,
    POSTGRES_SCRAM_FILE_NAME,
    POSTGRES_TLS_CERT_FILE_NAME,
    POSTGRES_TLS_KEY_FILE_NAME,
    releaseDir,
    SRV_DIR,
    STATE_DIR,
    LOG_DIR,
    SYSTEMD_DIR,
    volumePath,
    localBackupDir,
    postgresSocketDir,
    walSpoolDir,
    JOBS_LIB_DIR,
    JOB_RUNNER,
    jobsConfigDir,
} from "./paths";
import { backupDirectories, volumeDirectories } from "./volumes";
import { resolveS3Target, S3_PRESETS } from "../storage/s3-providers";
import { POOLER_SERVICE } from "../config/pooler-schema";
import { POOLER_AUTH_FILE_NAME, POOLER_INI_FILE_NAME, POOLER_USER, renderPgbouncerAuthFile, renderPgbouncerIni } from "./render/pgbouncer";
import { maskSecrets, RESERVED_SECRETS, referencedSecrets, secretRef, substituteSecrets } from "./placeholders";
import {
    appServiceNames,
    composeImages,
    databaseUrl,
    fileSecrets,
    hasDatabasePasswordFile,
    hasSecretFiles,
    POSTGRES_SERVICE,
    postgresContainerName,
    postgresImage,
    postgresUid,
    projectName,
    PROXY_USER,
    renderCompose,
    PITR_STANZA,
    POSTGRES_SOCKET_DIR,
    postgresDataTarget,
} from "./render/compose";
import { renderCaddyfile, renderStatusCaddyfile } from "./render/caddyfile";
import { renderPgHba } from "./render/pg-hba";
import { DUMP_VERIFY_LIB, releaseId, renderManifest, type ReleaseFile } from "./render/release";
import { BACKUP_SCRIPTS, backupTimers, renderBackupUnits } from "./render/systemd";
import { jobUnitPrefix, renderJobSettings, renderJobUnits, type JobsInput } from "./render/jobs";
import { envFileLines, envFileValue, shellJoin, shellQuote } from "./shell";

export const STEP_NAMES = ["wait-ready", "bootstrap", "secrets", "images", "deploy", "backup", "jobs"] as const;
export type StepName = (typeof STEP_NAMES)[number];

/** A file a step installs. */
export interface HostFile {
    /** Absolute path on the host. */
    path: string;
    /** Content; may contain `{{secret:NAME}}` placeholders in secret steps. */
    content: string;
    /** Octal mode, e.g. "0644". */
    mode: string;
    /** "user:group", names or numeric ids, e.g. "root:root" or "999:999". */
    owner: string;
}

/** A directory a step creates, or converges to this mode and owner, before its files. */
export interface HostDirectory {
    path: string;
    mode: string;
    owner: string;
}

export interface Step {
    name: StepName;
    description: string;
    directories: HostDirectory[];
    files: HostFile[];
    /** Shell run (as root, bash, `set -euo pipefail`) after the files are installed. */
    run: string;
    /** Holds secret placeholders: logging off and outputs secret (R4). */
    secret: boolean;
    /** Steps that must have run before this one. */
    dependsOn: StepName[];
    /** Set on the `images` step only: runs on the machine running Pulumi, not over `bash -s`. */
    upload?: { images: string[] };
    /** The stack's host-wide lock file, held for the whole step (R7); set on every step that changes the stack. */
    lock?: string;
}

/** What the steps need to know about the host beyond the stack config. */
export interface StepContext {
    /** Mount point of the data volume (Host.dataPath). */
    dataPath: string;
    /** Block device of the data volume, when the host has one (Host.dataDevice). */
    dataDevice?: string;
    /** SSH login user; steps run through `sudo -n` when it is not root. */
    sshUser: string;
    /** Port the server's SSH daemon listens on (Host.connection.port): the firewall keeps it open. */
    sshPort: number;
    /** Contents of the host scripts (`loadHostScripts()`). */
    scripts: HostScripts;
    /**
     * Where the bootstrap installs Docker from (ONEBOX_DOCKER_SOURCE): "docker"
     * (Docker's signed apt repository, H2), "distro" (the distribution's
     * packages, e.g. for hosts that cannot reach download.docker.com) or "auto"
     * (the bootstrap decides by OS). @default "auto"
     */
    dockerAptSource?: "docker" | "distro" | "auto";
    /** Overrides of the backup target when another component decides it (e.g. the created bucket's name). */
    backup?: {
        bucket?: string;
        region?: string;
        endpoint?: string;
        /**
         * A CA bundle on the host that signs the endpoint's certificate (a MinIO with a
         * private CA). pgBackRest (point-in-time recovery) verifies TLS against it.
         */
        caFile?: string;
    };
    /**
     * The only networks the host firewall admits to 80/443 when
     * `host.originLockdown` is on: Cloudflare's published ranges. Required
     * then (the steps refuse to render without them); ignored otherwise.
     */
    webSources?: IpRanges;
    /**
     * Peers the proxy trusts to name the client (`CF-Connecting-IP`):
     * Cloudflare's published ranges when the stack is behind Cloudflare's
     * proxy (render/caddyfile.ts `behindCloudflare`; required then).
     * Absent: the proxy trusts no peer.
     */
    trustedProxies?: IpRanges;
}

/**
 * How long a step waits for the stack's lock (R7) before failing with the holder's name.
 * Longer than a slow deploy (pulls, canaries and the health gate of every service), so
 * two runs started together serialise instead of failing.
 */
export const STACK_LOCK_WAIT_SECONDS = 900;

/** How long wait-ready waits for cloud-init before failing. */
export const CLOUD_INIT_TIMEOUT_SECONDS = 900;

/** The remote command of every step: constant and secret-free (R3); the script arrives on stdin. */
export function remoteCommand(sshUser: string): string {
    return sshUser === "root" ? "bash -s" : "sudo -n bash -s";
}

const file = (path: string, content: string, mode: string, owner = "root:root"): HostFile => ({ path, content, mode, owner });
const dir = (path: string, mode: string, owner = "root:root"): HostDirectory => ({ path, mode, owner });

/** "10001:10001" for a service user "10001:10001" or "10001"; root when the image's user is kept. */
function ownerOf(user: string | null): string {
    if (user === null) {
        return "root:root";
    }
    return user.includes(":") ? user : `${user}:${user}`;
}

/** SSH port the bootstrap keeps open: the configured one for existing hosts, else 22. */
/** Every path of the stack on this host. */
export function stackPaths(config: ProvisioningConfig, ctx: Pick<StepContext, "dataPath">): AppPaths {
    return appPaths(projectName(config), ctx.dataPath);
}

// ---------------------------------------------------------------- wait-ready

function waitReadyStep(): Step {
    const t = CLOUD_INIT_TIMEOUT_SECONDS;
    const run = [
        "if ! command -v cloud-init >/dev/null 2>&1; then",
        "  echo 'no cloud-init on this host; nothing to wait for'",
        "  return 0",
        "fi",
        `echo 'waiting for cloud-init to finish (at most ${t} s)'`,
        "rc=0",
        `timeout ${t} cloud-init status --wait >/dev/null || rc=$?`,
        'case "${rc}" in',
        "  0) echo 'cloud-init: done' ;;",
        `  124) echo 'cloud-init did not finish within ${t} s' >&2; cloud-init status --long >&2 || true; exit 1 ;;`,
        // 1 (error) and 2 (recoverable error): cloud-init has finished, which is all this waits for.
        `  *) echo "cloud-init finished with status \${rc}; continuing" >&2; cloud-init status --long >&2 || true ;;`,
        "esac",
    ].join("\n");
    return {
        name: "wait-ready",
        description: "Wait until cloud-init has finished (H1), so package work does not race first-boot setup",
        directories: [],
        files: [],
        run,
        secret: false,
        dependsOn: [],
    };
}

// ---------------------------------------------------------------- bootstrap

/** The SSH allow-list in the bootstrap's terms: "any" for the whole internet (only with the opt-in). */
function sshAllowed(config: ProvisioningConfig): string {
    const cidrs = config.host.sshAllowedCidrs;
    if (cidrs.some(isWorldCidr) || (config.host.allowSshFromAnywhere && cidrs.length === 0)) {
        return "any";
    }
    return cidrs.join(" ");
}

/**
 * /etc/onebox/<project>/bootstrap.env: the settings bootstrap.sh documents in its header
 * (sourced by bash as root, so 0600 root). The firewall the bootstrap applies joins the
 * ports of every stack's file on the server.
 */
export function renderBootstrapEnv(config: ProvisioningConfig, ctx: StepContext): string {
    const db = config.database;
    const web = webPorts(config, ctx.webSources);
    const restricted = [...web.restricted, ...(db.enabled ? db.allowedCidrs.map((c) => `${db.publicPort}:${c}`) : [])];
    const entries: [string, string][] = [
        ["ONEBOX_DEPLOY_USER", ctx.sshUser],
        ["ONEBOX_ADMIN_CAN_ROOT", String(ctx.sshUser === "root")],
        ["ONEBOX_DATA_PATH", ctx.dataPath],
        ["ONEBOX_DATA_DEVICE", ctx.dataDevice ?? ""],
        ["ONEBOX_SWAP_MB", String(config.host.swapMb)],
        ["ONEBOX_SSH_ALLOWED_CIDRS", sshAllowed(config)],
        ["ONEBOX_SSH_PORT", String(ctx.sshPort)],
        // Web traffic reaches the host in both proxy modes (ours, or the existing Traefik):
        // from everyone, or with origin lockdown from Cloudflare only.
        ["ONEBOX_PUBLIC_TCP_PORTS", web.public],
        // Ports open to listed networks only: 80/443 under origin lockdown, the database port
        // (Docker-published ports bypass plain ufw rules; the bootstrap filters them in DOCKER-USER).
        ["ONEBOX_RESTRICTED_PORTS", restricted.join(" ")],
        ["ONEBOX_DOCKER_SOURCE", ctx.dockerAptSource ?? "auto"],
        // H14: other stacks may live on the server; its containers are the compose project's.
        ["ONEBOX_STACK", projectName(config)],
        ["ONEBOX_ALLOW_DOCKER_RESTART", String(config.host.allowDockerRestart ?? false)],
        ["ONEBOX_KEEP_PUBLISHED_PORTS", keptPorts(config.host.keepPublishedPorts)],
    ];
    return `# Bootstrap settings of ${config.app.name}, rendered by onebox; sourced by ${BOOTSTRAP_SCRIPT}.\n${envFileLines(entries)}`;
}

/** host.keepPublishedPorts in the bootstrap's terms: "all", a port list, or "" (none). */
function keptPorts(keep: boolean | number[] | undefined): string {
    return keep === true ? "all" : Array.isArray(keep) ? keep.join(" ") : "";
}

/** HTTP and HTTPS: the proxy's ports, the only ones open to the web (H8). */
const WEB_PORTS = [80, 443];

/**
 * The web ports in the host firewall: open to everyone, or under
 * `host.originLockdown` open only to Cloudflare's ranges, on the server itself
 * as well as in the cloud firewall (an existing server has no cloud firewall).
 */
function webPorts(config: ProvisioningConfig, sources: IpRanges | undefined): { public: string; restricted: string[] } {
    if (!planOf(config).webPortsOpen) {
        // Nothing answers on 80/443 (no route: a database-only server); the bootstrap removes
        // the rules an earlier configuration added.
        return { public: "", restricted: [] };
    }
    if (!config.host.originLockdown) {
        return { public: WEB_PORTS.join(" "), restricted: [] };
    }
    const cidrs = [...(sources?.ipv4 ?? []), ...(sources?.ipv6 ?? [])];
    if (cidrs.length === 0) {
        throw new Error("host.originLockdown is on but Cloudflare's IP ranges are missing; refusing to open 80/443 to nobody or to everybody");
    }
    return { public: "", restricted: WEB_PORTS.flatMap((port) => cidrs.map((c) => `${port}:${c}`)) };
}

/** The bootstrap script and the files it ships next to itself, all installed in /usr/local/lib/onebox. */
function bootstrapStep(config: ProvisioningConfig, ctx: StepContext, paths: AppPaths): Step {
    const names = Object.keys(ctx.scripts.bootstrap).sort();
    for (const required of ["bootstrap.sh", LAYOUT_SCRIPT_NAME]) {
        if (!names.includes(required)) {
            throw new Error(`scripts/host/bootstrap/${required} is missing`);
        }
    }
    return {
        name: "bootstrap",
        description: "Install and run the host bootstrap: Docker, firewall, SSH hardening, data volume, swap",
        directories: [dir(ETC_DIR, "0700"), dir(paths.configDir, "0700"), dir(LIB_DIR, "0755")],
        files: [
            ...names.map((n) => file(`${LIB_DIR}/${n}`, ctx.scripts.bootstrap[n], n.endsWith(".sh") ? "0755" : "0644")),
            file(paths.bootstrapEnv, renderBootstrapEnv(config, ctx), "0600"),
        ],
        run: [
            // A stack deployed before stacks had their own directories moves into them first.
            shellJoin([LAYOUT_SCRIPT, config.app.name, paths.project, ctx.dataPath]),
            shellJoin(["env", `ONEBOX_BOOTSTRAP_ENV=${paths.bootstrapEnv}`, BOOTSTRAP_SCRIPT]),
        ].join("\n"),
        secret: false,
        dependsOn: ["wait-ready"],
    };
}

// ---------------------------------------------------------------- secrets

/**
 * The env file of one app service: only the secrets it opted into as environment
 * variables (`secretsAsEnv`, H11), DATABASE_URL with the password among them; every other
 * secret is a file (see `serviceSecretFiles`).
 */
export function renderServiceEnv(config: ProvisioningConfig, service: string): string {
    const svc = config.services[service];
    const project = projectName(config);
    const lines = [`# Secrets of service ${service} (${project}) it reads from its environment (secretsAsEnv), rendered by onebox; root-only (H10).\n`];
    for (const name of [...svc.secretsAsEnv].sort()) {
        if (svc.secrets.includes(name)) {
            lines.push(`${name}=${secretRef(name, "env")}\n`);
        } else if (svc.database && name === databaseEnvOf(svc).url) {
            const url = databaseUrl(config, project, secretRef(RESERVED_SECRETS.postgresPassword, "url"), databaseEnvOf(svc));
            lines.push(`${name}=${envFileValue(name, url)}\n`);
        }
    }
    const passwordVar = svc.database ? databaseEnvOf(svc).password : null;
    if (passwordVar !== null) {
        lines.push(`${passwordVar}=${secretRef(RESERVED_SECRETS.postgresPassword, "env")}\n`);
    }
    return lines.join("");
}

/**
 * Secret files of one app service, mounted at /run/secrets (H11): the database password
 * for a database service and one file per secret it does not take as an environment
 * variable. Owned by the service's user, 0400 (0444 when the image's own, unknown user runs it).
 */
export function serviceSecretFiles(config: ProvisioningConfig, paths: AppPaths, service: string): HostFile[] {
    const svc = config.services[service];
    const owner = ownerOf(svc.user);
    const mode = svc.user === null ? "0444" : "0400";
    const svcDir = containerSecretsDir(paths, service);
    return [
        ...(hasDatabasePasswordFile(svc) ? [file(`${svcDir}/${DB_PASSWORD_FILE_NAME}`, secretRef(RESERVED_SECRETS.postgresPassword), mode, owner)] : []),
        ...fileSecrets(svc).map((n) => file(`${svcDir}/${n}`, secretRef(n), mode, owner)),
    ];
}

/**
 * Removes entries of `directory` matching `glob` that are not in `keep` (the
 * secrets of a removed service). Directories are matched with a trailing "/".
 */
function pruneLines(directory: string, glob: string, keep: string[]): string[] {
    const pattern = keep.length > 0 ? keep.map(shellQuote).join("|") : "''";
    const name = glob.endsWith("/") ? '"$(basename -- "${f}")/"' : '"${f##*/}"';
    return [
        `for f in ${shellQuote(directory)}/${glob}; do`,
        `  case ${name} in`,
        `    ${pattern}) ;;`,
        "    *) rm -rf -- \"${f}\"; printf 'removed   %s\\n' \"${f}\" ;;",
        "  esac",
        "done",
    ];
}

function secretsStep(config: ProvisioningConfig, paths: AppPaths): Step {
    const services = appServiceNames(config);
    const directories = [dir(ETC_DIR, "0700"), dir(paths.configDir, "0700"), dir(paths.envDir, "0700"), dir(paths.secretsDir, "0700")];
    const files: HostFile[] = services.map((s) => file(envFilePath(paths, s), renderServiceEnv(config, s), "0600"));
    // One directory per container, owned by the uid that reads it inside the container (the
    // 0700 root parent keeps host users out); mounted read-only at /run/secrets.
    const secretDirs: string[] = [];
    if (config.database.enabled) {
        const pgOwner = postgresUid(postgresImage(config));
        const pgDir = containerSecretsDir(paths, POSTGRES_SERVICE);
        directories.push(dir(pgDir, "0500", pgOwner));
        files.push(
            file(`${pgDir}/${POSTGRES_PASSWORD_FILE_NAME}`, secretRef(RESERVED_SECRETS.postgresPassword), "0400", pgOwner),
            // What deploy.sh sets as the role's password: the verifier, never the password (R8).
            file(`${pgDir}/${POSTGRES_SCRAM_FILE_NAME}`, secretRef(RESERVED_SECRETS.postgresPassword, "scram"), "0400", pgOwner),
        );
        if (planOf(config).databasePublished) {
            // TLS for the published port; PostgreSQL wants its key owned by its user, 0600 or less.
            files.push(
                file(`${pgDir}/${POSTGRES_TLS_CERT_FILE_NAME}`, secretRef(RESERVED_SECRETS.postgresTlsCert), "0400", pgOwner),
                file(`${pgDir}/${POSTGRES_TLS_KEY_FILE_NAME}`, secretRef(RESERVED_SECRETS.postgresTlsKey), "0400", pgOwner),
                file(`${pgDir}/${POSTGRES_HBA_FILE_NAME}`, renderPgHba(config), "0400", pgOwner),
            );
        }
        secretDirs.push(POSTGRES_SERVICE);
        if (config.database.pooler.enabled) {
            files.push(...poolerFiles(config, paths));
            directories.push(dir(containerSecretsDir(paths, POOLER_SERVICE), "0500", POOLER_USER));
            secretDirs.push(POOLER_SERVICE);
        }
    }
    const prune: string[] = [];
    for (const s of services.filter((n) => hasSecretFiles(config.services[n]))) {
        // With the image's own (unknown) user the files must be readable by any uid in the container.
        const user = config.services[s].user;
        const svcDir = containerSecretsDir(paths, s);
        const secretFiles = serviceSecretFiles(config, paths, s);
        directories.push(dir(svcDir, user === null ? "0555" : "0500", ownerOf(user)));
        files.push(...secretFiles);
        secretDirs.push(s);
        // A secret dropped from the service (or moved to its environment) leaves its directory.
        prune.push(...pruneLines(svcDir, "*", secretFiles.map((f) => f.path.slice(svcDir.length + 1))));
    }
    if (config.tls.mode === "cloudflare-origin") {
        directories.push(dir(paths.certsDir, "0700"));
        files.push(
            file(`${paths.certsDir}/origin.pem`, secretRef(RESERVED_SECRETS.tlsOriginCert), "0644"),
            file(`${paths.certsDir}/origin.key`, secretRef(RESERVED_SECRETS.tlsOriginKey), "0600"),
        );
    }
    const registries = registryLogins(config, paths);
    directories.push(...registries.directories);
    files.push(...registries.files);
    const run = [
        "shopt -s nullglob",
        ...pruneLines(paths.envDir, "*.env", services.map((s) => `${s}.env`)),
        ...pruneLines(paths.secretsDir, "*/", secretDirs.map((d) => `${d}/`)),
        ...prune,
        ...registries.run,
    ].join("\n");
    return {
        name: "secrets",
        description: "Install env files, database password files and the origin certificate (root-only directory, H10)",
        directories,
        files,
        run,
        secret: true,
        dependsOn: ["bootstrap"],
        lock: paths.lockFile,
    };
}

/**
 * PgBouncer's files (database.pooler), owned by its user, 0400: the ini, and the auth file with
 * the role's SCRAM verifier (never the password, R3), the one deploy.sh sets in PostgreSQL.
 */
export function poolerFiles(config: ProvisioningConfig, paths: AppPaths): HostFile[] {
    const d = containerSecretsDir(paths, POOLER_SERVICE);
    const project = projectName(config);
    return [
        file(`${d}/${POOLER_INI_FILE_NAME}`, renderPgbouncerIni(config, postgresContainerName(project), project), "0400", POOLER_USER),
        file(`${d}/${POOLER_AUTH_FILE_NAME}`, renderPgbouncerAuthFile(config.database.user, secretRef(RESERVED_SECRETS.postgresPassword, "scram")), "0400", POOLER_USER),
    ];
}

/** The key Docker files a registry's credentials under (Docker Hub keeps its historical URL). */
export function dockerAuthKey(server: string): string {
    return server === "docker.io" || server === "index.docker.io" ? "https://index.docker.io/v1/" : server;
}

/**
 * Registry logins as the stack's own DOCKER_CONFIG (`paths.registryDir`, 0700 root):
 * each password arrives as a 0600 file (stdin of the secret step, R3), the run
 * composes `config.json` (0600) from them in the shell (the values pass through
 * builtins and pipes only, never an argument list) and deletes the password files.
 * deploy.sh points `docker compose pull` at it. No registries: the directory goes.
 */
function registryLogins(config: ProvisioningConfig, paths: AppPaths): { directories: HostDirectory[]; files: HostFile[]; run: string[] } {
    const regs = config.deploy.registries;
    const d = paths.registryDir;
    if (regs.length === 0) {
        return { directories: [], files: [], run: [`if [[ -e ${shellQuote(d)} ]]; then rm -rf -- ${shellQuote(d)}; echo 'removed   registry logins'; fi`] };
    }
    const pw = (i: number) => `${d}/${i}.password`;
    const files = regs.map((r, i) => file(pw(i), secretRef(r.passwordSecret), "0600"));
    const run = [
        "(",
        "  umask 077",
        ...regs.map((r, i) => `  auth_${i}="$(printf '%s:%s' ${shellQuote(r.username)} "$(cat ${shellQuote(pw(i))})" | base64 -w0)"`),
        `  tmp="$(mktemp ${shellQuote(`${d}/.config.json.XXXXXX`)})"`,
        "  {",
        `    printf '{"auths":{'`,
        ...regs.map((r, i) => `    printf '${i === 0 ? "" : ","}"%s":{"auth":"%s"}' ${shellQuote(dockerAuthKey(r.server))} "\${auth_${i}}"`),
        "    printf '}}\\n'",
        '  } >"${tmp}"',
        `  mv -f -- "\${tmp}" ${shellQuote(`${d}/config.json`)}`,
        `  rm -f -- ${regs.map((_, i) => shellQuote(pw(i))).join(" ")}`,
        `  echo 'registry logins: ${regs.map((r) => r.server).join(", ")}'`,
        ")",
    ];
    return { directories: [dir(d, "0700")], files, run };
}

// ---------------------------------------------------------------- images

function imagesStep(config: ProvisioningConfig): Step {
    return {
        name: "images",
        description: "Stream the locally built images to the host (docker save | ssh docker load)",
        directories: [],
        files: [],
        run: "",
        secret: false,
        dependsOn: ["secrets"],
        upload: { images: composeImages(config) },
    };
}

// ---------------------------------------------------------------- deploy

/** The release files and their id. */
export function renderRelease(config: ProvisioningConfig, dataPath: string, trustedProxies?: IpRanges): { id: string; files: ReleaseFile[] } {
    const project = projectName(config);
    const paths = appPaths(project, dataPath);
    const files: ReleaseFile[] = [{ name: "compose.yaml", content: renderCompose(config, { project, paths }) }];
    // No route, no proxy (a database-only server): no Caddyfile either.
    if (planOf(config).proxyRuns) {
        files.push({ name: "Caddyfile", content: renderCaddyfile(config, project, { trustedProxies }) });
    } else if (planOf(config).statusServerRuns) {
        files.push({ name: "Caddyfile", content: renderStatusCaddyfile(project) });
    }
    files.push({ name: "release.manifest", content: renderManifest(config, { project, paths }) });
    return { id: releaseId(files), files };
}

/**
 * deploy.backupBeforeRelease checks its dump with the backup scripts' own check (lib.sh
 * verify_dump_archive, B1): the deploy installs that library, which the backup step (after
 * the deploy, and only with backups) installs alike.
 */
function dumpVerifyLib(config: ProvisioningConfig, ctx: StepContext, directories: ReturnType<typeof dir>[]): HostFile[] {
    if (!config.deploy.backupBeforeRelease || !config.database.enabled) return [];
    const lib = ctx.scripts.backup["lib.sh"];
    if (lib === undefined) {
        throw new Error("deploy.backupBeforeRelease is on but scripts/host/backup/ lacks lib.sh (its dump check)");
    }
    directories.push(dir(BACKUP_LIB_DIR, "0755"));
    return [file(DUMP_VERIFY_LIB, lib, "0755")];
}

function deployStep(config: ProvisioningConfig, ctx: StepContext, paths: AppPaths): Step {
    const release = renderRelease(config, ctx.dataPath, ctx.trustedProxies);
    const target = releaseDir(paths, release.id);
    const directories = [
        dir(LIB_DIR, "0755"),
        dir(SRV_DIR, "0755"),
        dir(paths.appDir, "0755"),
        dir(paths.releasesDir, "0755"),
        dir(paths.proxyDir, "0755"),
        // Mount point of the certificate directory inside the read-only /etc/caddy mount.
        dir(`${paths.proxyDir}/certs`, "0755"),
        // The proxy's own (non-root) user writes these (H12).
        dir(paths.caddyDataDir, "0700", PROXY_USER),
        dir(paths.caddyConfigDir, "0700", PROXY_USER),
        dir(paths.logDir, "0750", PROXY_USER),
        dir(STATE_DIR, "0755"),
        dir(path.posix.dirname(paths.statusDir), "0755"),
        dir(paths.statusDir, "0755"),
        dir(LOG_DIR, "0755"),
        dir(path.posix.dirname(paths.logDir), "0755"),
        dir(paths.dataDir, "0755"),
    ];
    const volumes = volumeDirectories(config, paths.dataDir);
    directories.push(...volumes.map((v) => dir(v.path, v.mode, v.owner)));
    if (config.database.enabled && config.backups?.enabled && config.backups.pointInTime) {
        // Point-in-time recovery: the WAL spool (written by PostgreSQL's archive_command) and
        // the socket directory shared with pgBackRest, both owned by the database's uid.
        const pgOwner = postgresUid(postgresImage(config));
        directories.push(dir(walSpoolDir(paths.dataDir), "0700", pgOwner), dir(postgresSocketDir(paths.dataDir), "0755", pgOwner));
    }
    // Database and Redis directories are created but never chowned here: their entrypoints own them.
    const dataDirs = [...(config.database.enabled ? [paths.postgresDataDir] : []), ...(config.redis.enabled ? [paths.redisDataDir] : [])];
    const proxyDirs = [paths.caddyDataDir, paths.caddyConfigDir, paths.logDir];
    const run = [
        ...(dataDirs.length > 0 ? [shellJoin(["mkdir", "-p", "--", ...dataDirs])] : []),
        // Certificates and logs a root proxy wrote before it ran as PROXY_USER: hand them over (a no-op once done).
        `if find ${proxyDirs.map(shellQuote).join(" ")} ! -user ${shellQuote(PROXY_USER.split(":")[0])} -print -quit | grep -q .; then`,
        `  ${shellJoin(["chown", "-R", PROXY_USER, "--", ...proxyDirs])}`,
        "fi",
        ...stackVolumeCommands(config, paths.dataDir),
        shellJoin([DEPLOY_SCRIPT, target]),
    ].join("\n");
    return {
        name: "deploy",
        description: `Install release ${release.id} and start it behind the health gate (rolls back on failure)`,
        directories,
        files: [file(DEPLOY_SCRIPT, ctx.scripts.deploy, "0755"), ...dumpVerifyLib(config, ctx, directories), ...release.files.map((f) => file(`${target}/${f.name}`, f.content, "0644"))],
        run,
        secret: false,
        dependsOn: [config.deploy.imageSource === "upload" ? "images" : "secrets"],
        lock: paths.lockFile,
    };
}

/**
 * Commands of the deploy step for stack volumes (top-level `volumes`), before the release
 * starts:
 * - refuse to start on an empty stack volume while a service's own directory of the same
 *   name (`volumes/<service>/<name>`, the form before stack volumes) still holds files: the
 *   app would come up without its data. The message says how to move it;
 * - converge the owner of the files inside each volume (the directory itself is converged
 *   with the others), so that a changed `owner` or files restored as another uid stay
 *   writable. `chown -R -h` never follows a symbolic link out of the volume.
 */
export function stackVolumeCommands(config: ProvisioningConfig, dataDir: string): string[] {
    const run: string[] = [];
    for (const v of volumeDirectories(config, dataDir).filter((d) => d.shared)) {
        for (const s of Object.keys(config.services).sort()) {
            if (!config.services[s].volumes.some((m) => m.name === v.name)) continue;
            const old = volumePath(dataDir, s, v.name);
            const q = shellQuote(old);
            const message = `volume ${v.name}: ${old} (services.${s}'s own directory before volumes.${v.name} was declared) still holds files and ${v.path} is empty; move them first: mv ${old}/* ${old}/.[!.]* ${v.path}/ (then rmdir ${old}), or delete ${old} if they are not wanted`;
            run.push(
                `if [[ -d ${q} ]] && [[ -n "$(find ${q} -mindepth 1 -print -quit)" ]] && [[ -z "$(find ${shellQuote(v.path)} -mindepth 1 -print -quit)" ]]; then`,
                `  echo ${shellQuote(message)} >&2`,
                "  exit 1",
                "fi",
            );
        }
        const [uid, gid] = v.owner.split(":");
        run.push(
            `if find ${shellQuote(v.path)} -mindepth 1 \\( ! -uid ${shellQuote(uid)} -o ! -gid ${shellQuote(gid)} \\) -print -quit | grep -q .; then`,
            `  ${shellJoin(["chown", "-R", "-h", "-P", v.owner, "--", v.path])}`,
            `  echo ${shellQuote(`owner     ${v.path} -> ${v.owner}`)}`,
            "fi",
        );
    }
    return run;
}

// ---------------------------------------------------------------- backup

/** ISO day of week (`date +%u`, 7 = Sunday) on which the daily dump is also kept as the weekly one. */
export const BACKUP_WEEKLY_DAY = "7";

/** The PITR_* settings of backup.env (pitr.sh documents them). */
function pitrEnv(config: ProvisioningConfig, ctx: StepContext): [string, string][] {
    const paths = stackPaths(config, ctx);
    return [
        ["PITR_ENABLED", "true"],
        ["PITR_CONF", paths.pgbackrestConf],
        ["PITR_CA_FILE", ctx.backup?.caFile ?? ""],
        ["PITR_DATA_DIR", paths.postgresDataDir],
        ["PITR_DATA_TARGET", postgresDataTarget(config.database.version)],
        ["PITR_SPOOL_DIR", walSpoolDir(paths.dataDir)],
        ["PITR_SOCKET_DIR", postgresSocketDir(paths.dataDir)],
        ["PITR_SCRATCH_DIR", path.posix.join(paths.dataDir, "postgres-pitr-restore")],
        ["PITR_UID", postgresUid(postgresImage(config))],
    ];
}

/**
 * /etc/onebox/<project>/backup.env: the settings backup.sh documents in its header (the
 * scripts source it themselves and refuse anything but 0600 root). Retention is
 * the bucket's lifecycle rules for a bucket the program creates, and the host's
 * prune after each backup otherwise (`backups.pruneOnHost`).
 */
export function renderBackupEnv(config: ProvisioningConfig, ctx: StepContext): string {
    const b = config.backups;
    if (!b) {
        throw new Error("renderBackupEnv: backups are not configured");
    }
    const project = projectName(config);
    const paths = stackPaths(config, ctx);
    const endpoint = ctx.backup?.endpoint ?? b.endpoint ?? "";
    // An endpoint decided elsewhere (ctx.backup) is a service the config's preset does not describe.
    const target = ctx.backup?.endpoint && ctx.backup.endpoint !== b.endpoint ? resolveS3Target({ endpoint: ctx.backup.endpoint }) : b;
    const backupDirs = backupDirectories(config, paths.dataDir);
    const db = config.database;
    const plain = (entries: [string, string][]) => envFileLines(entries);
    return [
        `# Backup settings of ${project}, rendered by onebox; secret (0600). Read by ${BACKUP_LIB_DIR}/*.sh.\n`,
        plain([
            ["BACKUP_S3_PROVIDER", target.provider],
            ["BACKUP_S3_BUCKET", ctx.backup?.bucket ?? b.bucket],
            ["BACKUP_S3_REGION", ctx.backup?.region ?? b.region],
            ["BACKUP_S3_ENDPOINT", endpoint],
            ["BACKUP_S3_PREFIX", planOf(config).backupPrefix],
        ]),
        `BACKUP_S3_ACCESS_KEY_ID=${secretRef(RESERVED_SECRETS.backupAccessKeyId, "env")}\n`,
        `BACKUP_S3_SECRET_ACCESS_KEY=${secretRef(RESERVED_SECRETS.backupSecretAccessKey, "env")}\n`,
        plain([
            // Addressing style of the provider preset (components/storage/s3-providers.ts).
            ["BACKUP_S3_FORCE_PATH_STYLE", String(S3_PRESETS[target.provider].pathStyle)],
            ["BACKUP_PRUNE", b.pruneOnHost ? "host" : "none"],
            ["BACKUP_RETENTION_DAYS", String(b.retentionDays)],
            ["BACKUP_WEEKLY_RETENTION_WEEKS", String(b.weeklyRetentionWeeks)],
            ["BACKUP_LOCAL_KEEP", String(b.local?.keep ?? 0)],
            ["BACKUP_LOCAL_DIR", b.local ? localBackupDir(paths.dataDir) : ""],
            ["BACKUP_DB_CONTAINER", db.enabled ? postgresContainerName(project) : ""],
            ["BACKUP_DB_NAME", db.enabled ? db.name : ""],
            ["BACKUP_DB_USER", db.enabled ? db.user : ""],
            ["BACKUP_AGE_RECIPIENT", b.encryptionPublicKey ?? ""],
            ["BACKUP_DIRS", backupDirs.join(" ")],
            // 0 turns weekly copies off (empty would mean the script's default, 7).
            ["BACKUP_WEEKLY_DAY", b.weeklyRetentionWeeks > 0 ? BACKUP_WEEKLY_DAY : "0"],
            ["BACKUP_STATE_DIR", paths.backupStateDir],
            ["BACKUP_STATUS_FILE", paths.backupStatusFile],
            ["BACKUP_MAX_AGE_HOURS", String(b.maxAgeHours)],
            ["BACKUP_ALERT_URL", b.alertUrl ?? ""],
            ["BACKUP_HEARTBEAT_URL", b.heartbeatUrl ?? ""],
            ["DRILL_IMAGE", db.enabled ? postgresImage(config) : ""],
            ["DRILL_TABLES", b.drill.tables.join(" ")],
        ]),
        ...(b.pointInTime ? [plain(pitrEnv(config, ctx))] : []),
    ].join("");
}

/** Where the CA bundle of `ctx.backup.caFile` is mounted in pgBackRest's container. */
export const PGBACKREST_CA_TARGET = "/etc/pgbackrest/ca.pem";

/**
 * Full base backups kept so that the recovery window reaches back `retentionDays`: fulls
 * come every 7 days, so k of them span at least 7(k - 1) days.
 */
export function pitrFullBackupsKept(retentionDays: number): number {
    return Math.ceil(retentionDays / 7) + 1;
}

/**
 * /etc/onebox/<project>/pgbackrest.conf (secret): the repository in the backup bucket under
 * `<prefix>/pitr`, addressed as the provider's preset says, and the stack's cluster
 * (stanza "onebox"), reached through its socket. Mounted read-only into pgBackRest's
 * short-lived containers, which run as the image's postgres user.
 */
export function renderPgbackrestConf(config: ProvisioningConfig, ctx: StepContext): string {
    const b = config.backups;
    if (!b?.pointInTime) {
        throw new Error("renderPgbackrestConf: backups.pointInTime is off");
    }
    const endpointUrl = ctx.backup?.endpoint ?? b.endpoint;
    const target = ctx.backup?.endpoint && ctx.backup.endpoint !== b.endpoint ? resolveS3Target({ endpoint: ctx.backup.endpoint }) : b;
    const region = ctx.backup?.region ?? b.region;
    let host = `s3.${region}.amazonaws.com`;
    let port: string | undefined;
    if (endpointUrl) {
        const url = new URL(endpointUrl);
        host = url.hostname.replace(/^\[|\]$/g, "");
        port = url.port || undefined;
    }
    const lines = [
        `# pgBackRest settings of ${projectName(config)}, rendered by onebox; secret (0400, the database's uid).`,
        "[global]",
        "repo1-type=s3",
        `repo1-path=/${planOf(config).backupPrefix}/pitr`,
        `repo1-s3-bucket=${ctx.backup?.bucket ?? b.bucket}`,
        `repo1-s3-endpoint=${host}`,
        ...(port ? [`repo1-storage-port=${port}`] : []),
        `repo1-s3-region=${region}`,
        `repo1-s3-uri-style=${S3_PRESETS[target.provider].pathStyle ? "path" : "host"}`,
        `repo1-s3-key=${secretRef(RESERVED_SECRETS.backupAccessKeyId)}`,
        `repo1-s3-key-secret=${secretRef(RESERVED_SECRETS.backupSecretAccessKey)}`,
        ...(ctx.backup?.caFile ? [`repo1-storage-ca-file=${PGBACKREST_CA_TARGET}`] : []),
        // Retention: pgBackRest expires full backups beyond this count after each backup,
        // with their differentials and every WAL segment only they needed.
        "repo1-retention-full-type=count",
        `repo1-retention-full=${pitrFullBackupsKept(b.retentionDays)}`,
        // How long a backup waits for its last WAL segment to reach the repository (pushed by the host).
        "archive-timeout=300",
        "start-fast=y",
        "compress-type=gz",
        "log-level-console=info",
        "log-level-file=off",
        "lock-path=/tmp/pgbackrest",
        "",
        `[${PITR_STANZA}]`,
        `pg1-path=${postgresDataTarget(config.database.version)}${config.database.version >= 18 ? `/${config.database.version}/docker` : ""}`,
        `pg1-socket-path=${POSTGRES_SOCKET_DIR}`,
        `pg1-user=${config.database.user}`,
        `pg1-database=${config.database.name}`,
        "",
    ];
    return lines.join("\n");
}

function backupStep(config: ProvisioningConfig, ctx: StepContext): Step {
    const paths = stackPaths(config, ctx);
    const project = projectName(config);
    const base = { name: "backup" as const, dependsOn: ["deploy" as StepName], lock: paths.lockFile };
    if (!planOf(config).backupsEnabled || !config.backups) {
        // Converge: a stack that turns backups off stops its timers.
        return {
            ...base,
            description: "Backups are off: stop and disable the backup timers if they exist",
            directories: [],
            files: [],
            // pgBackRest's settings hold the bucket key: they go with the units.
            run: [...backupTimers(project).map((t) => `systemctl disable --now ${t} 2>/dev/null || true`), shellJoin(["rm", "-f", "--", paths.pgbackrestConf])].join("\n"),
            secret: false,
        };
    }
    const b = config.backups;
    const needed = [BACKUP_SCRIPTS.backup, BACKUP_SCRIPTS.status, ...(config.database.enabled ? [BACKUP_SCRIPTS.drill] : [])];
    const missing = needed.filter((n) => !(n in ctx.scripts.backup));
    if (missing.length > 0) {
        throw new Error(`backups are enabled but scripts/host/backup/ lacks ${missing.join(", ")}`);
    }
    const pitr = b.pointInTime && config.database.enabled;
    if (pitr && !(BACKUP_SCRIPTS.pitr in ctx.scripts.backup)) {
        throw new Error(`backups.pointInTime is on but scripts/host/backup/ lacks ${BACKUP_SCRIPTS.pitr}`);
    }
    const units = renderBackupUnits({
        project,
        backupEnv: paths.backupEnv,
        schedule: b.schedule,
        drillSchedule: config.database.enabled ? b.drill.schedule : undefined,
        pitr: pitr ? { spoolDir: walSpoolDir(paths.dataDir) } : undefined,
    });
    const timers = units.filter((u) => u.name.endsWith(".timer") || u.name.endsWith(".path")).map((u) => u.name);
    const stale = backupTimers(project).filter((t) => !timers.includes(t));
    const scripts = Object.keys(ctx.scripts.backup).sort();
    return {
        ...base,
        description: "Install the backup scripts, their settings and the backup, drill and status timers",
        directories: [
            dir(ETC_DIR, "0700"),
            dir(paths.configDir, "0700"),
            dir(BACKUP_LIB_DIR, "0755"),
            dir(STATE_DIR, "0755"),
            dir(path.posix.dirname(paths.backupStateDir), "0755"),
            dir(paths.backupStateDir, "0700"),
            dir(paths.statusDir, "0755"),
        ],
        files: [
            ...scripts.map((n) => file(`${BACKUP_LIB_DIR}/${n}`, ctx.scripts.backup[n], "0755")),
            file(paths.backupEnv, renderBackupEnv(config, ctx), "0600"),
            ...(pitr ? [file(paths.pgbackrestConf, renderPgbackrestConf(config, ctx), "0400", postgresUid(postgresImage(config)))] : []),
            ...units.map((u) => file(`${SYSTEMD_DIR}/${u.name}`, u.content, "0644")),
        ],
        run: [
            "systemctl daemon-reload",
            ...stale.map((t) => `systemctl disable --now ${t} 2>/dev/null || true`),
            // The repository must exist before the first WAL segment can be pushed.
            ...(pitr
                ? [shellJoin(["env", `ONEBOX_BACKUP_ENV=${paths.backupEnv}`, `${BACKUP_LIB_DIR}/${BACKUP_SCRIPTS.pitr}`, "stanza"])]
                : [shellJoin(["rm", "-f", "--", paths.pgbackrestConf])]),
            shellJoin(["systemctl", "enable", "--now", ...timers]),
        ].join("\n"),
        secret: true,
    };
}

// ---------------------------------------------------------------- jobs

/** The scheduled jobs' settings as the renderers take them (render/jobs.ts). */
export function jobsInput(config: ProvisioningConfig, paths: AppPaths): JobsInput {
    return {
        app: config.app.name,
        project: projectName(config),
        appDir: paths.appDir,
        lockFile: paths.lockFile,
        lockWaitSeconds: STACK_LOCK_WAIT_SECONDS,
        configDir: jobsConfigDir(paths),
        jobs: config.jobs,
        fallbackAlertUrl: config.backups?.alertUrl,
    };
}

/**
 * The runner, one settings file (0600: it may hold the alert URL) and a service and timer per
 * job. Converges: the units and settings of a job no longer configured are stopped and removed,
 * so a stack without jobs removes them all. Runs under the stack's lock, like every run of a job.
 */
function jobsStep(config: ProvisioningConfig, ctx: StepContext, paths: AppPaths): Step {
    const input = jobsInput(config, paths);
    const names = Object.keys(config.jobs).sort();
    const runner = ctx.scripts.jobs?.["run-job.sh"];
    if (names.length > 0 && runner === undefined) {
        throw new Error("jobs are configured but scripts/host/jobs/ lacks run-job.sh");
    }
    const units = renderJobUnits(input);
    const keep = units.map((u) => u.name);
    const timers = keep.filter((n) => n.endsWith(".timer"));
    const prefix = jobUnitPrefix(projectName(config));
    const keepPattern = keep.length > 0 ? keep.map(shellQuote).join("|") : "''";
    const run = [
        "shopt -s nullglob",
        // A job removed from the configuration: its timer stops, a run waiting for the lock
        // (none can be running: this step holds the lock) stops, its units go.
        `for f in ${SYSTEMD_DIR}/${prefix}*.timer ${SYSTEMD_DIR}/${prefix}*.service; do`,
        '  case "${f##*/}" in',
        `    ${keepPattern}) ;;`,
        '    *) unit="${f##*/}"; unit="${unit%.*}"',
        '       systemctl disable --now "${unit}.timer" >/dev/null 2>&1 || true',
        '       systemctl stop "${unit}.service" >/dev/null 2>&1 || true',
        `       rm -f -- ${SYSTEMD_DIR}/"\${unit}.timer" ${SYSTEMD_DIR}/"\${unit}.service"`,
        "       printf 'removed   %s\\n' \"${f}\" ;;",
        "  esac",
        "done",
        ...pruneLines(input.configDir, "*.conf", names.map((n) => `${n}.conf`)),
        "systemctl daemon-reload",
        // restart: a changed schedule takes effect now, not after the old one's next elapse.
        ...(timers.length > 0 ? [shellJoin(["systemctl", "enable", ...timers]), shellJoin(["systemctl", "restart", ...timers])] : []),
    ].join("\n");
    const alerts = names.some((n) => (config.jobs[n].alertUrl ?? input.fallbackAlertUrl) !== undefined);
    return {
        name: "jobs",
        description: names.length > 0 ? `Install the scheduled jobs (${names.join(", ")}): settings, services and timers` : "No scheduled jobs: remove the units of any job no longer configured",
        directories: [dir(ETC_DIR, "0700"), dir(paths.configDir, "0700"), dir(input.configDir, "0700"), dir(JOBS_LIB_DIR, "0755")],
        files: [
            ...(runner !== undefined ? [file(JOB_RUNNER, runner, "0755")] : []),
            ...names.map((n) => file(`${input.configDir}/${n}.conf`, renderJobSettings(input, n), "0600")),
            ...units.map((u) => file(`${SYSTEMD_DIR}/${u.name}`, u.content, "0644")),
        ],
        run,
        // Alert URLs often carry a token: the step's script then stays out of logs (R4).
        secret: alerts,
        // After the backup step, which follows the deploy: every step runs after the one before it.
        dependsOn: ["backup"],
        lock: paths.lockFile,
    };
}

// ---------------------------------------------------------------- the list

/** The ordered steps of a stack. Pure: same config and context, same steps. */
export function buildSteps(config: ProvisioningConfig, ctx: StepContext): Step[] {
    const paths = stackPaths(config, ctx);
    const steps: Step[] = [waitReadyStep(), bootstrapStep(config, ctx, paths), secretsStep(config, paths)];
    if (config.deploy.imageSource === "upload") {
        steps.push(imagesStep(config));
    }
    steps.push(deployStep(config, ctx, paths), backupStep(config, ctx), jobsStep(config, ctx, paths));
    for (const step of steps) {
        const refs = stepSecrets(step);
        if (refs.length > 0 && !step.secret) {
            throw new Error(`step ${step.name} references secrets (${refs.join(", ")}) but is not marked secret`);
        }
    }
    return steps;
}

/** Secret names a step's files reference. */
export function stepSecrets(step: Step): string[] {
    return [...new Set(step.files.flatMap((f) => referencedSecrets(f.content)))].sort();
}

// ---------------------------------------------------------------- scripts

/** Delimiter of the here-documents; base64 never produces "_", so no content line can equal it. */
const EOF_MARK = "ONEBOX_EOF";

function base64Lines(content: string): string {
    const b64 = Buffer.from(content, "utf8").toString("base64");
    const lines = b64.match(/.{1,76}/g) ?? [];
    return lines.map((l) => `${l}\n`).join("");
}

const SCRIPT_HELPERS = `# put_dir PATH MODE OWNER:GROUP: create the directory or converge its mode and owner.
put_dir() {
  install -d -m "$2" -o "\${3%%:*}" -g "\${3#*:}" -- "$1"
}

# put_file PATH MODE OWNER:GROUP < base64: write atomically (temp file in a 0700
# directory, install with mode and owner under a per-run name next to the target,
# rename over it).
put_file() {
  local dest="$1" mode="$2" owner="$3" tmp next
  tmp="$(mktemp "\${work}/file.XXXXXX")"
  base64 -d >"\${tmp}"
  mkdir -p -- "$(dirname -- "\${dest}")"
  if [[ -f "\${dest}" && ! -L "\${dest}" ]] && cmp -s -- "\${tmp}" "\${dest}"; then
    chmod -- "\${mode}" "\${dest}"
    chown -- "\${owner}" "\${dest}"
    printf 'unchanged %s\\n' "\${dest}"
  else
    next="$(mktemp -- "\${dest}.onebox-new.XXXXXX")"
    install -m "\${mode}" -o "\${owner%%:*}" -g "\${owner#*:}" -- "\${tmp}" "\${next}"
    mv -f -T -- "\${next}" "\${dest}"
    printf 'updated   %s\\n' "\${dest}"
  fi
  rm -f -- "\${tmp}"
}

# lock_stack LOCK_FILE WHAT WAIT_SECONDS: the stack's host-wide lock (R7) on fd 9, held
# until this script exits and inherited by deploy.sh, which takes the same lock (on the
# same open file that is a no-op, so the deploy it runs does not wait for itself). A
# second run waits at most WAIT_SECONDS, naming the holder, then fails without changes.
lock_stack() {
  local lock="$1" what="$2" wait="$3" holder
  mkdir -p -- "$(dirname -- "\${lock}")"
  exec 9>>"\${lock}"
  if ! flock --nonblock 9; then
    holder="$(head -c 300 -- "\${lock}" 2>/dev/null || true)"
    printf 'onebox: waiting (at most %s s) for the lock %s, held by %s\\n' "\${wait}" "\${lock}" "\${holder:-an unknown process}"
    if ! flock --wait "\${wait}" 9; then
      holder="$(head -c 300 -- "\${lock}" 2>/dev/null || true)"
      printf 'onebox: error: %s is still held after %s s by %s; nothing was changed. Let that run finish, then run this again.\\n' \\
        "\${lock}" "\${wait}" "\${holder:-an unknown process}" >&2
      exit 1
    fi
  fi
  printf '%s (pid %s, user %s, since %s)\\n' "\${what}" "$$" "\${SUDO_USER:-$(id -un)}" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"\${lock}"
}
`;

function buildScript(step: Step, contentOf: (f: HostFile) => string): string {
    if (step.upload) {
        throw new Error(`step ${step.name} runs locally; it has no host script`);
    }
    const body: string[] = [];
    for (const d of step.directories) {
        body.push(`  ${shellJoin(["put_dir", d.path, d.mode, d.owner])}`);
    }
    for (const f of step.files) {
        body.push(`  ${shellJoin(["put_file", f.path, f.mode, f.owner])} <<'${EOF_MARK}'\n${base64Lines(contentOf(f))}${EOF_MARK}`);
    }
    body.push("  run_step");
    const run = step.run === "" ? ["  :"] : step.run.split("\n").map((l) => (l === "" ? l : `  ${l}`));
    return [
        "#!/usr/bin/env bash",
        `# onebox step "${step.name}": ${step.description}.`,
        "# Rendered by onebox; runs as root on the host through `bash -s` (this text is its stdin).",
        "set -euo pipefail",
        "",
        SCRIPT_HELPERS,
        "run_step() {",
        ...run,
        "}",
        "",
        "main() {",
        // Nothing below may read the rest of this script as its input.
        "  exec </dev/null",
        "  umask 022",
        "  work=\"$(mktemp -d)\"",
        "  trap 'rm -rf -- \"${work}\"' EXIT",
        ...(step.lock ? [`  ${shellJoin(["lock_stack", step.lock, `onebox step ${step.name}`, String(STACK_LOCK_WAIT_SECONDS)])}`] : []),
        ...body,
        "}",
        "",
        // Last line: a truncated transfer never runs a partial script.
        'main "$@"',
        "",
    ].join("\n");
}

/** The step's stdin with the secret values substituted (for the SSH command only). */
export function renderStepScript(step: Step, secretValues: Readonly<Record<string, string>>): string {
    const missing = stepSecrets(step).filter((n) => !(n in secretValues));
    if (missing.length > 0) {
        throw new Error(`step ${step.name}: no value for secret${missing.length === 1 ? "" : "s"} ${missing.join(", ")}`);
    }
    return buildScript(step, (f) => substituteSecrets(f.content, secretValues));
}

/** The step's stdin with every secret shown as ******** (for the render command and logs). */
export function maskStepScript(step: Step): string {
    return buildScript(step, (f) => maskSecrets(f.content));
}

export function sha256(text: string): string {
    return createHash("sha256").update(text).digest("hex");
}
