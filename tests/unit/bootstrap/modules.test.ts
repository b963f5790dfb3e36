/**
 * The bootstrap by concern: scripts/host/bootstrap/modules/NN-NAME.sh each hold NAME_apply
 * and NAME_check side by side, bootstrap.sh runs them in file-name order, and the provisioning
 * step sends one assembled script (components/provisioning/host-scripts.ts) that parses, is
 * ShellCheck clean and is the same bytes on every load (R5: the bootstrap step's trigger is a
 * hash of its content, so an unchanged checkout must not re-run it).
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assembleBootstrap, bootstrapParts, BOOTSTRAP_PARTS_MARKER, loadHostScripts } from "../../../components/provisioning/host-scripts";
import { BOOTSTRAP_SOURCE_DIR as DIR, shippedBootstrap } from "../../helpers/bootstrap-script";

const SCRIPTS_DIR = join(DIR, "..");
const MODULE_FILE = /^(\d\d)-([a-z0-9]+(?:-[a-z0-9]+)*)\.sh$/;
const moduleFiles = readdirSync(join(DIR, "modules")).sort();
const main = readFileSync(join(DIR, "bootstrap.sh"), "utf8");
const shipped = shippedBootstrap();
after(() => rmSync(shipped.dir, { recursive: true, force: true }));

/** Function names a bash file defines at the start of a line (`name() {`). */
function functionsOf(text: string): string[] {
    return [...text.matchAll(/^([a-z_][a-z0-9_]*)\(\) \{/gm)].map((m) => m[1]);
}

/** The module name of a file (`60-docker.sh` -> `docker`, `20-data-volume.sh` -> `data_volume`). */
function moduleName(file: string): string {
    const m = MODULE_FILE.exec(file);
    assert.ok(m, `${file}: module files are named NN-name.sh`);
    return m[2].replace(/-/g, "_");
}

void describe("bootstrap modules: one concern per file, apply and check side by side", () => {
    void it("has the modules of every concern, each named NN-name.sh", () => {
        assert.deepEqual(moduleFiles.map(moduleName), ["host", "data_volume", "swap", "sysctl", "packages", "docker", "ssh", "firewall", "fail2ban", "upgrades"]);
    });

    for (const file of moduleFiles) {
        void it(`${file} defines ${moduleName(file)}_apply and ${moduleName(file)}_check, and no other module's entry points`, () => {
            const text = readFileSync(join(DIR, "modules", file), "utf8");
            const fns = functionsOf(text);
            const name = moduleName(file);
            assert.ok(fns.includes(`${name}_apply`), `${file} has no ${name}_apply()`);
            assert.ok(fns.includes(`${name}_check`), `${file} has no ${name}_check()`);
            const foreign = fns.filter((f) => /_(apply|check)$/.test(f) && f !== `${name}_apply` && f !== `${name}_check`);
            assert.deepEqual(foreign, []);
            assert.ok(text.startsWith("# shellcheck shell=bash\n"), `${file} starts with the shellcheck shell directive`);
        });
    }

    void it("bootstrap.sh applies and checks the modules in file-name order (MODULES)", () => {
        const listed = /^readonly MODULES=\(([^)]*)\)$/m.exec(main)?.[1].trim().split(/\s+/);
        assert.deepEqual(listed, moduleFiles.map(moduleName));
        assert.match(main, /for m in "\$\{MODULES\[@\]\}"; do "\$\{m\}_apply"; done/);
        assert.match(main, /for m in "\$\{MODULES\[@\]\}"; do "\$\{m\}_check"; done/);
    });

    void it("no function is defined twice across bootstrap.sh, lib/ and the modules", () => {
        const all = functionsOf(shipped.script);
        assert.deepEqual(all.filter((f, i) => all.indexOf(f) !== i), []);
    });
});

