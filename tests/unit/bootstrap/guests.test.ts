/**
 * H14, an existing server is other stacks' home: the bootstrap merges only the Docker daemon
 * settings the stack needs into the host's daemon.json (every other key kept, contradicting
 * values refused by name), never restarts Docker while containers of other stacks run unless
 * the stack allows it (applying reloadable settings with a reload instead), and the firewall
 * keeps other containers' published ports open when the stack says so.
 *
 * The daemon module runs as shipped (the assembled bootstrap, sourced), on a daemon.json in a
 * temporary directory, with `systemctl` and `docker` replaced by recorders on PATH: the
 * decisions (write, reload, restart, refuse) are what is tested here; the real-host run
 * (tests/host/existing-guests.test.ts) checks them on a real Docker engine.
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { shippedBootstrap } from "../../helpers/bootstrap-script";

const shipped = shippedBootstrap();
after(() => rmSync(shipped.dir, { recursive: true, force: true }));
/** The assembled script without its final `main "$@"`: sourcing it defines every function. */
const LIB = join(shipped.dir, "functions.sh");
writeFileSync(LIB, shipped.script.replace(/main "\$@"\n$/, ""));

const STACK_DAEMON = JSON.parse(readFileSync(join(shipped.dir, "daemon.json"), "utf8")) as Record<string, unknown>;

interface Host {
    /** The host's daemon.json before the run (undefined: no file). */
    daemon?: string;
    /** Whether docker.service is active. */
    dockerActive?: boolean;
    /** Running containers as `docker ps` prints them: name and compose project label. */
    containers?: [string, string][];
    /** `docker ps` fails. */
    psFails?: boolean;
    allowRestart?: boolean;
}

interface Outcome {
    status: number | null;
    stdout: string;
    stderr: string;
    /** The daemon.json after the run (undefined: no file). */
    daemon?: string;
    /** The systemctl calls other than is-active/show, in order. */
    systemctl: string[];
    /** The reload record after the run. */
    record?: string;
}

const SYSTEMCTL_SHIM = `#!/usr/bin/env bash
if [[ "$1" == "is-active" ]]; then [[ -f "$SHIM_DIR/active" ]]; exit; fi
[[ "$1" == "show" ]] && exit 0
printf '%s\\n' "$*" >>"$SHIM_DIR/systemctl.log"
`;
const DOCKER_SHIM = `#!/usr/bin/env bash
case "$1" in
  ps) [[ -f "$SHIM_DIR/ps-fails" ]] && exit 1; cat "$SHIM_DIR/ps" ;;
  info) echo true ;;
  *) exit 0 ;;
esac
`;

/** Runs apply_daemon_settings on a host described by HOST. */
function applyDaemon(host: Host): Outcome {
    const dir = mkdtempSync(join(tmpdir(), "onebox-guests-"));
    try {
        const bin = join(dir, "bin");
        mkdirSync(bin);
        mkdirSync(join(dir, "scratch"));
        for (const [name, body] of [["systemctl", SYSTEMCTL_SHIM], ["docker", DOCKER_SHIM], ["chown", "#!/bin/sh\nexit 0\n"]]) {
            writeFileSync(join(bin, name), body);
            chmodSync(join(bin, name), 0o755);
        }
        if (host.dockerActive) writeFileSync(join(dir, "active"), "");
        if (host.psFails) writeFileSync(join(dir, "ps-fails"), "");
        writeFileSync(join(dir, "ps"), (host.containers ?? []).map(([n, p]) => `${n}\t${p}\n`).join(""));
        const target = join(dir, "etc-docker", "daemon.json");
        mkdirSync(join(dir, "etc-docker"));
        if (host.daemon !== undefined) writeFileSync(target, host.daemon);
        const record = join(dir, "etc-onebox", "applied.json");
        const r = spawnSync("bash", ["-c", 'set -euo pipefail; source "$0"; apply_daemon_settings "$1" "$2"', LIB, target, record], {
            encoding: "utf8",
            env: {
                PATH: `${bin}:${process.env.PATH ?? "/usr/bin:/bin"}`,
                SHIM_DIR: dir,
                SCRATCH: join(dir, "scratch"),
                ONEBOX_STACK: "shop-production",
                ONEBOX_ALLOW_DOCKER_RESTART: host.allowRestart ? "true" : "false",
            },
            timeout: 60_000,
        });
        const log = join(dir, "systemctl.log");
        return {
            status: r.status,
            stdout: r.stdout,
            stderr: r.stderr,
            daemon: existsSync(target) ? readFileSync(target, "utf8") : undefined,
            systemctl: existsSync(log) ? readFileSync(log, "utf8").trim().split("\n") : [],
            record: existsSync(record) ? readFileSync(record, "utf8") : undefined,
        };
    } finally {
        rmSync(dir, { recursive: true, force: true });
    }
}

