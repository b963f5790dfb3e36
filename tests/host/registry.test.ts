/**
 * Private registries on a real (container) server: a registry started here
 * (Debian's docker-registry, tests/host/fixture/registry-image.sh) with basic
 * auth (bcrypt htpasswd) over TLS from a test CA, holding the stack's images
 * (the web service and the proxy). The server trusts the CA as an operator
 * would (/etc/docker/certs.d/<host:port>/ca.crt) and runs the program's own
 * steps with `deploy.imageSource: registry`:
 *
 * - without `deploy.registries`, and with a wrong password, the deploy fails
 *   and its error names the registry;
 * - with the right password the host pulls and runs the stack; the login lives
 *   in the stack's own DOCKER_CONFIG (0600, root-only), the password files are
 *   gone, and neither the password nor its basic-auth form shows in the step
 *   output, the process list sampled during the deploy, the journal, the
 *   release files or the containers' configuration (R3).
 *
 * The images reach the registry through skopeo inside the registry container,
 * as a second user of the registry (the test's own), so the stack's password is
 * never used outside the stack.
 *
 *   tests/host/fixture/registry-image.sh
 *   flock -w 3600 /tmp/onebox-host-suite.lock node --import tsx --test --test-concurrency=1 tests/host/registry.test.ts
 *
 * Talks only to 127.0.0.1 and the containers it creates; every wait is bounded.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { validateConfig } from "../../components/config/load";
import { DEPLOY_USER } from "../../components/hosts/host";
import { loadHostScripts } from "../../components/provisioning/host-scripts";
import { appPaths } from "../../components/provisioning/paths";
import { buildSteps, type Step } from "../../components/provisioning/steps";
import { makeKeys, ROOT, runSteps, sh, StepError, TestServer, waitFor, type Keys, type TriggerState } from "./lib/harness";
import { httpsRequest } from "./lib/checks";
import { ssh } from "./lib/ssh";

const NAME = "onebox-reg-m4p9";
const PORTS = { ssh: 2331, http: 18331, https: 18431 };
const REGISTRY_CONTAINER = `${NAME}-registry`;
const REGISTRY_HOST = "registry.onebox.test";
const REGISTRY = `${REGISTRY_HOST}:5000`;
const WEB_IMAGE = `${REGISTRY}/onebox/web:1`;
const PROXY_IMAGE = `${REGISTRY}/onebox/caddy:latest`;
const PATHS = appPaths("reg-test", "/mnt/data");
const REGISTRY_DIR = PATHS.registryDir;
const IMAGES = ["onebox-test/registry:latest", "onebox-test/fresh-server:latest", "onebox-test/web:1", "onebox-test/caddy:latest"];

/** The stack's login and the test's own (the one that pushes). */
const DEPLOYER = "deployer";
const DEPLOYER_PASSWORD = `dp-${randomBytes(18).toString("hex")}`;
const PUSHER = "pusher";
const PUSHER_PASSWORD = `pp-${randomBytes(18).toString("hex")}`;
const WRONG_PASSWORD = `wrong-${randomBytes(18).toString("hex")}`;

let dir = "";
let keysDir = "";
let keys: Keys;
let server: TestServer | undefined;
const state: TriggerState = {};

function docker(...args: string[]): string {
    return sh("docker", args, { timeoutMs: 300_000 }).trim();
}

function cleanup(): void {
    spawnSync("docker", ["rm", "-f", REGISTRY_CONTAINER], { stdio: "ignore" });
    if (server) spawnSync("bash", [path.join(ROOT, "tests/host/fixture/stop-server.sh"), NAME], { stdio: "ignore" });
}
process.on("exit", cleanup);

async function root(body: string, timeoutMs = 120_000): Promise<string> {
    const r = await server!.script(body, timeoutMs);
    if (r.code !== 0) throw new Error(`server script exited ${r.code}: ${body.slice(0, 200)}\n${r.stdout.slice(-2000)}\n${r.stderr.slice(-2000)}`);
    return r.stdout;
}

