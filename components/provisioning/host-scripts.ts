/**
 * Reads the host-side scripts that the steps install. They are real files
 * under scripts/host/ (owned by their authors); the steps embed their content,
 * so a changed script changes the step's trigger hash and re-runs the step.
 * Read when called (not at import), so tests inject their own content.
 */
import * as fs from "node:fs";
import * as path from "node:path";

export interface HostScripts {
    /** scripts/host/bootstrap/*: bootstrap.sh and the files it ships next to itself, by file name. */
    bootstrap: Record<string, string>;
    /** scripts/host/deploy/deploy.sh */
    deploy: string;
    /** scripts/host/backup/*.sh by file name (empty when the directory does not exist). */
    backup: Record<string, string>;
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
    return {
        bootstrap: readDir(path.join(scriptsDir, "bootstrap"), () => true),
        deploy: fs.readFileSync(path.join(scriptsDir, REQUIRED_SCRIPTS.deploy), "utf8"),
        backup: readDir(path.join(scriptsDir, "backup"), (n) => n.endsWith(".sh")),
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
