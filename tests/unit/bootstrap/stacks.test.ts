/**
 * Several stacks on one server (H4, H8, H14): each stack has its own settings file,
 * /etc/onebox/<stack>/bootstrap.env, and the host has one firewall, so the bootstrap of any
 * stack applies the union of every stack's ports. Another stack's run must not close this
 * stack's ports, a port no stack wants any more is closed, a port one stack restricts stays
 * restricted, and another stack's file is parsed (never sourced) and trusted only when
 * root-owned and not writable by others.
 *
 * The script runs as shipped (assembled), on a settings directory in a temporary directory
 * (ONEBOX_ETC_DIR) written in the program's own format (envFileLines), with `ufw`, `iptables`
 * and `systemctl` replaced by recorders on PATH.
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { envFileLines } from "../../../components/provisioning/shell";
import { shippedBootstrap } from "../../helpers/bootstrap-script";

const shipped = shippedBootstrap();
after(() => rmSync(shipped.dir, { recursive: true, force: true }));
/** The assembled script without its final `main "$@"`: sourcing it defines every function. */
const LIB = join(shipped.dir, "functions.sh");
writeFileSync(LIB, shipped.script.replace(/main "\$@"\n$/, ""));

type Settings = Record<string, string>;

/** A web stack: SSH from the admin, 80/443 to everyone. */
const SHOP: Settings = {
    ONEBOX_SSH_ALLOWED_CIDRS: "203.0.113.7/32",
    ONEBOX_SSH_PORT: "22",
    ONEBOX_PUBLIC_TCP_PORTS: "80 443",
    ONEBOX_RESTRICTED_PORTS: "",
    ONEBOX_STACK: "shop-production",
    ONEBOX_KEEP_PUBLISHED_PORTS: "",
};
/** A database-only stack: its PostgreSQL port to one network of each family, nothing public. */
const DB: Settings = {
    ONEBOX_SSH_ALLOWED_CIDRS: "203.0.113.7/32",
    ONEBOX_SSH_PORT: "22",
    ONEBOX_PUBLIC_TCP_PORTS: "",
    ONEBOX_RESTRICTED_PORTS: "5433:198.51.100.0/24 5433:2001:db8::/48",
    ONEBOX_STACK: "ledger-db",
    ONEBOX_KEEP_PUBLISHED_PORTS: "",
};

/** Another stack's file: in its stack directory (default) or the single-stack file. */
interface Other {
    settings: Settings;
    /** Directory name under the settings directory; "" writes the single-stack bootstrap.env. */
    dir?: string;
    mode?: number;
    /** Raw text instead of the program's format. */
    text?: string;
}

interface Host {
    /** This run's settings: its own file in <etc>/<ONEBOX_STACK>/. */
    own: Settings;
    others?: Other[];
    /** `ufw show added` lines before the run. */
    added?: string[];
}

interface Outcome {
    status: number | null;
    stdout: string;
    stderr: string;
    /** The ufw calls that change rules, in order. */
    ufw: string[];
    /** Paths of the files written, by role. */
    etc: string;
}

const UFW_SHIM = `#!/usr/bin/env bash
if [[ "$1 $2" == "show added" ]]; then
  echo "Added user rules (see 'ufw status' for running firewall):"
  cat "$SHIM_DIR/added"
  exit 0
fi
[[ "$1" == status ]] && { echo "Status: active"; exit 0; }
printf '%s\\n' "$*" >>"$SHIM_DIR/ufw.log"
`;

function settingsFile(settings: Settings): string {
    return `# Bootstrap settings of a stack, rendered by onebox; sourced by /usr/local/lib/onebox/bootstrap.sh.\n${envFileLines(Object.entries(settings))}`;
}