/** The stack: one web service and the proxy, both from the private registry. */
function steps(registries: { server: string; username: string; passwordSecret: string }[]): Step[] {
    const { config } = validateConfig({
        app: { name: "reg", environment: "test" },
        host: {
            provider: "existing",
            address: "127.0.0.1",
            port: 22,
            user: DEPLOY_USER,
            hostKey: keys.hostPub,
            sshAllowedCidrs: ["172.16.0.0/12"],
            dataPath: "/mnt/data",
            dataDevice: "/dev/sdb",
            swapMb: 0,
        },
        dns: { provider: "none", zone: "example.test" },
        tls: { mode: "internal" },
        proxy: { image: PROXY_IMAGE },
        services: { web: { image: WEB_IMAGE, port: 3000, health: { path: "/health", intervalSeconds: 2, startPeriodSeconds: 5 }, memoryMb: 96 } },
        routes: [{ host: "app.example.test", service: "web" }],
        database: { enabled: false },
        deploy: { imageSource: "registry", keepReleases: 2, healthTimeoutSeconds: 90, registries },
        sshPrivateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nharness\n-----END OPENSSH PRIVATE KEY-----\n",
        // The value here only satisfies validation; the steps get the one passed to runSteps.
        secrets: { REGISTRY_PASSWORD: "harness-supplied-pw-5Vt8Kc" },
    });
    return buildSteps(config, { dataPath: "/mnt/data", dataDevice: "/dev/sdb", sshUser: DEPLOY_USER, sshPort: 22, scripts: loadHostScripts(), dockerAptSource: "auto" });
}

const LOGIN = [{ server: REGISTRY, username: DEPLOYER, passwordSecret: "REGISTRY_PASSWORD" }];

function deploy(registries: typeof LOGIN, password: string) {
    return runSteps(server!, steps(registries), { REGISTRY_PASSWORD: password }, state);
}

/** Writes the CA, the registry's certificate (SAN = REGISTRY_HOST), htpasswd and config. */
function registryFiles(): void {
    const etc = path.join(dir, "etc");
    fs.mkdirSync(path.join(etc, "certs"), { recursive: true });
    const o = (...args: string[]) => sh("openssl", args);
    o("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=onebox test registry CA", "-keyout", path.join(dir, "ca.key"), "-out", path.join(etc, "certs", "ca.crt"));
    o("req", "-newkey", "rsa:2048", "-nodes", "-subj", `/CN=${REGISTRY_HOST}`, "-keyout", path.join(etc, "registry.key"), "-out", path.join(dir, "registry.csr"));
    fs.writeFileSync(path.join(dir, "ext.cnf"), `subjectAltName=DNS:${REGISTRY_HOST}\nextendedKeyUsage=serverAuth\n`);
    o("x509", "-req", "-in", path.join(dir, "registry.csr"), "-CA", path.join(etc, "certs", "ca.crt"), "-CAkey", path.join(dir, "ca.key"), "-CAcreateserial", "-days", "2", "-extfile", path.join(dir, "ext.cnf"), "-out", path.join(etc, "registry.crt"));
    // bcrypt lines from the image's htpasswd, each password on stdin.
    const line = (user: string, pw: string) => {
        const r = spawnSync("docker", ["run", "--rm", "-i", "onebox-test/registry:latest", "htpasswd", "-niB", user], { input: `${pw}\n`, encoding: "utf8", timeout: 60_000 });
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.stdout, new RegExp(`^${user}:\\$2y\\$`));
        return r.stdout.trim();
    };
    fs.writeFileSync(path.join(etc, "htpasswd"), `${line(DEPLOYER, DEPLOYER_PASSWORD)}\n${line(PUSHER, PUSHER_PASSWORD)}\n`);
    fs.writeFileSync(
        path.join(etc, "config.yml"),
        [
            "version: 0.1",
            "storage:",
            "  filesystem:",
            "    rootdirectory: /var/lib/docker-registry",
            "http:",
            "  addr: :5000",
            "  tls:",
            "    certificate: /etc/docker/registry/registry.crt",
            "    key: /etc/docker/registry/registry.key",
            "auth:",
            "  htpasswd:",
            "    realm: onebox-test",
            "    path: /etc/docker/registry/htpasswd",
            "",
        ].join("\n"),
    );
}

/** Pushes a local image into the registry as the test's own user (skopeo inside the registry container). */
function push(local: string, ref: string): void {
    const tar = path.join(dir, "images", `${local.replace(/[/:]/g, "_")}.tar`);
    docker("save", "-o", tar, local);
    const auth = path.join(dir, "etc", "push-auth.json");
    fs.writeFileSync(auth, JSON.stringify({ auths: { [REGISTRY]: { auth: Buffer.from(`${PUSHER}:${PUSHER_PASSWORD}`).toString("base64") } } }), { mode: 0o600 });
    docker("exec", REGISTRY_CONTAINER, "skopeo", "copy", "--quiet", "--dest-authfile", "/etc/docker/registry/push-auth.json", "--dest-cert-dir", "/etc/docker/registry/certs",
        `docker-archive:/images/${path.basename(tar)}:${local}`, `docker://${ref}`);
    fs.rmSync(tar);
}

