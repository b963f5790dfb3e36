/**
 * Reads the host-side scripts that the steps install. They are real files
 * under scripts/host/ (owned by their authors); the steps embed their content,
 * so a changed script changes the step's trigger hash and re-runs the step.
 * Read when called (not at import), so tests inject their own content.
 */
import * as fs from "node:fs";
import * as path from "node:path";

export interface HostScripts {
    /**
     * scripts/host/bootstrap/*: bootstrap.sh (assembled: its lib/ and modules/ inlined, see
     * {@link assembleBootstrap}) and the files it ships next to itself, by file name.
     */
    bootstrap: Record<string, string>;
    /** scripts/host/deploy/deploy.sh */
    deploy: string;
    /** scripts/host/backup/*.sh by file name (empty when the directory does not exist). */
    backup: Record<string, string>;
    /** scripts/host/jobs/*.sh by file name (run-job.sh): needed only by a stack with `jobs`. */
    jobs?: Record<string, string>;
}

/** The repository's scripts/host directory. */
export function defaultScriptsDir(): string {
    // The package root holds scripts/host; this file runs from components/ (the
    // program, tsx) or dist/components/ (the built library), so look upwards.
    let dir = __dirname;
    for (let i = 0; i < 5; i++) {
        const candidate = path.join(dir, "scripts", "host");
        if (fs.existsSync(path.join(candidate, REQUIRED_SCRIPTS.bootstrap))) return candidate;
        dir = path.dirname(dir);
    }
    return path.resolve(__dirname, "..", "..", "scripts", "host");
}

/** Relative paths (under scripts/host) of the scripts every stack needs. */
export const REQUIRED_SCRIPTS = { bootstrap: "bootstrap/bootstrap.sh", deploy: "deploy/deploy.sh" } as const;

/** Script run on the machine running Pulumi for `deploy.imageSource: upload`, relative to the project root. */
export const UPLOAD_IMAGES_SCRIPT = "scripts/host/deploy/upload-images.sh";

/**
 * Loads the scripts from `scriptsDir`. Throws one error naming every missing
 * required file; a missing backup directory yields no backup scripts (the
 * backup step then reports which ones it needs, if backups are enabled).
 */
export function loadHostScripts(scriptsDir: string = defaultScriptsDir()): HostScripts {
    const missing = Object.values(REQUIRED_SCRIPTS).filter((rel) => !fs.existsSync(path.join(scriptsDir, rel)));
    if (missing.length > 0) {
        throw new Error(`host scripts missing under ${scriptsDir}: ${missing.join(", ")} (the provisioning steps install them on the host)`);
    }
    const bootstrapDir = path.join(scriptsDir, "bootstrap");
    const bootstrap = readDir(bootstrapDir, () => true);
    bootstrap["bootstrap.sh"] = assembleBootstrap(bootstrap["bootstrap.sh"], bootstrapParts(bootstrapDir));
    return {
        bootstrap,
        deploy: fs.readFileSync(path.join(scriptsDir, REQUIRED_SCRIPTS.deploy), "utf8"),
        backup: readDir(path.join(scriptsDir, "backup"), (n) => n.endsWith(".sh")),
        jobs: readDir(path.join(scriptsDir, "jobs"), (n) => n.endsWith(".sh")),
    };
}

/** Regular files of a directory (not recursive) by name, sorted; empty when it does not exist. */
function readDir(dir: string, include: (name: string) => boolean): Record<string, string> {
    const files: Record<string, string> = {};
    if (!fs.existsSync(dir)) {
        return files;
    }
    for (const name of fs.readdirSync(dir).sort()) {
        const full = path.join(dir, name);
        if (include(name) && fs.statSync(full).isFile()) {
            files[name] = fs.readFileSync(full, "utf8");
        }
    }
    return files;
}

/** The line of bootstrap.sh that {@link assembleBootstrap} replaces with the parts. */
export const BOOTSTRAP_PARTS_MARKER = "# @MODULES@";

/** Sub-directories of scripts/host/bootstrap whose *.sh files are inlined, in this order. */
export const BOOTSTRAP_PART_DIRS = ["lib", "modules"] as const;

/** A file inlined into bootstrap.sh: its path under scripts/host/bootstrap and its content. */
export interface ScriptPart {
    readonly path: string;
    readonly content: string;
}

/** The *.sh files of lib/ then modules/ under `bootstrapDir`, each directory in file-name order. */
export function bootstrapParts(bootstrapDir: string): ScriptPart[] {
    return BOOTSTRAP_PART_DIRS.flatMap((sub) =>
        Object.entries(readDir(path.join(bootstrapDir, sub), (n) => n.endsWith(".sh"))).map(([name, content]) => ({ path: `${sub}/${name}`, content })),
    );
}

/**
 * The one bootstrap script the step sends: `main` (scripts/host/bootstrap/bootstrap.sh) with
 * every part inlined at its {@link BOOTSTRAP_PARTS_MARKER} line, each under a divider naming its
 * file, without its leading `# shellcheck shell=bash` line (which only serves linting the file
 * alone). Pure and deterministic (same input, same bytes), so the step's trigger hash changes
 * only when a file does. A script without the marker and without parts is returned as it is;
 * a marker without parts, or parts without exactly one marker, is an error.
 */
export function assembleBootstrap(main: string, parts: readonly ScriptPart[]): string {
    const lines = main.split("\n");
    const at = lines.flatMap((l, i) => (l === BOOTSTRAP_PARTS_MARKER ? [i] : []));
    if (at.length === 0 && parts.length === 0) {
        return main;
    }
    if (at.length !== 1 || parts.length === 0) {
        throw new Error(
            `scripts/host/bootstrap/bootstrap.sh needs exactly one "${BOOTSTRAP_PARTS_MARKER}" line and at least one file under ${BOOTSTRAP_PART_DIRS.join("/ or ")}/ ` +
                `(found ${at.length} marker lines and ${parts.length} files)`,
        );
    }
    const inlined = parts.map((p) => {
        const body = p.content.replace(/^# shellcheck shell=bash\n/, "");
        const divider = `# ${"-".repeat(76 - p.path.length)} ${p.path}`;
        return `${divider}\n${body.endsWith("\n") ? body : `${body}\n`}`;
    });
    return [...lines.slice(0, at[0]), inlined.join("\n").replace(/\n$/, ""), ...lines.slice(at[0] + 1)].join("\n");
}
