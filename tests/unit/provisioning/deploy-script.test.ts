/**
 * scripts/host/deploy/deploy.sh against a rendered release, with `docker` and
 * `curl` replaced by recording fakes: the health gate, the route checks
 * through the proxy, rollback to the previous release, pruning.
 */
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { renderRelease } from "../../../components/provisioning/steps";
import { appPaths, STACK_LOCK_DIR, stackLockFile } from "../../../components/provisioning/paths";
import { parse as parseYaml } from "yaml";
import { configOf } from "./fixtures";

const DEPLOY_SH = path.resolve(__dirname, "../../../scripts/host/deploy/deploy.sh");
const root = fs.mkdtempSync(path.join(os.tmpdir(), "onebox-deploy-"));
after(() => fs.rmSync(root, { recursive: true, force: true }));

const FAKE_DOCKER = `#!/usr/bin/env bash
printf '%sdocker %s\\n' "\${DOCKER_CONFIG:+DOCKER_CONFIG=\${DOCKER_CONFIG} }" "$*" >>"\${FAKE_LOG}"
if [[ "$1" == compose ]]; then
  shift
  dir=""
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --ansi|--project-name|--file) shift 2 ;;
      --project-directory) dir="$2"; shift 2 ;;
      *) break ;;
    esac
  done
  sub="$1"; shift
  case "\${sub}" in
    # What compose would recreate: FAKE_RECREATE lists the services.
    --dry-run) for svc in \${FAKE_RECREATE:-}; do printf ' Container social-prod-%s-1  Recreate\\n' "\${svc}"; done ;;
    run) if [[ " $* " == *" --label onebox.release="* ]]; then
           printf 'release command ran: %s\\n' "\${*: -1}"
           [[ -e "\${dir}/FAIL_RELEASE" ]] && { echo "relation users does not exist" >&2; exit 3; }
         fi ;;
    pull) if [[ -e "\${dir}/FAIL_PULL" ]]; then echo "Error response from daemon: unauthorized: authentication required" >&2; exit 1; fi ;;
    up) if [[ -e "\${dir}/FAIL_UP" && " $* " == *" --remove-orphans "* ]]; then echo "container app-api-1 is unhealthy" >&2; exit 1; fi ;;
    exec)
      input="$(cat; printf x)"; input="\${input%x}"
      printf '%s' "\${input}" >>"\${FAKE_LOG}.stdin"
      # PostgreSQL upgrade fakes: pg_dumpall, the fingerprint queries (-tA), the restore.
      if [[ " $* " == *" pg_dumpall "* ]]; then
        printf -- '--\\n-- PostgreSQL database cluster dump complete\\n--\\n'
      elif [[ " $* " == *" -tA "* ]]; then
        if [[ "\${input}" == *"FROM pg_database"* ]]; then printf 'app\\npostgres\\n'
        elif [[ "\${input}" == *"pg_roles"* ]]; then printf 'app\\n'
        elif [[ -e "\${dir}/FINGERPRINT_DIFF" ]]; then printf 'public.users|2\\n'
        else printf 'public.users|3\\n'; fi
      elif [[ -e "\${dir}/FAIL_RESTORE" && "\${input}" == *"cluster dump complete"* ]]; then
        echo "ERROR:  relation already exists" >&2; exit 3
      fi ;;
    config)
      [[ " $* " == *" --services "* ]] && printf 'api\\nweb\\npostgres\\nproxy\\n'
      # The release's config.json, when a test wrote one, stands for compose's own rendering.
      if [[ " $* " == *" --format json "* && -e "\${dir}/config.json" ]]; then cat "\${dir}/config.json"; fi ;;
    ps)
      if [[ " $* " == *" --format "* ]]; then
        if [[ -e "\${dir}/FAIL_UP" ]]; then printf 'api running unhealthy\\npostgres running healthy\\n'; else printf 'api running healthy\\n'; fi
      elif [[ " $* " == *" --status running pgbouncer "* ]]; then
        [[ -n "\${FAKE_POOLER_RUNNING:-}" ]] && echo feed01
      elif [[ " $* " == *" --status running "* ]]; then
        [[ -n "\${FAKE_PROXY_RUNNING:-}" ]] && echo c0ffee
      elif [[ " $* " == *" --quiet "* ]]; then
        echo c0ffee
      fi ;;
  esac
  exit 0
fi
# A canary's state (healthy), else the health log of a failed service.
if [[ "$1" == inspect && "$3" == "{{.State.Status}}"* ]]; then echo "running healthy"; exit 0; fi
[[ "$1" == inspect ]] && echo "  probe exit 1: connection refused"
# Networks: FAKE_NETWORKS lists "name=bridge" of those that exist (bridge may be empty).
if [[ "$1 $2" == "network inspect" ]]; then
  for n in \${FAKE_NETWORKS:-}; do [[ "\${n%%=*}" == "\${*: -1}" ]] && { printf '%s\\n' "\${n#*=}"; exit 0; }; done
  echo "Error response from daemon: network \${*: -1} not found" >&2; exit 1
fi
if [[ "$1 $2" == "network rm" && " \${FAKE_NETWORK_RM_FAIL:-} " == *" \${*: -1} "* ]]; then
  echo "Error response from daemon: error while removing network: network \${*: -1} has active endpoints" >&2; exit 1
fi
# Running containers publishing a host port: FAKE_PUBLISHED lists "port:name,project" (project may be empty).
if [[ "$1" == ps && "$3" == publish=* ]]; then
  for e in \${FAKE_PUBLISHED:-}; do [[ "\${e%%:*}" == "\${3#publish=}" ]] && { v="\${e#*:}"; printf '%s %s\\n' "\${v%%,*}" "\${v#*,}"; }; done
  exit 0
fi
# The containers on the external Traefik network with their ports (tab-separated), as docker ps lists them.
if [[ "$1" == ps && " $* " == *" --filter network="* && " $* " == *" --format "* ]]; then
  printf '%b' "\${FAKE_TRAEFIK_PS:-}"; exit 0
fi
# Every container of a network filter: one of its own and one the proxy shares.
if [[ "$1" == ps && " $* " == *" --filter network="* ]]; then
  net="\${*: -1}"; printf 'c-%s\\nc-shared\\n' "\${net#network=}"
fi
exit 0
`;

const FAKE_CURL = `#!/usr/bin/env bash
printf 'curl %s\\n' "$*" >>"\${FAKE_LOG}"
# A request whose body is kept (the smoke checks) gets FAKE_CURL_BODY.
prev=""; for a in "$@"; do [[ "\${prev}" == --output && "\${a}" != /dev/null ]] && printf '%s' "\${FAKE_CURL_BODY:-}" >"\${a}"; prev="\${a}"; done
# FAKE_CURL_FAILS=N: only the first N requests get FAKE_CURL_CODE, the rest 200 (a rollback's checks pass).
if [[ -n "\${FAKE_CURL_FAILS:-}" ]]; then
  n="$(cat "\${FAKE_LOG}.curls" 2>/dev/null || echo 0)"; echo $((n + 1)) >"\${FAKE_LOG}.curls"
  ((n < FAKE_CURL_FAILS)) || { FAKE_CURL_CODE=200; unset FAKE_CURL_HEADERS; }
fi
# --dump-header gets FAKE_CURL_HEADERS (default: an answer through the stack's headers middleware).
prev=""; for a in "$@"; do [[ "\${prev}" == --dump-header ]] && printf '%b' "\${FAKE_CURL_HEADERS-HTTP/1.1 200 OK\\r\\nX-Content-Type-Options: nosniff\\r\\n\\r\\n}" >"\${a}"; prev="\${a}"; done
if [[ "\${FAKE_CURL_CODE:-200}" == tls ]]; then echo "curl: (35) TLS alert internal error" >&2; printf 000; exit 35; fi
# untrusted: a certificate this host does not trust (curl 60) unless the request is --insecure.
if [[ "\${FAKE_CURL_CODE:-200}" == untrusted ]]; then
  [[ " $* " == *" --insecure "* ]] && { printf 200; exit 0; }
  echo "curl: (60) SSL certificate problem: self-signed certificate" >&2; printf 000; exit 60
fi
# down: nothing listens at the address (curl 7).
if [[ "\${FAKE_CURL_CODE:-200}" == down ]]; then echo "curl: (7) Failed to connect" >&2; printf 000; exit 7; fi
printf '%s' "\${FAKE_CURL_CODE:-200}"
`;