before(
    async () => {
        for (const image of IMAGES) {
            assert.equal(spawnSync("docker", ["image", "inspect", image], { stdio: "ignore" }).status, 0,
                `${image} is missing: run tests/host/fixture/base-image.sh, stack-images.sh, server-image.sh and registry-image.sh`);
        }
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "onebox-reg-"));
        fs.mkdirSync(path.join(dir, "images"));
        registryFiles();
        spawnSync("docker", ["rm", "-f", REGISTRY_CONTAINER], { stdio: "ignore" });
        docker("run", "-d", "--name", REGISTRY_CONTAINER, "--add-host", `${REGISTRY_HOST}:127.0.0.1`,
            "-v", `${path.join(dir, "etc")}:/etc/docker/registry:ro`, "-v", `${path.join(dir, "images")}:/images:ro`, "onebox-test/registry:latest");
        const ip = docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", REGISTRY_CONTAINER).split(/\s+/)[0];
        assert.match(ip, /^\d+\.\d+\.\d+\.\d+$/);
        const ca = path.join(dir, "etc", "certs", "ca.crt");
        // The registry answers over TLS with the test CA and asks for credentials.
        await waitFor("the registry", () => {
            const r = spawnSync("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "--cacert", ca, "--resolve", `${REGISTRY}:${ip}`, `https://${REGISTRY}/v2/`], { encoding: "utf8" });
            return Promise.resolve(r.stdout === "401");
        }, 30_000, 500);
        push("onebox-test/web:1", WEB_IMAGE);
        push("onebox-test/caddy:latest", PROXY_IMAGE);

        keysDir = fs.mkdtempSync(path.join(os.tmpdir(), "onebox-reg-keys-"));
        keys = makeKeys(keysDir, PORTS.ssh);
        server = new TestServer(NAME, PORTS, keys);
        server.stop();
        sh("bash", [path.join(ROOT, "tests/host/fixture/start-server.sh"), NAME, String(PORTS.ssh), `${keys.deployKey}.pub`, keys.hostKey,
            "-p", `127.0.0.1:${PORTS.http}:80`, "-p", `127.0.0.1:${PORTS.https}:443`, "--add-host", `${REGISTRY_HOST}:${ip}`], {
            env: { ...process.env, ONEBOX_DATA_DISK: "block", ONEBOX_DATA_DISK_SIZE: "2G", ONEBOX_BOOT_TIMEOUT: "90" },
        });
        await server.firstBoot("/dev/sdb", "/mnt/data");
        // What an operator of a registry with a private CA does on the host.
        await root(`install -d -m 0755 /etc/docker/certs.d/${REGISTRY}\ncat >/etc/docker/certs.d/${REGISTRY}/ca.crt <<'PEM'\n${fs.readFileSync(ca, "utf8")}PEM\n`);
    },
    { timeout: 900_000 },
);

after(() => {
    cleanup();
    server = undefined;
    for (const d of [dir, keysDir]) if (d) fs.rmSync(d, { recursive: true, force: true });
});

/** The deploy step's failure, asserted to be one. */
async function failedDeploy(registries: typeof LOGIN, password: string): Promise<StepError> {
    const err = await deploy(registries, password).then(
        () => undefined,
        (e: unknown) => e,
    );
    assert.ok(err instanceof StepError, `the deploy succeeded or failed otherwise: ${String(err)}`);
    assert.equal(err.step, "deploy", err.message);
    return err;
}

test("without registry logins the deploy fails, and its error names the registry", { timeout: 900_000 }, async () => {
    const err = await failedDeploy([], "unused");
    assert.match(err.message, /could not pull the images/);
    assert.ok(err.message.includes(REGISTRY), err.message);
    assert.match(err.message, /unauthorized|authentication required|no basic auth credentials/i);
    assert.equal((await root(`test -e ${REGISTRY_DIR} && echo present || echo absent`)).trim(), "absent");
});

test("with a wrong password the deploy fails, naming the registry, and the password shows nowhere in its output", { timeout: 900_000 }, async () => {
    const err = await failedDeploy(LOGIN, WRONG_PASSWORD);
    assert.match(err.message, /could not pull the images/);
    assert.ok(err.message.includes(REGISTRY), err.message);
    assert.match(err.message, /unauthorized|authentication required/i);
    assert.ok(!err.message.includes(WRONG_PASSWORD));
    // Nothing of the stack ran: no image came from the registry.
    assert.equal((await root(`docker image ls -q --filter reference='${REGISTRY}/*/*'`)).trim(), "");
});