/** Writes HOST's settings files and runs SCRIPT (bash, after sourcing the functions, or the shipped script with ARGS). */
function onHost(host: Host, body: { source: string } | { args: string[] }): Outcome {
    const dir = mkdtempSync(join(tmpdir(), "onebox-stacks-"));
    const etc = join(dir, "etc-onebox");
    try {
        const bin = join(dir, "bin");
        mkdirSync(bin);
        mkdirSync(join(dir, "scratch"));
        for (const [name, text] of [["ufw", UFW_SHIM], ["iptables", "#!/bin/sh\nexit 0\n"], ["systemctl", "#!/bin/sh\nexit 1\n"]]) {
            writeFileSync(join(bin, name), text);
            chmodSync(join(bin, name), 0o755);
        }
        writeFileSync(join(dir, "added"), (host.added ?? []).map((l) => `${l}\n`).join(""));
        const write = (path: string, text: string, mode = 0o600) => {
            mkdirSync(join(path, ".."), { recursive: true, mode: 0o700 });
            writeFileSync(path, text);
            chmodSync(path, mode);
        };
        const own = join(etc, host.own.ONEBOX_STACK, "bootstrap.env");
        write(own, settingsFile(host.own));
        for (const o of host.others ?? []) {
            const name = o.dir ?? o.settings.ONEBOX_STACK;
            write(name === "" ? join(etc, "bootstrap.env") : join(etc, name, "bootstrap.env"), o.text ?? settingsFile(o.settings), o.mode);
        }
        const env = {
            PATH: `${bin}:${process.env.PATH ?? "/usr/bin:/bin"}`,
            SHIM_DIR: dir,
            SCRATCH: join(dir, "scratch"),
            ONEBOX_ETC_DIR: etc,
            ONEBOX_BOOTSTRAP_ENV: own,
        };
        const r =
            "args" in body
                ? spawnSync("bash", [shipped.path, ...body.args], { encoding: "utf8", env, timeout: 60_000 })
                : spawnSync("bash", ["-c", `set -euo pipefail; source "$0"; ${body.source}`, LIB], { encoding: "utf8", env, timeout: 60_000 });
        const log = join(dir, "ufw.log");
        return {
            status: r.status,
            stdout: r.stdout,
            stderr: r.stderr,
            ufw: existsSync(log) ? readFileSync(log, "utf8").trim().split("\n") : [],
            etc,
        };
    } finally {
        rmSync(dir, { recursive: true, force: true });
    }
}

const render = (host: Host, what: string) => onHost(host, { args: ["--render", what] });
/** The ufw part of the firewall module, as firewall_apply runs it. */
const converge = (host: Host) => onHost(host, { source: 'load_settings quiet; load_other_stacks; converge_ufw_rules "$(render_ufw_rules)"' });
const lines = (text: string) => text.trimEnd().split("\n");
const allowRules = (text: string) => lines(text).filter((l) => l.includes("--ctorigdstport"));

const SSH = "ufw allow from 203.0.113.7 to any port 22 proto tcp comment 'onebox ssh'";
const WEB = ["ufw allow 80/tcp comment 'onebox public'", "ufw allow 443/tcp comment 'onebox public'"];
const PG = [
    "ufw allow from 198.51.100.0/24 to any port 5433 proto tcp comment 'onebox restricted'",
    "ufw allow from 2001:db8::/48 to any port 5433 proto tcp comment 'onebox restricted'",
];

