/**
 * One fixture server per test file, set up the way every stack test starts: SSH keys in a
 * work directory, the server container, the cloud's first boot, and (when asked) the suite's
 * S3 and alert receiver inside the server. The file lists what it needs; without it the file
 * is skipped, or fails under ONEBOX_REQUIRE_TOOLS=1 (CI), so a missing image never passes.
 *
 *   const fx = new Fixture({ name: NAME, ports: PORTS, images: ["onebox-test/api:1"], s3: {} });
 *   fx.use(async () => { secrets = e2eSecrets(); });
 *   test("...", { skip: fx.skip }, async () => { await fx.root("..."); });
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, before } from "node:test";
import { HookSink, makeKeys, ROOT, S3InServer, TestServer, type Keys, type ServerPorts } from "./harness";
import { sshArgs } from "./ssh";

export interface FixtureSpec {
    /** Container name (unique per file). */
    name: string;
    ports: ServerPorts;
    /** Images the file runs (the server image is always needed and need not be listed). */
    images: string[];
    /** Commands this machine must have (e.g. openssl). */
    commands?: string[];
    /**
     * s3rver inside the server; bucket onebox-e2e unless given (a function is called once the
     * keys exist); `tls` makes its certificate in the work directory.
     */
    s3?: { port?: number; bucket?: string | (() => string); tls?: (dir: string) => { cert: string; key: string } };
    /** The alert (and, with recordGets, heartbeat) receiver inside the server. */
    hook?: { port?: number; recordGets?: boolean };
    /** The data disk's ceiling (a sparse file), when the default 2G is not enough. */
    diskSize?: string;
}

const SERVER_IMAGE = "onebox-test/fresh-server";

/** The images and commands of `spec` this machine lacks, as a skip reason (false: none). */
export function missingPrerequisites(images: string[], commands: string[] = []): string | false {
    const missing = [SERVER_IMAGE, ...images.filter((i) => i !== SERVER_IMAGE)].filter((tag) => spawnSync("docker", ["image", "inspect", tag], { stdio: "ignore" }).status !== 0);
    for (const command of commands) {
        if (spawnSync("sh", ["-c", `command -v ${command}`], { stdio: "ignore" }).status !== 0) missing.push(command);
    }
    if (missing.length > 0 && process.env.ONEBOX_REQUIRE_TOOLS === "1") {
        throw new Error(`ONEBOX_REQUIRE_TOOLS=1 but these are missing: ${missing.join(", ")}`);
    }
    return missing.length > 0 ? `missing: ${missing.join(", ")}` : false;
}

export class Fixture {
    /** A reason to skip the file's tests, or false. */
    readonly skip: string | false;
    /** The work directory on this machine (keys, certificates); removed after the file. */
    dir = "";
    private parts?: { keys: Keys; server: TestServer; s3?: S3InServer; hook?: HookSink };

    constructor(readonly spec: FixtureSpec) {
        this.skip = missingPrerequisites(spec.images, spec.commands);
        // A file stopped by a signal or a timeout still removes its server and helpers.
        process.on("exit", () => {
            this.parts?.hook?.stop();
            this.parts?.s3?.stop();
            if (this.parts) spawnSync("bash", [path.join(ROOT, "tests/host/fixture/stop-server.sh"), spec.name], { stdio: "ignore" });
        });
    }

    private get booted(): NonNullable<Fixture["parts"]> {
        if (!this.parts) throw new Error(`fixture ${this.spec.name} is not booted`);
        return this.parts;
    }

    get keys(): Keys {
        return this.booted.keys;
    }

    get server(): TestServer {
        return this.booted.server;
    }

    get s3(): S3InServer {
        const s3 = this.booted.s3;
        if (!s3) throw new Error(`fixture ${this.spec.name} has no S3 (spec.s3)`);
        return s3;
    }

    get hook(): HookSink {
        const hook = this.booted.hook;
        if (!hook) throw new Error(`fixture ${this.spec.name} has no hook receiver (spec.hook)`);
        return hook;
    }

    /** Boots the server (a leftover of an earlier run is removed first). */
    async boot(): Promise<void> {
        this.dir = fs.mkdtempSync(path.join(os.tmpdir(), `${this.spec.name}-`));
        const keys = makeKeys(this.dir, this.spec.ports.ssh);
        const server = new TestServer(this.spec.name, this.spec.ports, keys);
        this.parts = { keys, server };
        server.stop();
        server.start(this.spec.diskSize);
        await server.firstBoot("/dev/sdb", "/mnt/data");
        if (this.spec.s3) {
            const tls = this.spec.s3.tls?.(this.dir);
            const bucket = this.spec.s3.bucket;
            this.parts.s3 = new S3InServer(server, typeof bucket === "function" ? bucket() : (bucket ?? "onebox-e2e"), this.spec.s3.port, tls);
            await this.parts.s3.start();
        }
        if (this.spec.hook) {
            this.parts.hook = new HookSink(server, this.spec.hook.port, this.spec.hook.recordGets);
            await this.parts.hook.start();
        }
    }

    dispose(): void {
        this.parts?.hook?.dispose();
        this.parts?.s3?.dispose();
        this.parts?.server.stop();
        this.parts = undefined;
        if (this.dir) fs.rmSync(this.dir, { recursive: true, force: true });
    }

    /** Registers the file's before (boot, then its own `setup`) and after hooks; nothing when skipped. */
    use(setup?: () => void | Promise<void>, timeoutMs = 600_000): this {
        before(
            async () => {
                if (this.skip) return;
                await this.boot();
                await setup?.();
            },
            { timeout: timeoutMs },
        );
        after(() => this.dispose());
        return this;
    }

    /** Runs `body` as root on the server; its stdout, or an error with its exit status and output. */
    async root(body: string, timeoutMs = 300_000): Promise<string> {
        const r = await this.server.script(body, timeoutMs);
        if (r.code !== 0) throw new Error(`server script exited ${r.code}: ${body.slice(0, 200)}\n${r.stdout.slice(-3000)}\n${r.stderr.slice(-3000)}`);
        return r.stdout;
    }
}

/**
 * The server as its admin left it before any stack (an existing server): Debian's Docker,
 * started with their own daemon.json (`extra` runs after, e.g. a network of theirs).
 */
export async function installAdminDocker(server: TestServer, daemon: Record<string, unknown>, extra = ""): Promise<void> {
    const r = await server.script(
        `set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get -q -y -o DPkg::Lock::Timeout=300 update >/dev/null
apt-get -q -y -o DPkg::Lock::Timeout=300 install docker.io docker-cli >/dev/null
mkdir -p /etc/docker
cat >/etc/docker/daemon.json <<'JSON'
${JSON.stringify(daemon, null, 2)}
JSON
systemctl restart docker
for i in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
${extra}`,
        600_000,
    );
    if (r.code !== 0) throw new Error(`installing the admin's Docker exited ${r.code}\n${r.stdout.slice(-2000)}\n${r.stderr.slice(-2000)}`);
}

/** Copies an image of this machine's Docker into the server's (`docker save | ssh docker load`). */
export function loadImage(server: TestServer, tag: string): void {
    const load = spawnSync("bash", ["-c", `docker save "$1" | ssh "\${@:2}" sudo -n docker load`, "_", tag, ...sshArgs(server.deploy)], { encoding: "utf8", timeout: 300_000 });
    if (load.status !== 0) throw new Error(`loading ${tag} into the server failed (${load.status}): ${load.stderr}`);
}
