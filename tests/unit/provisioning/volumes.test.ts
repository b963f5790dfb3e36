/**
 * Stack volumes (top-level `volumes`): plan 002's API and job runner share the uploads
 * directory. One directory on the host, mounted read-write or read-only, owned as
 * declared, archived once by the nightly backup; the per-service form keeps rendering as
 * before. The deploy's volume commands run in bash against a scratch data path.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parse } from "yaml";
import type { RawConfig } from "../../../components/config/load";
import { buildSteps, maskStepScript, renderBackupEnv, renderRelease, stackVolumeCommands, type Step } from "../../../components/provisioning/steps";
import { backupDirectories, serviceMounts, volumeDirectories } from "../../../components/provisioning/volumes";
import { configOf, contextFor } from "./fixtures";

type Services = Record<string, { volumes?: unknown[]; user?: string | null }>;

/** Plan 002 with shared uploads: the API writes them, the worker reads them. */
function shared(change?: (raw: RawConfig) => void) {
    return configOf("cleaning", (raw) => {
        raw.volumes = { uploads: { owner: "10001:10001" } };
        const services = raw.services as Services;
        services.api.volumes = [{ name: "uploads", mountPath: "/app/uploads" }];
        services.worker.volumes = [{ name: "uploads", mountPath: "/srv/uploads", readOnly: true }];
        change?.(raw);
    });
}

function deployStep(config: ReturnType<typeof shared>): Step {
    const found = buildSteps(config, contextFor(config)).find((s) => s.name === "deploy");
    assert.ok(found, "deploy step");
    return found;
}

function composeServices(config: ReturnType<typeof shared>): Record<string, { volumes?: { source: string; target: string; read_only?: boolean }[] }> {
    const compose = renderRelease(config, "/mnt/data", contextFor(config).trustedProxies).files.find((f) => f.name === "compose.yaml");
    assert.ok(compose);
    return (parse(compose.content) as { services: Record<string, { volumes?: { source: string; target: string; read_only?: boolean }[] }> }).services;
}

describe("stack volumes: compose, directories, backup manifest", () => {
    test("two services mount one directory: read-write in the API, read-only in the worker", () => {
        const services = composeServices(shared());
        assert.deepEqual(services.api.volumes?.[0], { type: "bind", source: "/mnt/data/cleaning-prod/shared/uploads", target: "/app/uploads", bind: { create_host_path: false } });
        assert.deepEqual(services.worker.volumes?.[0], {
            type: "bind",
            source: "/mnt/data/cleaning-prod/shared/uploads",
            target: "/srv/uploads",
            read_only: true,
            bind: { create_host_path: false },
        });
    });

    test("the deploy creates the directory once, 0770, owned by the declared owner", () => {
        const config = shared((raw) => ((raw.volumes as Record<string, unknown>).uploads = { owner: "10001:2000" }));
        const dirs = deployStep(config).directories.filter((d) => d.path.includes("/shared/") || d.path.includes("/volumes/"));
        assert.deepEqual(dirs, [{ path: "/mnt/data/cleaning-prod/shared/uploads", mode: "0770", owner: "10001:2000" }]);
    });

    test("without owner, the one user of the services that mount it owns it; image users (null) do not count", () => {
        const config = shared((raw) => {
            (raw.volumes as Record<string, unknown>).uploads = {};
            (raw.services as Services).web.volumes = [{ name: "uploads", mountPath: "/pub", readOnly: true }];
            (raw.services as Services).web.user = null;
            (raw.services as Services).api.user = "1500:1500";
            (raw.services as Services).worker.user = "1500";
        });
        assert.deepEqual(
            volumeDirectories(config, "/d").map((d) => [d.path, d.owner, d.mode, d.backup]),
            [["/d/shared/uploads", "1500:1500", "0770", true]],
        );
        assert.deepEqual(serviceMounts(config, "/d", "web"), [{ hostPath: "/d/shared/uploads", mountPath: "/pub", readOnly: true }]);
    });

    test("the nightly backup manifest (BACKUP_DIRS) lists a shared volume once; backup: false leaves it out", () => {
        const config = shared((raw) => {
            (raw.volumes as Record<string, unknown>).cache = { backup: false };
            (raw.services as Services).worker.volumes = [
                { name: "uploads", mountPath: "/srv/uploads", readOnly: true },
                { name: "cache", mountPath: "/srv/cache" },
            ];
        });
        assert.match(renderBackupEnv(config, contextFor(config)), /^BACKUP_DIRS='\/mnt\/data\/cleaning-prod\/shared\/uploads'$/m);
        assert.deepEqual(backupDirectories(config, "/mnt/data/cleaning-prod"), ["/mnt/data/cleaning-prod/shared/uploads"]);
        assert.deepEqual(
            deployStep(config).directories.filter((d) => d.path.startsWith("/mnt/data/cleaning-prod/shared/")).map((d) => d.path),
            ["/mnt/data/cleaning-prod/shared/cache", "/mnt/data/cleaning-prod/shared/uploads"],
        );
    });

    test("a stack with only stack volumes and no database still has something to back up", () => {
        const config = shared((raw) => {
            (raw.database as Record<string, unknown>).enabled = false;
            for (const s of Object.values(raw.services as Record<string, Record<string, unknown>>)) s.database = false;
        });
        assert.match(renderBackupEnv(config, contextFor(config)), /^BACKUP_DIRS='\/mnt\/data\/cleaning-prod\/shared\/uploads'$/m);
    });

    test("the per-service form renders as before: volumes/<service>/<name>, 0750, the service's user, backed up by default", () => {
        const config = configOf("cleaning");
        assert.deepEqual(volumeDirectories(config, "/mnt/data/cleaning-prod"), [
            { name: "uploads", path: "/mnt/data/cleaning-prod/volumes/api/uploads", mode: "0750", owner: "10001:10001", backup: true, shared: false },
        ]);
        assert.equal(composeServices(config).api.volumes?.[0].source, "/mnt/data/cleaning-prod/volumes/api/uploads");
        assert.deepEqual(stackVolumeCommands(config, "/mnt/data/cleaning-prod"), [], "no stack volume commands without stack volumes");
        assert.ok(!deployStep(config).run.includes("/shared/"));
    });

    test("R5: declaring the volume shared changes the deploy and backup steps (a new directory, a new manifest)", () => {
        const before = buildSteps(configOf("cleaning"), contextFor(configOf("cleaning")));
        const after = buildSteps(shared(), contextFor(shared()));
        const changed = before.filter((s, i) => maskStepScript(s) !== maskStepScript(after[i])).map((s) => s.name);
        assert.deepEqual(changed, ["deploy", "backup"]);
    });
});