void describe("H4/H14 two stacks on one host: the firewall is the union of their ports", () => {
    void it("the ufw rules are this stack's and the other stack's", () => {
        const r = render({ own: SHOP, others: [{ settings: DB }] }, "ufw-rules");
        assert.equal(r.status, 0, r.stderr);
        assert.deepEqual(lines(r.stdout), [SSH, ...WEB, ...PG]);
        assert.equal(r.stderr, "", "two agreeing stacks: no warning");
    });

    void it("a run adds the rules of both stacks that ufw lacks", () => {
        const o = converge({ own: DB, others: [{ settings: SHOP }], added: [SSH] });
        assert.equal(o.status, 0, o.stderr);
        assert.deepEqual(o.ufw, [
            "allow 80/tcp comment onebox public",
            "allow 443/tcp comment onebox public",
            "allow from 198.51.100.0/24 to any port 5433 proto tcp comment onebox restricted",
            "allow from 2001:db8::/48 to any port 5433 proto tcp comment onebox restricted",
        ]);
        assert.match(o.stdout, /the firewall also keeps the ports of the other stacks on this host: shop-production \(.*\/shop-production\/bootstrap\.env\)/);
    });

    void it("a rule only the other stack wants stays; an onebox rule no stack wants is deleted; a foreign rule stays", () => {
        const stale = "ufw allow 8080/tcp comment 'onebox public'";
        const admin = "ufw allow 9100/tcp";
        const o = converge({ own: SHOP, others: [{ settings: DB }], added: [SSH, ...WEB, ...PG, stale, admin] });
        assert.equal(o.status, 0, o.stderr);
        assert.deepEqual(o.ufw, ["delete allow 8080/tcp"], "only the rule no stack wants is deleted");
        assert.match(o.stdout, /removed stale rule \(no stack on this host wants it\): ufw allow 8080\/tcp/);
        assert.match(o.stderr, /ufw rule not managed by onebox left in place: ufw allow 9100\/tcp/);
    });

    void it("a stack that drops a port closes it when no other stack wants it", () => {
        const o = converge({ own: { ...SHOP, ONEBOX_PUBLIC_TCP_PORTS: "443" }, others: [{ settings: DB }], added: [SSH, ...WEB, ...PG] });
        assert.equal(o.status, 0, o.stderr);
        assert.deepEqual(o.ufw, ["delete allow 80/tcp"]);
    });

    void it("the DOCKER-USER block of each family lets in both stacks' ports", () => {
        const host = { own: SHOP, others: [{ settings: DB }, { settings: { ...DB, ONEBOX_STACK: "crm-production", ONEBOX_RESTRICTED_PORTS: "5434:192.0.2.0/24" } }] };
        const v4 = render(host, "after.rules");
        assert.equal(v4.status, 0, v4.stderr);
        assert.deepEqual(allowRules(v4.stdout), [
            "-A DOCKER-USER -p tcp -m conntrack --ctorigdstport 80 --ctdir ORIGINAL -j RETURN",
            "-A DOCKER-USER -p tcp -m conntrack --ctorigdstport 443 --ctdir ORIGINAL -j RETURN",
            // This stack's, then the other stacks' in the order of their directories' names.
            "-A DOCKER-USER -s 192.0.2.0/24 -p tcp -m conntrack --ctorigdstport 5434 --ctdir ORIGINAL -j RETURN",
            "-A DOCKER-USER -s 198.51.100.0/24 -p tcp -m conntrack --ctorigdstport 5433 --ctdir ORIGINAL -j RETURN",
        ]);
        const v6 = render(host, "after6.rules");
        assert.deepEqual(allowRules(v6.stdout), [
            "-A DOCKER-USER -p tcp -m conntrack --ctorigdstport 80 --ctdir ORIGINAL -j RETURN",
            "-A DOCKER-USER -p tcp -m conntrack --ctorigdstport 443 --ctdir ORIGINAL -j RETURN",
            "-A DOCKER-USER -s 2001:db8::/48 -p tcp -m conntrack --ctorigdstport 5433 --ctdir ORIGINAL -j RETURN",
        ]);
    });

    void it("H4 --check verifies the union: the other stack's rules are expected, not extra", () => {
        const o = onHost({ own: SHOP, others: [{ settings: DB }], added: [SSH, ...WEB, ...PG] }, { source: "load_settings quiet; load_other_stacks quiet; firewall_check" });
        assert.match(o.stdout, /^PASS H4 ufw allows SSH 22\/tcp from 203\.0\.113\.7\/32, public \[80 443\], restricted \[5433:198\.51\.100\.0\/24 5433:2001:db8::\/48\] \(with the ports of the other stacks: ledger-db /m);
        assert.match(o.stdout, /^PASS H4 ufw allows nothing else$/m);
        const missing = onHost({ own: SHOP, others: [{ settings: DB }], added: [SSH, ...WEB] }, { source: "load_settings quiet; load_other_stacks quiet; firewall_check" });
        assert.match(missing.stdout, /^FAIL H4 ufw allows SSH .* - missing: ufw allow from 198\.51\.100\.0\/24 to any port 5433/m, "the check can fail");
    });

    void it("no settings directory at all (settings from the environment): this stack's rules, no error", () => {
        const r = spawnSync("bash", [shipped.path, "--render", "ufw-rules"], {
            encoding: "utf8",
            env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ONEBOX_ETC_DIR: join(tmpdir(), `onebox-stacks-none-${process.pid}`), ...SHOP },
        });
        assert.equal(r.status, 0, r.stderr);
        assert.deepEqual(lines(r.stdout), [SSH, ...WEB]);
        assert.doesNotMatch(r.stderr, /ERROR/);
    });

    void it("the single-stack file of a host set up before stack directories counts as another stack", () => {
        const r = render({ own: SHOP, others: [{ settings: DB, dir: "" }] }, "ufw-rules");
        assert.equal(r.status, 0, r.stderr);
        assert.deepEqual(lines(r.stdout), [SSH, ...WEB, ...PG]);
    });

    void it("a file with this stack's own name (its older single-stack file) is not another stack", () => {
        const r = converge({ own: SHOP, others: [{ settings: { ...SHOP, ONEBOX_PUBLIC_TCP_PORTS: "80 443 8443" }, dir: "" }], added: [SSH, ...WEB, "ufw allow 8443/tcp comment 'onebox public'"] });
        assert.equal(r.status, 0, r.stderr);
        assert.deepEqual(r.ufw, ["delete allow 8443/tcp"]);
        assert.match(r.stdout, /holds this stack's \(shop-production\) older settings/);
    });

    void it("host.keepPublishedPorts: the union of the lists, all when any stack says all", () => {
        const lists = render({ own: { ...SHOP, ONEBOX_KEEP_PUBLISHED_PORTS: "8080" }, others: [{ settings: { ...DB, ONEBOX_KEEP_PUBLISHED_PORTS: "9000 8080" } }] }, "after.rules");
        assert.equal(lists.status, 0, lists.stderr);
        const kept = (p: number) => [`-A DOCKER-USER -p tcp -m conntrack --ctorigdstport ${p} --ctdir ORIGINAL -j RETURN`, `-A DOCKER-USER -p udp -m conntrack --ctorigdstport ${p} --ctdir ORIGINAL -j RETURN`];
        assert.deepEqual(allowRules(lists.stdout).filter((l) => /8080|9000/.test(l)), [...kept(8080), ...kept(9000)]);
        const all = render({ own: SHOP, others: [{ settings: { ...DB, ONEBOX_KEEP_PUBLISHED_PORTS: "all" } }] }, "after.rules");
        const l = lines(all.stdout);
        const deny = l.indexOf("-A DOCKER-USER -p tcp -m conntrack --ctorigdstport 5433 --ctdir ORIGINAL -j onebox-docker-deny");
        const keepAll = l.indexOf("-A DOCKER-USER -j RETURN");
        assert.ok(deny > 0 && deny < keepAll && keepAll < l.indexOf("-A DOCKER-USER -o docker0 -j onebox-docker-deny"), all.stdout);
    });
});

void describe("H4/H8 a port one stack restricts stays restricted", () => {
    void it("public in one stack, restricted in another: open to the listed networks only, with a warning naming both stacks", () => {
        const lockdown = { ...SHOP, ONEBOX_STACK: "blog-production", ONEBOX_PUBLIC_TCP_PORTS: "", ONEBOX_RESTRICTED_PORTS: "443:173.245.48.0/20" };
        const r = render({ own: SHOP, others: [{ settings: lockdown }] }, "ufw-rules");
        assert.equal(r.status, 0, r.stderr);
        assert.deepEqual(lines(r.stdout), [SSH, WEB[0], "ufw allow from 173.245.48.0/20 to any port 443 proto tcp comment 'onebox restricted'"]);
        assert.match(r.stderr, /port 443: shop-production \(\S+\/shop-production\/bootstrap\.env\) opens it to everyone \(ONEBOX_PUBLIC_TCP_PORTS\), but blog-production \(\S+\/blog-production\/bootstrap\.env\) restricts it to listed networks \(ONEBOX_RESTRICTED_PORTS\); it stays restricted/);
        const block = render({ own: SHOP, others: [{ settings: lockdown }] }, "after.rules");
        assert.ok(!allowRules(block.stdout).includes("-A DOCKER-USER -p tcp -m conntrack --ctorigdstport 443 --ctdir ORIGINAL -j RETURN"), block.stdout);
    });

    void it("kept open by one stack, restricted by another: stays restricted, with a warning", () => {
        const r = render({ own: { ...SHOP, ONEBOX_KEEP_PUBLISHED_PORTS: "5433" }, others: [{ settings: DB }] }, "after.rules");
        assert.equal(r.status, 0, r.stderr);
        assert.deepEqual(allowRules(r.stdout).filter((l) => l.includes("5433")), ["-A DOCKER-USER -s 198.51.100.0/24 -p tcp -m conntrack --ctorigdstport 5433 --ctdir ORIGINAL -j RETURN"]);
        assert.match(r.stderr, /port 5433: shop-production .* keeps it open to everyone \(ONEBOX_KEEP_PUBLISHED_PORTS\), but ledger-db .* restricts it/);
    });
});

void describe("H14 another stack's file is read, never trusted blindly", () => {
    const skipped: [string, Other, RegExp][] = [
        ["writable by others", { settings: DB, mode: 0o666 }, /writable by group or others \(mode 666/],
        ["writable by its group", { settings: DB, mode: 0o620 }, /writable by group or others \(mode 620/],
        ["a port that is not a port", { settings: { ...DB, ONEBOX_PUBLIC_TCP_PORTS: "80x" } }, /ONEBOX_PUBLIC_TCP_PORTS: '80x' is not a port/],
        ["this host's SSH port opened to everyone", { settings: { ...DB, ONEBOX_PUBLIC_TCP_PORTS: "22" } }, /ONEBOX_PUBLIC_TCP_PORTS contains the SSH port 22/],
        ["a restricted pair open to everyone", { settings: { ...DB, ONEBOX_RESTRICTED_PORTS: "5433:0.0.0.0/0" } }, /'5433:0\.0\.0\.0\/0' opens the port to everyone/],
        ["a malformed CIDR", { settings: { ...DB, ONEBOX_RESTRICTED_PORTS: "5433:198.51.100.0/33" } }, /'5433:198\.51\.100\.0\/33' must be port:cidr/],
        ["a line that is not KEY='value'", { settings: DB, text: `${settingsFile(DB)}export PATH=/tmp\n` }, /line 8 is not KEY='value'/],
        ["a value that is not one quoted string", { settings: DB, text: "ONEBOX_PUBLIC_TCP_PORTS=$(touch /tmp/onebox-stacks-pwned)\n" }, /the value of ONEBOX_PUBLIC_TCP_PORTS is not one single-quoted string/],
    ];
    for (const [name, other, reason] of skipped) {
        void it(`skips another stack's file (${name}), naming it; its ports are not opened`, () => {
            const r = render({ own: SHOP, others: [other] }, "ufw-rules");
            assert.equal(r.status, 0, r.stderr);
            assert.deepEqual(lines(r.stdout), [SSH, ...WEB], "only this stack's rules");
            assert.match(r.stderr, /skipped the settings of another stack in \S+\/ledger-db\/bootstrap\.env: /);
            assert.match(r.stderr, reason);
        });
    }

    void it("never runs what another stack's file holds (parsed, not sourced)", () => {
        const marker = join(tmpdir(), `onebox-stacks-ran-${process.pid}`);
        rmSync(marker, { force: true });
        const text = `ONEBOX_STACK='ledger-db'\nONEBOX_PUBLIC_TCP_PORTS='8080'\ntouch ${marker}\n`;
        const r = render({ own: SHOP, others: [{ settings: DB, text }] }, "ufw-rules");
        assert.equal(r.status, 0, r.stderr);
        assert.equal(existsSync(marker), false);
        assert.match(r.stderr, /line 3 is not KEY='value'/);
        assert.ok(!r.stdout.includes("8080"));
    });

    void it("reads a plain unquoted value and ignores keys it does not use", () => {
        const text = "# hand-written\nONEBOX_STACK=ledger-db\nONEBOX_RESTRICTED_PORTS='5433:198.51.100.0/24'\nSOMETHING_ELSE='$(id)'\n\n";
        const r = render({ own: SHOP, others: [{ settings: DB, text }] }, "ufw-rules");
        assert.equal(r.status, 0, r.stderr);
        assert.deepEqual(lines(r.stdout), [SSH, ...WEB, PG[0]]);
    });
});

void describe("H14 host-wide settings that differ between stacks are warned about", () => {
    const cases: [string, Settings, RegExp][] = [
        ["the SSH port", { ONEBOX_SSH_PORT: "2222" }, /ONEBOX_SSH_PORT differs between stacks on this host: '2222' in \S+\/ledger-db\/bootstrap\.env \(ledger-db\), '22' in \S+\/shop-production\/bootstrap\.env \(shop-production\); it is host-wide, so the last stack to run the bootstrap sets it/],
        ["the SSH CIDRs", { ONEBOX_SSH_ALLOWED_CIDRS: "198.51.100.9/32" }, /ONEBOX_SSH_ALLOWED_CIDRS differs between stacks on this host: '198\.51\.100\.9\/32' in \S+\/ledger-db\/bootstrap\.env/],
        ["root login", { ONEBOX_ADMIN_CAN_ROOT: "true" }, /ONEBOX_ADMIN_CAN_ROOT differs .*'true' in \S+\/ledger-db\/bootstrap\.env .*'false' in/],
        ["the swap size", { ONEBOX_SWAP_MB: "2048" }, /ONEBOX_SWAP_MB differs .*'2048' in \S+\/ledger-db/],
        ["the data path", { ONEBOX_DATA_PATH: "/mnt/other" }, /ONEBOX_DATA_PATH differs .*'\/mnt\/other' in \S+\/ledger-db/],
        ["the data device", { ONEBOX_DATA_DEVICE: "/dev/sdb" }, /ONEBOX_DATA_DEVICE differs .*'\/dev\/sdb' in \S+\/ledger-db/],
        ["the Docker source", { ONEBOX_DOCKER_SOURCE: "docker" }, /ONEBOX_DOCKER_SOURCE differs .*'docker' in \S+\/ledger-db/],
        ["Docker restarts", { ONEBOX_ALLOW_DOCKER_RESTART: "true" }, /ONEBOX_ALLOW_DOCKER_RESTART differs .*'true' in \S+\/ledger-db/],
    ];
    for (const [name, change, message] of cases) {
        void it(`${name}: a warning naming the setting, the other file and both values; the run goes on`, () => {
            const r = render({ own: SHOP, others: [{ settings: { ...DB, ...change } }] }, "ufw-rules");
            assert.equal(r.status, 0, r.stderr);
            assert.match(r.stderr, message);
            assert.deepEqual(lines(r.stdout), [SSH, ...WEB, ...PG], "the other stack's ports still count");
        });
    }

    void it("equal values written differently do not warn (CIDR order, a trailing slash)", () => {
        const own = { ...SHOP, ONEBOX_SSH_ALLOWED_CIDRS: "203.0.113.7/32 198.51.100.0/24", ONEBOX_DATA_PATH: "/mnt/data" };
        const r = render({ own, others: [{ settings: { ...DB, ONEBOX_SSH_ALLOWED_CIDRS: "198.51.100.0/24  203.0.113.7/32", ONEBOX_DATA_PATH: "/mnt/data/" } }] }, "ufw-rules");
        assert.equal(r.status, 0, r.stderr);
        assert.equal(r.stderr, "");
    });
});

void describe("the host module creates only the shared parents of the layout", () => {
    void it("/etc/onebox, /srv/onebox, /var/lib/onebox, /var/log/onebox; no per-stack leaf of the single-stack layout", () => {
        const r = spawnSync("bash", ["-c", 'source "$0"; printf "%s\\n" "${LAYOUT_DIRS[@]}"', LIB], { encoding: "utf8" });
        assert.equal(r.status, 0, r.stderr);
        assert.deepEqual(lines(r.stdout), ["/etc/onebox:0700", "/srv/onebox:0755", "/var/lib/onebox:0755", "/var/log/onebox:0755"]);
    });
});