void describe("the assembled bootstrap (what the step sends)", () => {
    void it("is bootstrap.sh with lib/*.sh then modules/*.sh inlined at the marker, each exactly once", () => {
        const parts = bootstrapParts(DIR).map((p) => p.path);
        assert.deepEqual(parts, [...readdirSync(join(DIR, "lib")).sort().map((f) => `lib/${f}`), ...moduleFiles.map((f) => `modules/${f}`)]);
        const [before, afterMarker] = main.split(`${BOOTSTRAP_PARTS_MARKER}\n`);
        assert.ok(shipped.script.startsWith(before) && shipped.script.endsWith(afterMarker));
        assert.ok(!shipped.script.includes(BOOTSTRAP_PARTS_MARKER));
        for (const p of bootstrapParts(DIR)) {
            const body = p.content.replace(/^# shellcheck shell=bash\n/, "");
            assert.equal(shipped.script.split(body).length, 2, `${p.path} is inlined exactly once`);
        }
        assert.ok(shipped.script.endsWith('\nmain "$@"\n'));
    });

    void it("is byte-identical on every load (stable trigger hash)", () => {
        const a = loadHostScripts(SCRIPTS_DIR).bootstrap;
        const b = loadHostScripts(SCRIPTS_DIR).bootstrap;
        assert.equal(a["bootstrap.sh"], b["bootstrap.sh"]);
        assert.deepEqual(a, b);
        assert.equal(a["bootstrap.sh"], shipped.script);
    });

    void it("parses (bash -n)", () => {
        const r = spawnSync("bash", ["-n", shipped.path], { encoding: "utf8" });
        assert.equal(r.status, 0, r.stderr);
    });

    void it("is ShellCheck clean as one file (shellcheck -x)", (t) => {
        const r = spawnSync("shellcheck", ["-x", shipped.path], { encoding: "utf8", cwd: shipped.dir });
        if (r.error && (r.error as NodeJS.ErrnoException).code === "ENOENT" && !process.env.CI) {
            t.skip("shellcheck is not installed (required in CI)");
            return;
        }
        assert.equal(r.status, 0, r.stdout + r.stderr);
    });

    void it("bootstrap.sh alone (not assembled) refuses to run and says why", () => {
        const r = spawnSync("bash", [join(DIR, "bootstrap.sh"), "--render", "sshd"], { encoding: "utf8", env: { PATH: process.env.PATH ?? "/usr/bin:/bin" } });
        assert.equal(r.status, 1);
        assert.match(r.stderr, /module host is missing: run the assembled script/);
    });
});

void describe("assembleBootstrap", () => {
    const parts = [
        { path: "lib/a.sh", content: "# shellcheck shell=bash\na() { :; }\n" },
        { path: "modules/10-b.sh", content: "# shellcheck shell=bash\nb_apply() { :; }" },
    ];

    void it("inlines each part under a divider naming its file, without its shellcheck shell line", () => {
        const out = assembleBootstrap(`#!/usr/bin/env bash\nx=1\n${BOOTSTRAP_PARTS_MARKER}\nmain "$@"\n`, parts);
        assert.equal(
            out,
            [
                "#!/usr/bin/env bash",
                "x=1",
                `# ${"-".repeat(68)} lib/a.sh`,
                "a() { :; }",
                "",
                `# ${"-".repeat(61)} modules/10-b.sh`,
                "b_apply() { :; }",
                'main "$@"',
                "",
            ].join("\n"),
        );
    });

    void it("leaves a script without marker and parts as it is; refuses a marker or parts alone, and two markers", () => {
        assert.equal(assembleBootstrap("#!/bin/bash\necho hi\n", []), "#!/bin/bash\necho hi\n");
        assert.throws(() => assembleBootstrap("#!/bin/bash\n", parts), /exactly one "# @MODULES@" line .*found 0 marker lines and 2 files/);
        assert.throws(() => assembleBootstrap(`${BOOTSTRAP_PARTS_MARKER}\n`, []), /found 1 marker lines and 0 files/);
        assert.throws(() => assembleBootstrap(`${BOOTSTRAP_PARTS_MARKER}\n${BOOTSTRAP_PARTS_MARKER}\n`, parts), /found 2 marker lines/);
    });

    void it("loadHostScripts ships the assembled script and no lib/ or modules/ file of its own", () => {
        const dir = mkdtempSync(join(tmpdir(), "onebox-assemble-"));
        try {
            for (const [rel, content] of [
                ["bootstrap/bootstrap.sh", `#!/usr/bin/env bash\n${BOOTSTRAP_PARTS_MARKER}\nmain "$@"\n`],
                ["bootstrap/daemon.json", "{}\n"],
                ["bootstrap/lib/common.sh", "# shellcheck shell=bash\nc() { :; }\n"],
                ["bootstrap/modules/10-x.sh", "# shellcheck shell=bash\nx_apply() { :; }\nx_check() { :; }\n"],
                ["deploy/deploy.sh", "#!/bin/bash\n"],
            ]) {
                const full = join(dir, rel);
                mkdirSync(join(full, ".."), { recursive: true });
                writeFileSync(full, content);
            }
            const b = loadHostScripts(dir).bootstrap;
            assert.deepEqual(Object.keys(b).sort(), ["bootstrap.sh", "daemon.json"]);
            assert.match(b["bootstrap.sh"], /lib\/common\.sh\nc\(\) \{ :; \}\n\n# -+ modules\/10-x\.sh\nx_apply\(\)/);
        } finally {
            rmSync(dir, { recursive: true, force: true });
        }
    });
});