test("with the right password the host pulls the private images and runs the stack; the login is root-only and the password leaks nowhere", { timeout: 900_000 }, async () => {
    // Samples the server's whole process list (every process of the host and its containers) during the deploy.
    await root("rm -f /root/ps-samples; setsid bash -c 'for i in $(seq 1 1500); do ps -eo args >>/root/ps-samples; sleep 0.2; done' </dev/null >/dev/null 2>&1 & echo $! >/root/ps-sampler.pid");
    const runs = await deploy(LOGIN, DEPLOYER_PASSWORD);
    await root("kill \"$(cat /root/ps-sampler.pid)\" || true");
    const out = runs.find((r) => r.name === "deploy")?.stdout ?? "";
    assert.match(out, /release [0-9a-f]{12} is live/);
    assert.match(runs.find((r) => r.name === "secrets")?.stdout ?? "", new RegExp(`registry logins: ${REGISTRY.replace(/\./g, "\\.")}`));

    // The images came from the registry (the host never had them otherwise: registry mode uploads nothing).
    const digests = await root(`docker image inspect -f '{{join .RepoDigests " "}}' ${WEB_IMAGE} ${PROXY_IMAGE}`);
    assert.match(digests, new RegExp(`${REGISTRY.replace(/\./g, "\\.")}/onebox/web@sha256:[0-9a-f]{64}`));
    assert.match(digests, new RegExp(`${REGISTRY.replace(/\./g, "\\.")}/onebox/caddy@sha256:[0-9a-f]{64}`));
    // The same filter the wrong-password test found empty now lists both images.
    assert.equal((await root(`docker image ls -q --filter reference='${REGISTRY}/*/*' | sort -u | wc -l`)).trim(), "2");
    const running = await root("docker ps --filter label=com.docker.compose.project=reg-test --format '{{.Image}}' | sort");
    assert.deepEqual(running.trim().split("\n"), [PROXY_IMAGE, WEB_IMAGE].sort());
    const page = await httpsRequest("app.example.test", PORTS.https, "/");
    assert.equal(page.status, 200, page.body);
    assert.match(page.body, /web version 1/);

    // The login: the stack's own DOCKER_CONFIG, root-only, no password file left behind.
    assert.equal((await root(`stat -c '%a %U:%G' ${REGISTRY_DIR} ${REGISTRY_DIR}/config.json`)).trim(), `700 root:root\n600 root:root`);
    assert.equal((await root(`ls -A ${REGISTRY_DIR}`)).trim(), "config.json");
    const basic = Buffer.from(`${DEPLOYER}:${DEPLOYER_PASSWORD}`).toString("base64");
    const configJson = JSON.parse(await root(`cat ${REGISTRY_DIR}/config.json`)) as { auths: Record<string, { auth: string }> };
    assert.deepEqual(configJson, { auths: { [REGISTRY]: { auth: basic } } });
    const denied = await ssh(server!.deploy, `cat ${REGISTRY_DIR}/config.json`);
    assert.notEqual(denied.code, 0, "the deploy user reads the login without sudo");
    // No login of the host's own Docker either: only the stack's file holds it.
    assert.equal((await root("cat /root/.docker/config.json 2>/dev/null || true")).includes(basic), false);

    // The password, plain or as basic auth, in nothing the test can see.
    const samples = await root("cat /root/ps-samples");
    assert.match(samples, /deploy\.sh/, "the sampler ran during the deploy");
    const seen: Record<string, string> = {
        "step output": runs.map((r) => r.stdout).join("\n"),
        "process list during the deploy": samples,
        journal: await root("journalctl --no-pager -o cat 2>/dev/null || true", 300_000),
        "release files": await root(`find ${PATHS.releasesDir} -type f -exec cat {} + 2>/dev/null || true`),
        "container configuration": await root("docker ps -aq | xargs -r docker inspect"),
        "Docker's log": await root("journalctl --no-pager -o cat -u docker 2>/dev/null || true"),
    };
    for (const [where, text] of Object.entries(seen)) {
        assert.ok(text.length > 0, `${where}: nothing captured`);
        assert.ok(!text.includes(DEPLOYER_PASSWORD), `the password shows in the ${where}`);
        assert.ok(!text.includes(basic), `the basic-auth form shows in the ${where}`);
    }
});