interface Site {
    dir: string;
    appDir: string;
    log: string;
    env: NodeJS.ProcessEnv;
}

let counter = 0;

/** A fake host root: bin/ with the fakes, the app directory, the env files the manifest names. */
function site(): Site {
    const dir = path.join(root, `site-${++counter}`);
    const bin = path.join(dir, "bin");
    fs.mkdirSync(bin, { recursive: true });
    fs.writeFileSync(path.join(bin, "docker"), FAKE_DOCKER, { mode: 0o755 });
    fs.writeFileSync(path.join(bin, "curl"), FAKE_CURL, { mode: 0o755 });
    fs.mkdirSync(path.join(dir, "env"));
    for (const s of ["api", "web"]) {
        fs.writeFileSync(path.join(dir, "env", `${s}.env`), "");
    }
    const log = path.join(dir, "calls.log");
    fs.writeFileSync(log, "");
    return {
        dir,
        appDir: path.join(dir, "srv", "social-prod"),
        log,
        env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, FAKE_LOG: log, ONEBOX_LOCK_DIR: path.join(dir, "lock") },
    };
}

/** Writes the social release (tweaked) as releases/<id>; rewrites host paths into the site. */
function release(s: Site, id: string, opts: { fail?: boolean; tls?: string; traefik?: boolean; keep?: number; webImage?: string; pgVersion?: number; databaseOnly?: boolean; deploy?: Record<string, unknown>; pooler?: boolean } = {}): string {
    const config = configOf("social", (r) => {
        if (opts.pooler) {
            r.database = { ...(r.database as Record<string, unknown> | undefined), pooler: { enabled: true, image: "ghcr.io/example/pgbouncer:1.24.1" } };
            const services = r.services as Record<string, Record<string, unknown>>;
            services.api = { ...services.api, databaseEnv: { pooler: true } };
        }
        if (opts.deploy) {
            r.deploy = opts.deploy;
        }
        if (opts.databaseOnly) {
            r.services = {};
            delete r.routes;
            r.backups = { ...(r.backups as Record<string, unknown>), heartbeatUrl: "https://hc.example.com/ping/social" };
        }
        if (opts.pgVersion) {
            r.database = { ...(r.database as Record<string, unknown> | undefined), version: opts.pgVersion };
        }
        if (opts.tls) {
            r.tls = opts.tls === "acme" ? { mode: "acme", acmeEmail: "ops@social.example" } : { mode: opts.tls };
        }
        if (opts.traefik) {
            r.proxy = { kind: "traefik-external", externalNetwork: "edge" };
            r.tls = { mode: "external" };
        }
        if (opts.webImage) {
            (r.services as Record<string, { image: string }>).web.image = opts.webImage;
        }
    });
    const dir = path.join(s.appDir, "releases", id);
    fs.mkdirSync(dir, { recursive: true });
    for (const f of renderRelease(config, "/mnt/data").files) {
        let content = f.content;
        if (f.name === "release.manifest") {
            content = content
                .replace(/^PROXY_DIR=.*$/m, `PROXY_DIR=${s.appDir}/proxy`)
                .replace(/^ENV_FILE=\/etc\/onebox\/social-prod\/env\//gm, `ENV_FILE=${s.dir}/env/`)
                .replace(/^SECRETS_DIR=.*$/m, `SECRETS_DIR=${s.dir}/secrets`)
                .replace(/^DUMP_VERIFY_LIB=.*$/m, `DUMP_VERIFY_LIB=${path.resolve(__dirname, "../../../scripts/host/backup/lib.sh")}`)
                .replace(/^DATABASE_DATA_DIR=.*$/m, `DATABASE_DATA_DIR=${s.dir}/data/postgres`)
                .replace(/^HEALTH_TIMEOUT=.*$/m, "HEALTH_TIMEOUT=0")
                .replace(/^KEEP_RELEASES=.*$/m, `KEEP_RELEASES=${opts.keep ?? 5}`);
        }
        fs.writeFileSync(path.join(dir, f.name), content);
    }
    if (opts.fail) {
        fs.writeFileSync(path.join(dir, "FAIL_UP"), "");
    }
    return dir;
}

function deploy(s: Site, dir: string, env: NodeJS.ProcessEnv = {}) {
    fs.writeFileSync(s.log, "");
    const r = spawnSync("bash", [DEPLOY_SH, dir], { env: { ...s.env, ...env }, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr, calls: fs.readFileSync(s.log, "utf8").trim().split("\n") };
}

function current(s: Site): string {
    return fs.readlinkSync(path.join(s.appDir, "current"));
}

describe("deploy.sh", () => {
    test("a healthy release goes live: validate, pull, database first, up --wait, reload, route checks, current", () => {
        const s = site();
        const dir = release(s, "aaaaaaaaaaa1");
        const r = deploy(s, dir);
        assert.equal(r.status, 0, r.stderr);
        assert.equal(current(s), "releases/aaaaaaaaaaa1");
        const compose = `docker compose --ansi never --project-name social-prod --project-directory ${dir} --file ${dir}/compose.yaml`;
        assert.deepEqual(r.calls.filter((c) => !c.startsWith("docker image prune")), [
            "docker compose version",
            // Under the lock, a canary of an interrupted earlier run is stale: removed first.
            "docker ps --all --quiet --filter label=onebox.canary=social-prod",
            // ...and so is a release command's container.
            "docker ps --all --quiet --filter label=onebox.release=social-prod",
            `${compose} config --quiet`,
            // The ports the release publishes are free of other stacks' containers (several stacks per server).
            "docker ps --filter publish=80 --format {{.Names}} {{.Label \"com.docker.compose.project\"}}",
            "docker ps --filter publish=443 --format {{.Names}} {{.Label \"com.docker.compose.project\"}}",
            `${compose} pull --quiet`,
            `${compose} ps --status running --quiet proxy`,
            `${compose} up --detach --wait --wait-timeout 0 postgres`,
            `${compose} exec -T postgres psql -v ON_ERROR_STOP=1 -q -X -U app -d postgres -v role=app`,
            // The networks the file names bridges for (none in this fake's config) are compared first (H13).
            `${compose} config --format json`,
            `${compose} up --detach --wait --wait-timeout 0 --remove-orphans`,
            `${compose} exec -T proxy caddy reload --config /etc/caddy/Caddyfile --adapter caddyfile`,
            "curl --silent --show-error --insecure --output /dev/null --write-out %{http_code} --max-time 10 --resolve social.example:443:127.0.0.1 https://social.example/api",
            "curl --silent --show-error --insecure --output /dev/null --write-out %{http_code} --max-time 10 --resolve social.example:443:127.0.0.1 https://social.example/health",
            "curl --silent --show-error --insecure --output /dev/null --write-out %{http_code} --max-time 10 --resolve social.example:443:127.0.0.1 https://social.example/",
        ]);
        assert.equal(fs.readFileSync(path.join(s.appDir, "proxy", "Caddyfile"), "utf8"), fs.readFileSync(path.join(dir, "Caddyfile"), "utf8"));
        // R8: the rotated password is set as its SCRAM verifier, read from the file inside the container,
        // with statement logging off for the session; no password on any command line or in any statement.
        assert.equal(
            fs.readFileSync(`${s.log}.stdin`, "utf8"),
            "SET log_min_error_statement = panic;\nSET log_statement = none;\n\\set pw `cat /run/secrets/postgres-password.scram`\nALTER ROLE :\"role\" PASSWORD :'pw';\n",
        );
        assert.match(r.stdout, /release aaaaaaaaaaa1 is live/);
    });

    test("a database-only release (no route) goes live with no proxy: no Caddyfile installed, no reload, no route check", () => {
        const s = site();
        const dir = release(s, "dbdbdbdbdb01", { databaseOnly: true });
        assert.equal(fs.existsSync(path.join(dir, "Caddyfile")), false);
        const r = deploy(s, dir);
        assert.equal(r.status, 0, r.stderr);
        assert.equal(current(s), "releases/dbdbdbdbdb01");
        assert.deepEqual(r.calls.filter((c) => /proxy|caddy|^curl /.test(c)), [], "nothing touches a proxy or requests a route");
        assert.ok(r.calls.some((c) => c.endsWith("up --detach --wait --wait-timeout 0 postgres")), "PostgreSQL is brought up first");
        assert.ok(r.calls.some((c) => c.endsWith("up --detach --wait --wait-timeout 0 --remove-orphans")));
        assert.equal(fs.existsSync(path.join(s.appDir, "proxy", "Caddyfile")), false);
        assert.match(r.stdout, /release dbdbdbdbdb01 is live/);
    });

    /**
     * What `compose config --format json` says of the release's networks (names and driver
     * options as rendered), written as the release's config.json for the fake.
     */
    function networksJson(dir: string): { bridges: Record<string, string> } {
        const model = parseYaml(fs.readFileSync(path.join(dir, "compose.yaml"), "utf8")) as { networks: Record<string, { driver_opts?: Record<string, string> }> };
        const networks: Record<string, unknown> = {};
        const bridges: Record<string, string> = {};
        for (const [key, n] of Object.entries(model.networks)) {
            networks[key] = { ...n, name: `social-prod_${key}` };
            const bridge = n.driver_opts?.["com.docker.network.bridge.name"];
            if (bridge) bridges[key] = bridge;
        }
        fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ name: "social-prod", networks }));
        return { bridges };
    }

    test("H13: a network deployed before its bridge name is recreated just before the switch; one that has it, and networks without one, are left alone", () => {
        const s = site();
        const dir = release(s, "aaaaaaaaaaa1");
        const { bridges } = networksJson(dir);
        // The renderer names the internal networks' bridges (obi-*), not the egress/edge ones.
        assert.match(bridges.internal ?? "", /^obi-[0-9a-f]{11}$/);
        assert.match(bridges.database ?? "", /^obi-[0-9a-f]{11}$/);
        const r = deploy(s, dir, {
            // internal: as compose 2.26.1 left it (no bridge name); database: already named; the rest absent.
            FAKE_NETWORKS: `social-prod_internal= social-prod_database=${bridges.database} social-prod_egress=`,
        });
        assert.equal(r.status, 0, r.stderr);
        const netCalls = r.calls.filter((c) => /^docker (network|stop|rm|ps --all --quiet --filter network)/.test(c));
        assert.deepEqual(netCalls.filter((c) => !c.startsWith("docker network inspect")), [
            "docker ps --all --quiet --filter network=social-prod_internal",
            "docker stop -- c-shared c-social-prod_internal",
            "docker rm -- c-shared c-social-prod_internal",
            "docker network rm -- social-prod_internal",
        ]);
        // Only networks given a bridge name are compared; egress is not.
        assert.ok(!r.calls.some((c) => c.includes("network inspect") && c.endsWith("social-prod_egress")), r.calls.join("\n"));
        const rmAt = r.calls.indexOf("docker network rm -- social-prod_internal");
        const upAt = r.calls.findIndex((c) => c.endsWith("up --detach --wait --wait-timeout 0 --remove-orphans"));
        assert.ok(rmAt > 0 && upAt > rmAt, r.calls.join("\n"));
        assert.match(r.stdout, /networks without their bridge names \(H13\), recreated now: social-prod_internal;/);

        // Once compose has created it with its name, the next deploy recreates nothing.
        const next = release(s, "bbbbbbbbbbb2", { webImage: "ghcr.io/social/web:0.9.1" });
        networksJson(next);
        const again = deploy(s, next, {
            FAKE_NETWORKS: Object.entries(bridges).map(([k, b]) => `social-prod_${k}=${b}`).join(" "),
        });
        assert.equal(again.status, 0, again.stderr);
        assert.ok(!again.calls.some((c) => /^docker (stop|rm|network rm) /.test(c)), again.calls.join("\n"));
    });

    test("H13: a stale network that cannot be removed fails the deploy with the command to run, and the previous release serves again", () => {
        const s = site();
        assert.equal(deploy(s, release(s, "aaaaaaaaaaa1")).status, 0);
        const dir = release(s, "bbbbbbbbbbb2", { webImage: "ghcr.io/social/web:0.9.1" });
        networksJson(dir);
        const r = deploy(s, dir, {
            FAKE_NETWORKS: "social-prod_internal=br-7ce389c9ca98",
            FAKE_NETWORK_RM_FAIL: "social-prod_internal",
        });
        assert.equal(r.status, 1);
        assert.match(r.stderr, /could not remove the network social-prod_internal .*has active endpoints.*run docker network rm social-prod_internal, then deploy again/);
        assert.match(r.stdout, /release aaaaaaaaaaa1 is serving again/);
        assert.equal(current(s), "releases/aaaaaaaaaaa1");
    });

    test("H13: networks that cannot be read fail the deploy before the switch instead of passing unchecked", () => {
        const s = site();
        const dir = release(s, "aaaaaaaaaaa1");
        fs.writeFileSync(path.join(dir, "config.json"), "networks: not json");
        const r = deploy(s, dir, { FAKE_NETWORKS: "social-prod_internal=" });
        assert.equal(r.status, 1);
        assert.match(r.stderr, /could not read the networks of compose\.yaml \(is jq installed\?\)/);
        assert.ok(!r.calls.some((c) => c.endsWith("up --detach --wait --wait-timeout 0 --remove-orphans")), r.calls.join("\n"));
    });

    test("a running proxy validates the new Caddyfile before it becomes live", () => {
        const s = site();
        const r = deploy(s, release(s, "aaaaaaaaaaa1"), { FAKE_PROXY_RUNNING: "1" });
        assert.equal(r.status, 0, r.stderr);
        // A per-run name, removed once it became the live file.
        const validate = r.calls.find((c) => / exec -T proxy caddy validate --config \/etc\/caddy\/Caddyfile\.next-\S+ --adapter caddyfile$/.test(c));
        assert.ok(validate, r.calls.join("\n"));
        assert.deepEqual(fs.readdirSync(path.join(s.appDir, "proxy")), ["Caddyfile"]);
    });

    test("R7: deploy.sh locks the same file as the steps (one lock per stack)", () => {
        const text = fs.readFileSync(DEPLOY_SH, "utf8");
        assert.match(text, new RegExp(`^readonly LOCK_DIR="\\$\\{ONEBOX_LOCK_DIR:-${STACK_LOCK_DIR}\\}"$`, "m"));
        // deploy.sh names the lock after its app directory, which is the stack's project.
        const paths = appPaths("social-prod", "/mnt/data");
        assert.equal(path.posix.basename(paths.appDir), "social-prod");
        assert.equal(paths.lockFile, `${STACK_LOCK_DIR}/social-prod.lock`);
        assert.equal(stackLockFile("social-prod"), paths.lockFile);
        assert.match(text, /lock="\$\{LOCK_DIR\}\/\$\{app\}\.lock"/);
    });

    test("R7: a held stack lock makes deploy.sh wait its bound, name the holder and exit 1 without a docker call; a lock handed down on fd 9 passes at once", () => {
        const s = site();
        const dir = release(s, "aaaaaaaaaaa1");
        const lock = path.join(s.dir, "lock", "social-prod.lock");
        fs.mkdirSync(path.dirname(lock), { recursive: true });
        fs.writeFileSync(lock, "onebox step deploy (pid 4242, user deploy, since 2026-01-01T00:00:00Z)\n");
        fs.writeFileSync(s.log, "");
        const held = spawnSync("flock", [lock, "bash", DEPLOY_SH, dir], { env: { ...s.env, ONEBOX_LOCK_WAIT_SECONDS: "1" }, encoding: "utf8" });
        assert.equal(held.status, 1, held.stderr);
        assert.match(held.stdout, /waiting \(at most 1 s\) for the lock .*social-prod\.lock, held by onebox step deploy \(pid 4242/);
        assert.match(held.stderr, /error: .*social-prod\.lock is still held after 1 s by onebox step deploy \(pid 4242.*nothing was changed/);
        assert.deepEqual(fs.readFileSync(s.log, "utf8").trim().split("\n"), ["docker compose version"], "nothing but the version check ran");
        assert.equal(fs.existsSync(path.join(s.appDir, "current")), false);
        // What the deploy step does: take the lock on fd 9, then run deploy.sh, which inherits it.
        const handed = spawnSync("bash", ["-c", 'exec 9>>"$1"; flock --nonblock 9; bash "$2" "$3"', "x", lock, DEPLOY_SH, dir], { env: s.env, encoding: "utf8" });
        assert.equal(handed.status, 0, handed.stderr);
        assert.doesNotMatch(handed.stdout, /waiting/);
        assert.equal(current(s), "releases/aaaaaaaaaaa1");
        // Run alone, it takes the lock itself and names itself as the holder.
        assert.equal(deploy(s, dir).status, 0);
        assert.match(fs.readFileSync(lock, "utf8"), new RegExp(`^deploy\\.sh ${dir} \\(pid \\d+, user \\S+, since `));
    });

    test("an unhealthy release: says which service and why, brings the previous release back, exits 1", () => {
        const s = site();
        const good = release(s, "aaaaaaaaaaa1");
        assert.equal(deploy(s, good).status, 0);
        const bad = release(s, "bbbbbbbbbbb2", { fail: true, webImage: "ghcr.io/social/web:0.9.1" });
        fs.writeFileSync(path.join(bad, "Caddyfile"), `${fs.readFileSync(path.join(bad, "Caddyfile"), "utf8")}# changed\n`);
        const r = deploy(s, bad);
        assert.equal(r.status, 1);
        assert.match(r.stderr, /release bbbbbbbbbbb2 failed: not every service became healthy within 0 s/);
        assert.match(r.stderr, /service api is running \(unhealthy\)/);
        assert.match(r.stderr, /probe exit 1: connection refused/);
        assert.match(r.stdout, /rolling back to release aaaaaaaaaaa1/);
        assert.match(r.stdout, /release aaaaaaaaaaa1 is serving again/);
        assert.equal(current(s), "releases/aaaaaaaaaaa1");
        assert.ok(r.calls.some((c) => c.includes(`--project-directory ${bad} --file ${bad}/compose.yaml logs --no-color --tail 30 api`)));
        assert.ok(r.calls.some((c) => c.includes(`--project-directory ${good} --file ${good}/compose.yaml up --detach --wait --wait-timeout 0 --remove-orphans`)));
        assert.ok(!r.calls.some((c) => c.includes(`--project-directory ${good}`) && c.includes(" pull ")), "a rollback does not pull");
        assert.equal(fs.readFileSync(path.join(s.appDir, "proxy", "Caddyfile"), "utf8"), fs.readFileSync(path.join(good, "Caddyfile"), "utf8"), "the previous proxy config is live again");
    });

    test("a route that fails through the proxy fails the deploy", () => {
        const s = site();
        assert.equal(deploy(s, release(s, "aaaaaaaaaaa1")).status, 0);
        const r = deploy(s, release(s, "bbbbbbbbbbb2", { webImage: "ghcr.io/social/web:0.9.1" }), { FAKE_CURL_CODE: "502" });
        assert.equal(r.status, 1);
        assert.match(r.stderr, /route https:\/\/social\.example\/api answered 502 \(curl status 0: \); expected lt500/);
        assert.equal(current(s), "releases/aaaaaaaaaaa1");
    });

    test("the first deploy has nothing to roll back to and says so", () => {
        const s = site();
        const r = deploy(s, release(s, "aaaaaaaaaaa1", { fail: true }));
        assert.equal(r.status, 1);
        assert.match(r.stdout, /no previous release to return to/);
        assert.ok(!fs.existsSync(path.join(s.appDir, "current")));
    });

    test("ACME: a certificate not issued yet is a warning, not a failed deploy; other TLS modes fail", () => {
        const s = site();
        const acme = deploy(s, release(s, "aaaaaaaaaaa1", { tls: "acme" }), { FAKE_CURL_CODE: "tls" });
        assert.equal(acme.status, 0, acme.stderr);
        assert.match(acme.stderr, /warning: https:\/\/social\.example\/api: no TLS certificate yet \(ACME\); routing not verified/);
        const internal = deploy(s, release(s, "bbbbbbbbbbb2", { tls: "internal", webImage: "ghcr.io/social/web:0.9.1" }), { FAKE_CURL_CODE: "tls" });
        assert.equal(internal.status, 1);
        assert.match(internal.stderr, /curl status 35/);
    });

    test("a missing env file stops the deploy before any container changes", () => {
        const s = site();
        fs.rmSync(path.join(s.dir, "env", "web.env"));
        const r = deploy(s, release(s, "aaaaaaaaaaa1"));
        assert.equal(r.status, 1);
        assert.match(r.stderr, /env file .*\/env\/web\.env is missing \(the secrets step writes it\)/);
        assert.ok(!r.calls.some((c) => c.includes(" up ")));
    });

    test("several stacks per server: a port another stack's container publishes stops the deploy before anything changes, naming it; the stack's own proxy does not", () => {
        const s = site();
        const first = deploy(s, release(s, "aaaaaaaaaaa1"), { FAKE_PUBLISHED: "443:social-prod-proxy-1,social-prod 80:social-prod-proxy-1,social-prod" });
        assert.equal(first.status, 0, first.stderr);
        const dir = release(s, "bbbbbbbbbbb2", { webImage: "ghcr.io/social/web:0.9.1" });
        const r = deploy(s, dir, { FAKE_PUBLISHED: "80:social-prod-proxy-1,social-prod 443:shop-prod-proxy-1,shop-prod" });
        assert.equal(r.status, 1);
        assert.match(r.stderr, /port 443 is published by the container shop-prod-proxy-1 \(stack shop-prod\), and this release publishes it too\. .*proxy\.kind: traefik-external/);
        assert.match(r.stdout, /nothing was changed; release aaaaaaaaaaa1 keeps serving/);
        assert.ok(!r.calls.some((c) => c.includes(" up ") || c.includes(" pull ")), r.calls.join("\n"));
        assert.equal(current(s), "releases/aaaaaaaaaaa1");
        // A container that is no compose stack's is named as such.
        const other = deploy(s, dir, { FAKE_PUBLISHED: "80:nginx," });
        assert.equal(other.status, 1);
        assert.match(other.stderr, /port 80 is published by the container nginx \(not a compose stack\)/);
    });

    test("keeps KEEP_RELEASES releases, newest by deploy time, never the current one", () => {
        const s = site();
        for (const id of ["aaaaaaaaaaa1", "bbbbbbbbbbb2", "ccccccccccc3"]) {
            assert.equal(deploy(s, release(s, id, { keep: 2 })).status, 0);
        }
        assert.deepEqual(fs.readdirSync(path.join(s.appDir, "releases")).sort(), ["bbbbbbbbbbb2", "ccccccccccc3"]);
        // Redeploying an older release (same content, same id) makes it the newest.
        assert.equal(deploy(s, release(s, "bbbbbbbbbbb2", { keep: 2 })).status, 0);
        assert.equal(deploy(s, release(s, "ddddddddddd4", { keep: 2 })).status, 0);
        assert.deepEqual(fs.readdirSync(path.join(s.appDir, "releases")).sort(), ["bbbbbbbbbbb2", "ddddddddddd4"]);
    });

    test("refuses an unknown manifest key and a missing release directory", () => {
        const s = site();
        const dir = release(s, "aaaaaaaaaaa1");
        fs.appendFileSync(path.join(dir, "release.manifest"), "SURPRISE=1\n");
        const r = deploy(s, dir);
        assert.equal(r.status, 1);
        assert.match(r.stderr, /unknown key SURPRISE/);
        assert.equal(deploy(s, path.join(s.appDir, "releases", "nope")).status, 1);
    });
});

/**
 * The order of a major upgrade and its way back, with the fakes above standing in
 * for docker (pg_dumpall prints a complete dump, the fingerprint queries fixed
 * counts). What the dump and restore do to real data is the real-host test's part.
 */
describe("deploy.sh: PostgreSQL major upgrades", () => {
    /** A site whose data directory holds a cluster of `major`, with release 1 (version `major`) live. */
    function upgradeSite(major: number) {
        const s = site();
        const data = path.join(s.dir, "data", "postgres");
        fs.mkdirSync(path.join(data, "base"), { recursive: true });
        fs.writeFileSync(path.join(data, "PG_VERSION"), `${major}\n`);
        fs.writeFileSync(path.join(data, "base", "rows"), "the old cluster's data\n");
        const old = release(s, "aaaaaaaaaaa1", { pgVersion: major });
        assert.equal(deploy(s, old).status, 0, "the old release goes live on its own data");
        return { s, data, old };
    }
    const composeOf = (dir: string) => `docker compose --ansi never --project-name social-prod --project-directory ${dir} --file ${dir}/compose.yaml`;

    test("16 -> 17: writers stop, safety dump and fingerprint from the old server, old data moved aside whole, new server on an empty directory, restore, same fingerprint", () => {
        const { s, data, old } = upgradeSite(16);
        const next = release(s, "bbbbbbbbbbb2", { pgVersion: 17 });
        const r = deploy(s, next);
        assert.equal(r.status, 0, r.stderr);
        assert.equal(current(s), "releases/bbbbbbbbbbb2");
        const calls = r.calls;
        const at = (c: string) => {
            const i = calls.indexOf(c);
            assert.ok(i >= 0, `no call ${c}\n${calls.join("\n")}`);
            return i;
        };
        const stopWriters = at(`${composeOf(old)} stop api web`);
        const dump = at(`${composeOf(old)} exec -T postgres pg_dumpall -U app --clean --if-exists`);
        const stopOld = at(`${composeOf(old)} stop postgres`);
        const startNew = at(`${composeOf(next)} up --detach --wait --wait-timeout 0 postgres`);
        const restore = calls.findIndex((c, i) => i > startNew && c === `${composeOf(next)} exec -T postgres psql -X -q -v ON_ERROR_STOP=1 -U app -d postgres`);
        assert.ok(stopWriters < dump && dump < stopOld && stopOld < startNew && startNew < restore, calls.join("\n"));
        // Never the new major before the old data left the directory.
        assert.ok(!calls.slice(0, stopOld).some((c) => c.startsWith(composeOf(next)) && / up /.test(c)), "the new server started before the old one stopped");
        const upgrades = fs.readdirSync(`${data}-upgrades`);
        assert.equal(upgrades.length, 1);
        assert.match(upgrades[0], /^\d{8}T\d{6}Z-pg16-to-pg17$/);
        const kept = path.join(`${data}-upgrades`, upgrades[0]);
        assert.equal(fs.readFileSync(path.join(kept, "data-pg16", "base", "rows"), "utf8"), "the old cluster's data\n");
        assert.equal(fs.statSync(kept).mode & 0o777, 0o700);
        assert.equal(fs.statSync(path.join(kept, "dumpall-pg16.sql")).mode & 0o777, 0o600);
        assert.deepEqual(fs.readdirSync(data), [], "the new server got an empty directory");
        assert.match(r.stdout, /PostgreSQL 17 holds what 16 held/);
        assert.match(r.stdout, /safety dump and the old data directory stay in/);
    });

    test("a restore that fails puts the old data directory back and the old release serves again on it", () => {
        const { s, data, old } = upgradeSite(16);
        const next = release(s, "bbbbbbbbbbb2", { pgVersion: 17 });
        fs.writeFileSync(path.join(next, "FAIL_RESTORE"), "");
        const r = deploy(s, next);
        assert.equal(r.status, 1);
        assert.match(r.stderr, /the restore into PostgreSQL 17 failed: ERROR: {2}relation already exists/);
        assert.match(r.stdout, /putting the PostgreSQL data directory of the previous release back/);
        assert.match(r.stdout, /release aaaaaaaaaaa1 is serving again/);
        assert.equal(current(s), "releases/aaaaaaaaaaa1");
        assert.equal(fs.readFileSync(path.join(data, "PG_VERSION"), "utf8"), "16\n");
        assert.equal(fs.readFileSync(path.join(data, "base", "rows"), "utf8"), "the old cluster's data\n");
        const kept = path.join(`${data}-upgrades`, fs.readdirSync(`${data}-upgrades`)[0]);
        assert.ok(fs.existsSync(path.join(kept, "failed-data-pg17")), "the failed attempt is kept for inspection");
        assert.ok(fs.existsSync(path.join(kept, "dumpall-pg16.sql")), "the safety dump is kept");
        const back = r.calls.findIndex((c) => c === `${composeOf(old)} up --detach --wait --wait-timeout 0 postgres`);
        assert.ok(back > 0, "the old server started again");
    });

    test("an upgraded release that fails the health gate also returns to the old data and release", () => {
        const { s, data } = upgradeSite(16);
        const r = deploy(s, release(s, "bbbbbbbbbbb2", { pgVersion: 17, fail: true }));
        assert.equal(r.status, 1);
        assert.match(r.stdout, /PostgreSQL 17 holds what 16 held/);
        assert.match(r.stderr, /not every service became healthy/);
        assert.match(r.stdout, /release aaaaaaaaaaa1 is serving again/);
        assert.equal(fs.readFileSync(path.join(data, "PG_VERSION"), "utf8"), "16\n");
        assert.equal(current(s), "releases/aaaaaaaaaaa1");
    });

    test("a restore whose row counts differ fails the upgrade the same way", () => {
        const { s, data } = upgradeSite(16);
        const next = release(s, "bbbbbbbbbbb2", { pgVersion: 17 });
        fs.writeFileSync(path.join(next, "FINGERPRINT_DIFF"), "");
        const r = deploy(s, next);
        assert.equal(r.status, 1);
        assert.match(r.stderr, /the restored PostgreSQL 17 differs from PostgreSQL 16: -app:public\.users\|3 -postgres:public\.users\|3 \+app:public\.users\|2/);
        assert.equal(fs.readFileSync(path.join(data, "PG_VERSION"), "utf8"), "16\n");
        assert.equal(current(s), "releases/aaaaaaaaaaa1");
    });

    test("a downgrade, and an old data directory with no serving release, are refused before any server starts", () => {
        const { s, data } = upgradeSite(17);
        const down = release(s, "bbbbbbbbbbb2", { pgVersion: 16 });
        let r = deploy(s, down);
        assert.equal(r.status, 1);
        assert.match(r.stderr, /holds PostgreSQL 17 and this release runs 16: a downgrade is a restore/);
        assert.ok(!r.calls.some((c) => c.startsWith(composeOf(down)) && (c.includes(" up ") || c.includes("pg_dumpall"))), r.calls.join("\n"));
        assert.ok(!fs.existsSync(`${data}-upgrades`));

        const fresh = site();
        const freshData = path.join(fresh.dir, "data", "postgres");
        fs.mkdirSync(freshData, { recursive: true });
        fs.writeFileSync(path.join(freshData, "PG_VERSION"), "15\n");
        const first = release(fresh, "ccccccccccc3", { pgVersion: 17 });
        r = deploy(fresh, first);
        assert.equal(r.status, 1);
        assert.match(r.stderr, /holds PostgreSQL 15 and this release runs 17: an upgrade needs the release that runs 15 to be serving/);
        assert.ok(!r.calls.some((c) => c.includes(" up ")), "nothing started on the old data");
    });
});

describe("deploy.sh: private registry logins", () => {
    function withRegistry(s: Site, id: string, registryDir: string): string {
        const dir = release(s, id);
        const manifest = path.join(dir, "release.manifest");
        fs.writeFileSync(manifest, fs.readFileSync(manifest, "utf8").replace(/^REGISTRY_CONFIG=.*$/m, `REGISTRY_CONFIG=${registryDir}`));
        return dir;
    }

    test("the pull (and only the pull) uses the stack's DOCKER_CONFIG", () => {
        const s = site();
        const registry = path.join(s.dir, "registry");
        fs.mkdirSync(registry);
        fs.writeFileSync(path.join(registry, "config.json"), '{"auths":{}}');
        const r = deploy(s, withRegistry(s, "r1", registry));
        assert.equal(r.status, 0, r.stderr);
        const withConfig = r.calls.filter((c) => c.startsWith("DOCKER_CONFIG="));
        assert.equal(withConfig.length, 1, r.calls.join("\n"));
        assert.match(withConfig[0], new RegExp(`^DOCKER_CONFIG=${registry} docker compose .* pull --quiet$`));
    });

    test("logins named in the manifest but missing on the host: the deploy fails before pulling, naming them", () => {
        const s = site();
        const registry = path.join(s.dir, "registry");
        const r = deploy(s, withRegistry(s, "r1", registry));
        assert.equal(r.status, 1);
        assert.ok(r.stderr.includes(`registry logins ${registry}/config.json are missing`), r.stderr);
        assert.ok(!r.calls.some((c) => c.includes(" pull ")), "nothing pulled");
    });

    test("a refused pull names the registries of the release's images (the engine's 'unauthorized' names none)", () => {
        const s = site();
        const dir = release(s, "r1", { webImage: "registry.example.com:5000/acme/web:2" });
        fs.writeFileSync(path.join(dir, "FAIL_PULL"), "");
        const r = deploy(s, dir);
        assert.equal(r.status, 1);
        const m = /could not pull the images from (.+?) after 3 attempts: .*unauthorized/.exec(r.stderr);
        assert.ok(m, r.stderr);
        const named = m[1].split(" ");
        assert.ok(named.includes("registry.example.com:5000"), m[1]);
        // The social stack's other images name no registry host: Docker Hub.
        assert.ok(named.includes("docker.io"), m[1]);
        assert.equal(new Set(named).size, named.length, m[1]);
        assert.ok(!r.calls.some((c) => / up /.test(c)), "nothing started");
    });

    test("without registries nothing sets DOCKER_CONFIG", () => {
        const s = site();
        const r = deploy(s, release(s, "r1"));
        assert.equal(r.status, 0, r.stderr);
        assert.ok(!r.calls.some((c) => c.startsWith("DOCKER_CONFIG=")));
    });
});

describe("deploy.sh release hooks", () => {
    const MIGRATE = { release: { service: "api", command: ["migrate", "--all"] } };

    test("deploy.release runs once per release: before the canary and the switch, not again for the same release", () => {
        const s = site();
        const a = release(s, "aaaaaaaaaaa1", { deploy: MIGRATE });
        const first = deploy(s, a);
        assert.equal(first.status, 0, first.stderr);
        const run = first.calls.findIndex((c) => / run --rm --no-deps -T --name social-prod-release-\S+ --label onebox\.release=social-prod -e ONEBOX_RELEASE=aaaaaaaaaaa1 api migrate --all$/.test(c));
        assert.ok(run > 0, first.calls.join("\n"));
        assert.ok(run < first.calls.findIndex((c) => c.endsWith("--remove-orphans")), "before compose up");
        assert.match(first.stdout, /release: release command ran: --all/);
        assert.match(fs.readFileSync(path.join(s.appDir, "release-hooks", "aaaaaaaaaaa1.done"), "utf8"), /^ran \d{4}-\d\d-\d\dT/);
        const again = deploy(s, a);
        assert.equal(again.status, 0, again.stderr);
        assert.equal(again.calls.filter((c) => / run .*onebox\.release=/.test(c)).length, 0);
        assert.match(again.stdout, /deploy\.release: already ran for release aaaaaaaaaaa1/);
    });

    test("a failing release command names the hook, writes no marker and rolls back to the previous release", () => {
        const s = site();
        assert.equal(deploy(s, release(s, "aaaaaaaaaaa1")).status, 0);
        const b = release(s, "bbbbbbbbbbb2", { deploy: MIGRATE, webImage: "ghcr.io/social/web:1.0.0" });
        fs.writeFileSync(path.join(b, "FAIL_RELEASE"), "");
        const r = deploy(s, b);
        assert.equal(r.status, 1);
        assert.match(r.stderr, /release bbbbbbbbbbb2 failed: deploy\.release: the release command exited 3: .*relation users does not exist$/m);
        assert.match(r.stdout, /release aaaaaaaaaaa1 is serving again/);
        assert.equal(current(s), "releases/aaaaaaaaaaa1");
        assert.equal(fs.existsSync(path.join(s.appDir, "release-hooks", "bbbbbbbbbbb2.done")), false);
        // Nothing of the new release was brought up beside the database.
        assert.equal(r.calls.some((c) => c.startsWith(`docker compose --ansi never --project-name social-prod --project-directory ${b}`) && c.endsWith("--remove-orphans")), false);
    });

    test("deploy.backupBeforeRelease: a dump that does not verify (lib.sh's check) stops the release before its command", () => {
        const s = site();
        assert.equal(deploy(s, release(s, "aaaaaaaaaaa1")).status, 0);
        // The fake pg_dump writes nothing: the backup library's check refuses an empty dump.
        const b = release(s, "bbbbbbbbbbb2", { deploy: { ...MIGRATE, backupBeforeRelease: true } });
        const r = deploy(s, b);
        assert.equal(r.status, 1);
        assert.match(r.stderr, new RegExp(`deploy\\.backupBeforeRelease: the dump ${s.dir}/data/postgres-release-dumps/app-bbbbbbbbbbb2-\\d{8}T\\d{6}Z-\\d+\\.dump did not verify: .*dump file is empty`));
        assert.ok(r.calls.some((c) => c.endsWith("exec -T postgres pg_dump -Fc -w -U app app")), r.calls.join("\n"));
        assert.equal(r.calls.some((c) => / run .*onebox\.release=/.test(c)), false, "the release command did not run");
        assert.equal(fs.statSync(path.join(s.dir, "data", "postgres-release-dumps")).mode & 0o777, 0o700);
        assert.match(r.stdout, /release aaaaaaaaaaa1 is serving again/);
    });

    test("deploy.preflight: every missing key named with its service; nothing changes, no rollback", () => {
        const s = site();
        assert.equal(deploy(s, release(s, "aaaaaaaaaaa1")).status, 0);
        const b = release(s, "bbbbbbbbbbb2", { deploy: { preflight: { requiredEnv: { api: ["SMTP_PASSWORD", "DATABASE_HOST", "DATABASE_URL"] } } } });
        // compose's own view of the service: DATABASE_URL set, DATABASE_HOST not, the secret as a file.
        const view = { services: { api: { environment: { DATABASE_URL: "postgresql://app@db/app", SMTP_PASSWORD_FILE: "/run/secrets/SMTP_PASSWORD" } } } };
        fs.writeFileSync(path.join(b, "config.json"), JSON.stringify(view));
        const r = deploy(s, b);
        assert.equal(r.status, 1);
        assert.match(
            r.stderr,
            new RegExp(
                `deploy\\.preflight: missing environment keys: service api: SMTP_PASSWORD \\(SMTP_PASSWORD_FILE names a secret file, and ${s.dir}/secrets/api/SMTP_PASSWORD is missing or empty\\); service api: DATABASE_HOST \\(not set\\)$`,
                "m",
            ),
        );
        assert.doesNotMatch(r.stderr, /DATABASE_URL/);
        assert.match(r.stdout, /nothing was changed; release aaaaaaaaaaa1 keeps serving/);
        assert.doesNotMatch(r.stdout, /rolling back/);
        assert.equal(current(s), "releases/aaaaaaaaaaa1");
        assert.equal(r.calls.some((c) => / (pull|up|run|exec) /.test(c)), false, r.calls.join("\n"));

        // The env file (secretsAsEnv) counts as well; with the secret file in place the release goes live.
        fs.writeFileSync(path.join(s.dir, "env", "api.env"), "DATABASE_HOST='social-prod-postgres'\n");
        fs.mkdirSync(path.join(s.dir, "secrets", "api"), { recursive: true });
        fs.writeFileSync(path.join(s.dir, "secrets", "api", "SMTP_PASSWORD"), "x");
        const ok = deploy(s, b);
        assert.equal(ok.status, 0, ok.stderr);
        assert.match(ok.stdout, /deploy\.preflight: 3 required key\(s\) set/);
    });

    test("deploy.smoke: a body without the expected text rolls back after its attempts; the right one passes", () => {
        const s = site();
        assert.equal(deploy(s, release(s, "aaaaaaaaaaa1")).status, 0);
        const smoke = { smoke: [{ host: "social.example", path: "/health?deep=1", bodyContains: '"status": "ok"', attempts: 2 }] };
        const b = release(s, "bbbbbbbbbbb2", { deploy: smoke });
        const bad = deploy(s, b, { FAKE_CURL_BODY: '{"status": "degraded"}' });
        assert.equal(bad.status, 1);
        assert.match(bad.stderr, /deploy\.smoke\[0\]: https:\/\/social\.example\/health\?deep=1 answered 200 without ""status": "ok"" in the body \(2 attempt\(s\)\)/);
        assert.equal(bad.calls.filter((c) => c.includes("https://social.example/health?deep=1")).length, 2, "two attempts; the rollback makes no smoke check");
        assert.match(bad.stdout, /release aaaaaaaaaaa1 is serving again/);
        assert.equal(current(s), "releases/aaaaaaaaaaa1");
        const good = deploy(s, b, { FAKE_CURL_BODY: '{"status": "ok"}' });
        assert.equal(good.status, 0, good.stderr);
        assert.match(good.stdout, /deploy\.smoke\[0\]: https:\/\/social\.example\/health\?deep=1 answered 200/);
        assert.equal(current(s), "releases/bbbbbbbbbbb2");
    });

    describe("traefik-external: every route through the existing Traefik", () => {
        // docker ps --format '{{.Names}}\t{{.Ports}}' of the network: another app, then Traefik.
        const PS = "other-app-1\t8080/tcp\ntraefik\t0.0.0.0:80->80/tcp, [::]:80->80/tcp, 0.0.0.0:443->443/tcp, [::]:443->443/tcp\n";
        const curlCalls = (calls: string[]) => calls.filter((c) => c.startsWith("curl "));

        test("the routes are requested through the address of the container on proxy.externalNetwork that publishes 443, certificate verified", () => {
            const s = site();
            const dir = release(s, "aaaaaaaaaaa1", { traefik: true });
            const r = deploy(s, dir, { FAKE_TRAEFIK_PS: PS.replace(/\t/g, "\\t") });
            assert.equal(r.status, 0, r.stderr);
            assert.ok(r.calls.includes("docker ps --filter network=edge --format {{.Names}}\t{{.Ports}}"), r.calls.join("\n"));
            assert.match(r.stdout, /route checks through traefik on proxy\.externalNetwork edge \(127\.0\.0\.1:443\)/);
            const dump = (u: string, host = "social.example:443:127.0.0.1") =>
                `curl --silent --show-error --output /dev/null --dump-header ${"\u0000"} --write-out %{http_code} --max-time 10 --resolve ${host} ${u}`;
            const norm = (c: string) => c.replace(/--dump-header \S+/, `--dump-header ${"\u0000"}`);
            assert.deepEqual(curlCalls(r.calls).map(norm), [dump("https://social.example/api"), dump("https://social.example/health"), dump("https://social.example/")]);
            assert.ok(!curlCalls(r.calls).some((c) => c.includes("--insecure")), "the certificate is verified");
            assert.equal(current(s), "releases/aaaaaaaaaaa1");
        });

        test("a container publishing its 443 on another host port is used with that port; a specific binding address is kept", () => {
            const s = site();
            const r = deploy(s, release(s, "aaaaaaaaaaa1", { traefik: true }), { FAKE_TRAEFIK_PS: "edge-proxy\\t10.0.0.5:8443->443/tcp\\n" });
            assert.equal(r.status, 0, r.stderr);
            assert.ok(curlCalls(r.calls).every((c) => c.includes("--resolve social.example:8443:10.0.0.5 https://social.example:8443/")), r.calls.join("\n"));
        });

        test("a failing route rolls back to the previous release", () => {
            const s = site();
            const env = { FAKE_TRAEFIK_PS: PS.replace(/\t/g, "\\t") };
            assert.equal(deploy(s, release(s, "aaaaaaaaaaa1", { traefik: true }), env).status, 0);
            const r = deploy(s, release(s, "bbbbbbbbbbb2", { traefik: true, webImage: "ghcr.io/social/web:0.9.1" }), { ...env, FAKE_CURL_CODE: "502", FAKE_CURL_FAILS: "1" });
            assert.equal(r.status, 1);
            assert.match(r.stderr, /route https:\/\/social\.example\/api answered 502 through traefik \(127\.0\.0\.1:443\) on proxy\.externalNetwork edge; expected lt500/);
            assert.match(r.stdout, /rolling back to release aaaaaaaaaaa1/);
            assert.match(r.stdout, /release aaaaaaaaaaa1 is serving again/);
            assert.equal(current(s), "releases/aaaaaaaaaaa1");
        });

        test("Traefik's own 404 (no router of the stack matched: no headers middleware) is a failure, not an answer below 500", () => {
            const s = site();
            const env = { FAKE_TRAEFIK_PS: PS.replace(/\t/g, "\\t") };
            assert.equal(deploy(s, release(s, "aaaaaaaaaaa1", { traefik: true }), env).status, 0);
            const r = deploy(s, release(s, "bbbbbbbbbbb2", { traefik: true, webImage: "ghcr.io/social/web:0.9.1" }), {
                ...env,
                FAKE_CURL_CODE: "404",
                FAKE_CURL_FAILS: "1",
                FAKE_CURL_HEADERS: "HTTP/1.1 404 Not Found\\r\\nContent-Type: text/plain; charset=utf-8\\r\\n\\r\\n",
            });
            assert.equal(r.status, 1);
            assert.match(r.stderr, /route https:\/\/social\.example\/api answered 404 through traefik .* without this stack's headers: no router of the stack matched \(does Traefik watch proxy\.externalNetwork edge/);
            assert.match(r.stdout, /release aaaaaaaaaaa1 is serving again/);
            assert.equal(current(s), "releases/aaaaaaaaaaa1");
        });

        test("no Traefik container found: 127.0.0.1:443 is tried, and a route without an answer fails naming proxy.externalNetwork", () => {
            const s = site();
            const r = deploy(s, release(s, "aaaaaaaaaaa1", { traefik: true }), { FAKE_TRAEFIK_PS: "other-app-1\\t8080/tcp\\n", FAKE_CURL_CODE: "down" });
            assert.equal(r.status, 1);
            assert.match(r.stderr, /no container on proxy\.externalNetwork edge publishes port 443; the route checks try 127\.0\.0\.1:443/);
            assert.match(r.stderr, /route https:\/\/social\.example\/api got no answer through 127\.0\.0\.1:443: no container on proxy\.externalNetwork edge publishes port 443 \(is Traefik running and attached to that network\?\) \(curl status 7/);
            assert.ok(curlCalls(r.calls).every((c) => c.includes("--resolve social.example:443:127.0.0.1 ")), r.calls.join("\n"));
            // Traefik on the host network: nothing on the network publishes 443, but loopback answers.
            const s2 = site();
            const ok = deploy(s2, release(s2, "aaaaaaaaaaa1", { traefik: true }), { FAKE_TRAEFIK_PS: "" });
            assert.equal(ok.status, 0, ok.stderr);
        });

        test("a certificate this host does not trust: routing checked unverified, with a warning; a real failure still fails", () => {
            const s = site();
            const env = { FAKE_TRAEFIK_PS: PS.replace(/\t/g, "\\t") };
            const r = deploy(s, release(s, "aaaaaaaaaaa1", { traefik: true }), { ...env, FAKE_CURL_CODE: "untrusted" });
            assert.equal(r.status, 0, r.stderr);
            assert.match(r.stderr, /warning: https:\/\/social\.example\/api: this host does not trust the certificate Traefik serves \(curl: \(60\) SSL certificate problem: self-signed certificate\); the routing was checked without verifying it/);
            const calls = curlCalls(r.calls);
            assert.equal(calls.length, 6, "each route: verified, then unverified");
            assert.deepEqual(calls.map((c) => c.includes("--insecure")), [false, true, false, true, false, true]);
        });
    });
});

describe("deploy.sh with database.pooler", () => {
    test("a pooler enabled on a running stack serves before the canary that connects through it (CI run of stop 22)", () => {
        const s = site();
        assert.equal(deploy(s, release(s, "aaaaaaaaaaa1")).status, 0);
        const b = release(s, "bbbbbbbbbbb2", { pooler: true });
        const r = deploy(s, b, { FAKE_RECREATE: "api" });
        assert.equal(r.status, 0, r.stderr);
        const compose = `docker compose --ansi never --project-name social-prod --project-directory ${b} --file ${b}/compose.yaml`;
        const db = r.calls.indexOf(`${compose} up --detach --wait --wait-timeout 0 postgres`);
        const pooler = r.calls.indexOf(`${compose} up --detach --wait --wait-timeout 0 pgbouncer`);
        const canary = r.calls.findIndex((c) => c.startsWith(`${compose} run --detach --no-deps --name social-prod-api-canary-`));
        assert.ok(db >= 0 && pooler > db, r.calls.join("\n"));
        assert.ok(canary > pooler, `the canary (${canary}) started after the pooler (${pooler})`);
        // It was not running before: it read the auth file as it started, no signal needed.
        assert.ok(!r.calls.some((c) => c.startsWith("docker kill")), r.calls.join("\n"));
        assert.doesNotMatch(r.stdout, /re-read its auth file/);
    });

    test("a pooler that keeps running re-reads its auth file (SIGHUP) after the password is set, before the canary", () => {
        const s = site();
        assert.equal(deploy(s, release(s, "aaaaaaaaaaa1", { pooler: true })).status, 0);
        const r = deploy(s, release(s, "bbbbbbbbbbb2", { pooler: true, webImage: "ghcr.io/social/web:1.0.0" }), { FAKE_POOLER_RUNNING: "1", FAKE_RECREATE: "web" });
        assert.equal(r.status, 0, r.stderr);
        const password = r.calls.findIndex((c) => / exec -T postgres psql .* -v role=app$/.test(c));
        const hup = r.calls.indexOf("docker kill --signal HUP feed01");
        const canary = r.calls.findIndex((c) => / run --detach --no-deps --name social-prod-web-canary-/.test(c));
        assert.ok(password >= 0 && hup > password, r.calls.join("\n"));
        assert.ok(canary > hup, r.calls.join("\n"));
        assert.match(r.stdout, /pgbouncer re-read its auth file/);
    });
});