describe("stack volumes: the deploy's commands on a scratch data path", () => {
    function runCommands(dataPath: string, config: ReturnType<typeof shared>) {
        const script = ["set -euo pipefail", ...stackVolumeCommands(config, dataPath)].join("\n");
        return spawnSync("bash", ["-c", script], { encoding: "utf8", timeout: 30_000 });
    }

    test("converge the owner of the files inside, once; then change nothing", { skip: process.getuid?.() === 0 ? false : "needs root (chown)" }, () => {
        const data = fs.mkdtempSync(path.join(os.tmpdir(), "onebox-volumes-"));
        try {
            const config = shared((raw) => ((raw.volumes as Record<string, unknown>).uploads = { owner: "10001:2000" }));
            const dir = path.join(data, "shared", "uploads");
            fs.mkdirSync(path.join(dir, "sub"), { recursive: true });
            fs.writeFileSync(path.join(dir, "sub", "a.txt"), "a");
            fs.symlinkSync("/etc/hostname", path.join(dir, "link"));
            const hostnameOwner = fs.statSync("/etc/hostname").uid;
            let r = runCommands(data, config);
            assert.equal(r.status, 0, r.stderr);
            assert.match(r.stdout, /owner {5}.*shared\/uploads -> 10001:2000/);
            for (const p of ["sub", "sub/a.txt"]) {
                const st = fs.statSync(path.join(dir, p));
                assert.deepEqual([st.uid, st.gid], [10001, 2000], p);
            }
            assert.equal(fs.lstatSync(path.join(dir, "link")).uid, 10001, "the link itself");
            assert.equal(fs.statSync("/etc/hostname").uid, hostnameOwner, "never what a link points to");
            r = runCommands(data, config);
            assert.equal(r.status, 0, r.stderr);
            assert.equal(r.stdout, "", "converged: nothing to do");
        } finally {
            fs.rmSync(data, { recursive: true, force: true });
        }
    });

    test("refuse an empty shared volume while a service's own directory of that name still holds files", () => {
        const data = fs.mkdtempSync(path.join(os.tmpdir(), "onebox-volumes-"));
        try {
            const config = shared();
            fs.mkdirSync(path.join(data, "shared", "uploads"), { recursive: true });
            fs.mkdirSync(path.join(data, "volumes", "api", "uploads"), { recursive: true });
            fs.writeFileSync(path.join(data, "volumes", "api", "uploads", "photo.jpg"), "x");
            let r = runCommands(data, config);
            assert.notEqual(r.status, 0);
            assert.match(r.stderr, /volume uploads: .*volumes\/api\/uploads \(services\.api's own directory .*\) still holds files .*move them first: mv /);
            // Moved as the message says: the deploy goes on.
            fs.renameSync(path.join(data, "volumes", "api", "uploads", "photo.jpg"), path.join(data, "shared", "uploads", "photo.jpg"));
            r = runCommands(data, config);
            assert.doesNotMatch(r.stderr, /still holds files/);
        } finally {
            fs.rmSync(data, { recursive: true, force: true });
        }
    });
});
