/**
 * The host bootstrap as the provisioning step ships it: scripts/host/bootstrap/bootstrap.sh
 * assembled with its lib/ and modules/ (components/provisioning/host-scripts.ts), written with
 * the files it ships into a temporary directory, so tests run the very script a host runs.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { loadHostScripts } from "../../components/provisioning/host-scripts";

/** scripts/host/bootstrap in this checkout. */
export const BOOTSTRAP_SOURCE_DIR = resolve(__dirname, "../../scripts/host/bootstrap");

export interface ShippedBootstrap {
    /** Directory holding bootstrap.sh (assembled) and the files it ships. */
    readonly dir: string;
    /** Path of the assembled bootstrap.sh in `dir`. */
    readonly path: string;
    /** Its text. */
    readonly script: string;
}

/** Writes the shipped bootstrap files into a new temporary directory (under `parent`, default the OS's). */
export function shippedBootstrap(parent: string = tmpdir()): ShippedBootstrap {
    const files = loadHostScripts(resolve(BOOTSTRAP_SOURCE_DIR, "..")).bootstrap;
    const dir = mkdtempSync(join(parent, "onebox-bootstrap-shipped-"));
    for (const [name, content] of Object.entries(files)) {
        writeFileSync(join(dir, name), content, { mode: name.endsWith(".sh") ? 0o755 : 0o644 });
    }
    return { dir, path: join(dir, "bootstrap.sh"), script: files["bootstrap.sh"] };
}