/** A host whose admin already set what the stack needs except live-restore, plus settings of their own. */
const TRAEFIK_HOST = {
    "log-level": "warn",
    "log-driver": "json-file",
    "log-opts": { "max-size": "50m", "max-file": "5", tag: "{{.Name}}" },
    "default-address-pools": [{ base: "10.200.0.0/16", size: 24 }],
    "no-new-privileges": true,
    "userland-proxy": false,
};
const json = (v: unknown) => `${JSON.stringify(v, null, 2)}\n`;
const parse = (text: string | undefined) => JSON.parse(text ?? "null") as Record<string, unknown>;
const TRAEFIK = ["traefik", "edge"] as [string, string];

void describe("H7/H14 daemon.json: the stack's settings merged into the host's", () => {
    void it("a host without daemon.json (Docker not installed yet) gets exactly the stack's settings, no restart", () => {
        const o = applyDaemon({});
        assert.equal(o.status, 0, o.stderr);
        assert.deepEqual(parse(o.daemon), STACK_DAEMON);
        assert.deepEqual(o.systemctl, []);
    });

    void it("keeps every foreign key and the host's log rotation, adds only what is missing, and applies live-restore with a reload", () => {
        const o = applyDaemon({ daemon: json(TRAEFIK_HOST), dockerActive: true, containers: [TRAEFIK] });
        assert.equal(o.status, 0, o.stderr);
        assert.deepEqual(parse(o.daemon), { ...TRAEFIK_HOST, "live-restore": true });
        assert.deepEqual(o.systemctl, ["reload docker.service"], "a reload (SIGHUP), never a restart");
        assert.equal(o.record, o.daemon, "the reloaded file is recorded for --check");
        assert.match(o.stdout, /changed: reloaded docker: live-restore applied live/);
    });

    void it("H14 refuses a needed restart while another stack's container runs, naming the settings and the containers, and changes nothing", () => {
        const before = json({ ...TRAEFIK_HOST, "userland-proxy": undefined, "live-restore": true });
        const o = applyDaemon({ daemon: before, dockerActive: true, containers: [TRAEFIK, ["shop-production-api-1", "shop-production"], ["blog-db", ""]] });
        assert.equal(o.status, 1);
        assert.match(o.stderr, /the Docker daemon settings userland-proxy take effect only when Docker restarts/);
        assert.match(o.stderr, /containers of other stacks run: blog-db, traefik\./);
        assert.doesNotMatch(o.stderr, /shop-production-api-1/, "the stack's own containers are not foreign");
        assert.match(o.stderr, /host\.allowDockerRestart: true/);
        assert.equal(o.daemon, before, "daemon.json untouched");
        assert.deepEqual(o.systemctl, []);
    });

    void it("H14 restarts when the stack allows it (host.allowDockerRestart)", () => {
        const o = applyDaemon({ daemon: json({ "log-level": "warn" }), dockerActive: true, containers: [TRAEFIK], allowRestart: true });
        assert.equal(o.status, 0, o.stderr);
        assert.deepEqual(parse(o.daemon), { "log-level": "warn", ...STACK_DAEMON });
        assert.deepEqual(o.systemctl, ["restart docker.service"]);
    });

    void it("restarts without asking when only the stack's own containers run (a created server)", () => {
        const o = applyDaemon({ daemon: json({}), dockerActive: true, containers: [["shop-production-proxy-1", "shop-production"]] });
        assert.equal(o.status, 0, o.stderr);
        assert.deepEqual(o.systemctl, ["restart docker.service"]);
    });

    void it("refuses to restart blind when docker ps fails", () => {
        const o = applyDaemon({ daemon: json({}), dockerActive: true, psFails: true, allowRestart: false });
        assert.equal(o.status, 1);
        assert.match(o.stderr, /cannot list the running containers/);
        assert.deepEqual(o.systemctl, []);
    });

    void it("changes nothing when the host already has the settings (key order and formatting are the host's)", () => {
        const have = `{"userland-proxy":false,"live-restore":true,"no-new-privileges":true,"log-opts":{"max-size":"10m","max-file":"3"},"log-driver":"json-file","debug":false}\n`;
        const o = applyDaemon({ daemon: have, dockerActive: true, containers: [TRAEFIK] });
        assert.equal(o.status, 0, o.stderr);
        assert.equal(o.daemon, have);
        assert.deepEqual(o.systemctl, []);
    });

    void it("keeps log-driver local (it rotates itself) and a host max-size without adding max-file", () => {
        const have = { "log-driver": "local", "log-opts": { "max-size": "20m" }, "live-restore": true, "no-new-privileges": true, "userland-proxy": false };
        const o = applyDaemon({ daemon: json(have), dockerActive: true, containers: [TRAEFIK] });
        assert.equal(o.status, 0, o.stderr);
        assert.deepEqual(parse(o.daemon), have);
        assert.deepEqual(o.systemctl, []);
    });

    const conflicts: [string, Record<string, unknown>, RegExp][] = [
        ["live-restore false", { "live-restore": false }, /- live-restore: the host has false, the stack needs true: containers must survive a dockerd restart/],
        ["userland-proxy true", { "userland-proxy": true }, /- userland-proxy: the host has true, the stack needs false: published ports must pass through netfilter/],
        ["a log driver that is not json-file or local", { "log-driver": "journald" }, /- log-driver: the host has "journald", the stack needs "json-file"/],
        ["no-new-privileges false", { "no-new-privileges": false }, /- no-new-privileges: the host has false, the stack needs true/],
        ["iptables false (published ports would bypass DOCKER-USER)", { iptables: false }, /- iptables: the host has false, the stack needs true \(the default\): Docker must write its iptables rules/],
    ];
    for (const [name, have, message] of conflicts) {
        void it(`refuses a contradicting host value, naming the key: ${name}`, () => {
            const before = json({ "log-level": "info", ...have });
            const o = applyDaemon({ daemon: before, dockerActive: true, containers: [TRAEFIK], allowRestart: true });
            assert.equal(o.status, 1);
            assert.match(o.stderr, message);
            assert.match(o.stderr, /never overrides another admin's daemon settings/);
            assert.equal(o.daemon, before);
            assert.deepEqual(o.systemctl, []);
        });
    }

    void it("refuses a daemon.json that is not a JSON object", () => {
        const o = applyDaemon({ daemon: "[1, 2]\n", dockerActive: true });
        assert.equal(o.status, 1);
        assert.match(o.stderr, /daemon\.json is not a JSON object/);
    });
});

void describe("H14 host.keepPublishedPorts in the DOCKER-USER policy", () => {
    /** Runs `--render WHAT` with the settings. */
    function render(what: string, settings: Record<string, string>): { status: number | null; stdout: string; stderr: string } {
        const dir = mkdtempSync(join(tmpdir(), "onebox-guests-env-"));
        try {
            const env = join(dir, "bootstrap.env");
            writeFileSync(env, Object.entries(settings).map(([k, v]) => `${k}='${v}'\n`).join(""), { mode: 0o600 });
            const r = spawnSync("bash", [shipped.path, "--render", what], { encoding: "utf8", env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ONEBOX_BOOTSTRAP_ENV: env, ONEBOX_ETC_DIR: dir } });
            return { status: r.status, stdout: r.stdout, stderr: r.stderr };
        } finally {
            rmSync(dir, { recursive: true, force: true });
        }
    }
    const BASE = { ONEBOX_SSH_ALLOWED_CIDRS: "203.0.113.7/32", ONEBOX_PUBLIC_TCP_PORTS: "80 443", ONEBOX_RESTRICTED_PORTS: "5432:198.51.100.0/24" };
    /** The DOCKER-USER rules between the stack's own allow rules and the final drops. */
    const rules = (text: string) => text.split("\n").filter((l) => l.startsWith("-A DOCKER-USER") && !/ -i | -o |--ctstate/.test(l));

    void it("default: only the stack's ports pass; every other published port is dropped", () => {
        const r = render("after.rules", BASE);
        assert.equal(r.status, 0, r.stderr);
        assert.deepEqual(rules(r.stdout), [
            "-A DOCKER-USER -p tcp -m conntrack --ctorigdstport 80 --ctdir ORIGINAL -j RETURN",
            "-A DOCKER-USER -p tcp -m conntrack --ctorigdstport 443 --ctdir ORIGINAL -j RETURN",
            "-A DOCKER-USER -s 198.51.100.0/24 -p tcp -m conntrack --ctorigdstport 5432 --ctdir ORIGINAL -j RETURN",
            "-A DOCKER-USER -j RETURN",
        ]);
        // The final RETURN comes after the drops: nothing unlisted reaches it.
        const all = r.stdout.split("\n");
        assert.ok(all.indexOf("-A DOCKER-USER -o docker0 -j onebox-docker-deny") < all.indexOf("-A DOCKER-USER -j RETURN"));
    });

    void it("a list keeps those ports open to everyone (TCP and UDP), before the drops", () => {
        const r = render("after.rules", { ...BASE, ONEBOX_KEEP_PUBLISHED_PORTS: "8080 0053 8080" });
        assert.equal(r.status, 0, r.stderr);
        const lines = r.stdout.split("\n");
        const kept = [
            "-A DOCKER-USER -p tcp -m conntrack --ctorigdstport 8080 --ctdir ORIGINAL -j RETURN",
            "-A DOCKER-USER -p udp -m conntrack --ctorigdstport 8080 --ctdir ORIGINAL -j RETURN",
            "-A DOCKER-USER -p tcp -m conntrack --ctorigdstport 53 --ctdir ORIGINAL -j RETURN",
            "-A DOCKER-USER -p udp -m conntrack --ctorigdstport 53 --ctdir ORIGINAL -j RETURN",
        ];
        assert.deepEqual(rules(r.stdout).slice(3, 7), kept);
        for (const k of kept) assert.ok(lines.indexOf(k) < lines.indexOf("-A DOCKER-USER -o docker0 -j onebox-docker-deny"), k);
        assert.deepEqual(render("ufw-rules", { ...BASE, ONEBOX_KEEP_PUBLISHED_PORTS: "8080" }).stdout, render("ufw-rules", BASE).stdout, "ufw itself opens nothing more");
    });

    void it("all: every published port passes except the stack's restricted ones from other sources", () => {
        const r = render("after.rules", { ...BASE, ONEBOX_KEEP_PUBLISHED_PORTS: "all" });
        assert.equal(r.status, 0, r.stderr);
        const lines = r.stdout.split("\n");
        const deny = "-A DOCKER-USER -p tcp -m conntrack --ctorigdstport 5432 --ctdir ORIGINAL -j onebox-docker-deny";
        const allowDb = "-A DOCKER-USER -s 198.51.100.0/24 -p tcp -m conntrack --ctorigdstport 5432 --ctdir ORIGINAL -j RETURN";
        assert.ok(lines.indexOf(allowDb) >= 0 && lines.indexOf(allowDb) < lines.indexOf(deny), "listed networks first, then the database port dropped");
        const keepAll = lines.indexOf("-A DOCKER-USER -j RETURN");
        assert.ok(lines.indexOf(deny) < keepAll && keepAll < lines.indexOf("-A DOCKER-USER -o docker0 -j onebox-docker-deny"));
    });

    const bad: [string, string, RegExp][] = [
        ["a restricted port (it would open to everyone)", "5432", /ONEBOX_KEEP_PUBLISHED_PORTS: 5432 is restricted to listed networks/],
        ["a word that is not a port", "all 8080", /ONEBOX_KEEP_PUBLISHED_PORTS: 'all' is not a port/],
        ["port 0", "0", /ONEBOX_KEEP_PUBLISHED_PORTS: '0' is not a port/],
    ];
    for (const [name, value, message] of bad) {
        void it(`refuses ${name}`, () => {
            const r = render("after.rules", { ...BASE, ONEBOX_KEEP_PUBLISHED_PORTS: value });
            assert.equal(r.status, 2);
            assert.match(r.stderr, message);
        });
    }

    void it("refuses an ONEBOX_ALLOW_DOCKER_RESTART that is not true or false, and a malformed ONEBOX_STACK", () => {
        const r = render("after.rules", { ...BASE, ONEBOX_ALLOW_DOCKER_RESTART: "yes", ONEBOX_STACK: "Shop Prod" });
        assert.equal(r.status, 2);
        assert.match(r.stderr, /ONEBOX_ALLOW_DOCKER_RESTART='yes' must be true or false/);
        assert.match(r.stderr, /ONEBOX_STACK='Shop Prod' must be a compose project name/);
    });
});

void describe("H7/H14 the daemon plan's keys under set -euo pipefail (how docker_check reads them)", () => {
    // docker_check collects the keys to set with `missing="$(plan_field changed "${plan}" | paste
    // -sd, -)"`: a non-zero plan_field there ends the whole --check silently. The usual plan on a
    // host that already has the settings is empty.
    const keysOf = (plan: string) =>
        spawnSync("bash", ["-c", 'set -euo pipefail; source "$0"; m="$(plan_field changed "$1" | paste -sd, -)"; printf "[%s]" "${m}"', LIB, plan], { encoding: "utf8", timeout: 60_000 });
    for (const [name, plan, keys] of [
        ["an empty plan (nothing to change)", "", "[]"],
        ["a plan whose last line is not a change", "changed live-restore\nnote x", "[live-restore]"],
        ["a plan of changes", "changed live-restore\nchanged userland-proxy", "[live-restore,userland-proxy]"],
    ] as const) {
        void it(`${name}: succeeds with the changed keys`, () => {
            const r = keysOf(plan);
            assert.equal(r.status, 0, r.stderr);
            assert.equal(r.stdout, keys);
        });
    }
});
