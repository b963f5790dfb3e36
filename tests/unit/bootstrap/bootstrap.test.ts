/**
 * The host bootstrap (scripts/host/bootstrap): shell hygiene, the exact hardening each
 * shipped file carries, and the files the script renders from the settings. Runs the
 * script as the provisioning step ships it (bootstrap.sh with its modules inlined),
 * without root or Docker: its `--render` and `--select-data-disk` modes print
 * what it would install. Property ids (H3...) refer to SECURITY.md; the real-host run
 * (`bootstrap.sh --check` on a server) checks the same properties on a live system.
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BAD_CONFIGS } from "../../helpers/bad-configs";
import { digitalOceanRaw } from "../../helpers/fixtures";
import { BOOTSTRAP_SOURCE_DIR as DIR, shippedBootstrap } from "../../helpers/bootstrap-script";
import { ConfigError, validateConfig } from "../../../components/config/load";
import { INTERNAL_BRIDGE_PREFIX } from "../../../components/provisioning/render/compose";

const shippedDir = shippedBootstrap();
after(() => rmSync(shippedDir.dir, { recursive: true, force: true }));
const SCRIPT = shippedDir.path;
const script = shippedDir.script;

type Settings = Record<string, string>;

/** Settings that pass validation; cases override single keys. */
const BASE: Settings = {
    ONEBOX_DEPLOY_USER: "deploy",
    ONEBOX_SSH_ALLOWED_CIDRS: "203.0.113.7/32",
    ONEBOX_PUBLIC_TCP_PORTS: "80 443",
};

function shellQuote(value: string): string {
    return `'${value.replace(/'/g, `'\\''`)}'`;
}

interface Run {
    status: number | null;
    stdout: string;
    stderr: string;
}

/** Runs bootstrap.sh with ARGS and a settings file holding SETTINGS (nothing else from this environment). */
function run(args: string[], settings: Settings = BASE, input?: string, fileMode = 0o600): Run {
    const dir = mkdtempSync(join(tmpdir(), "onebox-bootstrap-test-"));
    try {
        const envFile = join(dir, "bootstrap.env");
        const body = Object.entries(settings)
            .map(([k, v]) => `${k}=${shellQuote(v)}\n`)
            .join("");
        writeFileSync(envFile, body);
        chmodSync(envFile, fileMode);
        const r = spawnSync("bash", [SCRIPT, ...args], {
            // ONEBOX_ETC_DIR: no other stack's settings (tests/unit/bootstrap/stacks.test.ts has them).
            env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ONEBOX_BOOTSTRAP_ENV: envFile, ONEBOX_ETC_DIR: dir },
            input,
            encoding: "utf8",
        });
        return { status: r.status, stdout: r.stdout, stderr: r.stderr };
    } finally {
        rmSync(dir, { recursive: true, force: true });
    }
}

function render(what: string, settings: Settings = BASE): string {
    const r = run(["--render", what], settings);
    assert.equal(r.status, 0, `--render ${what} failed: ${r.stderr}`);
    return r.stdout;
}

/** Lines that are neither blank nor comments (# or //; apt's `#clear` is a directive). */
function directives(text: string): string[] {
    return text.split("\n").filter((l) => l.trim() !== "" && !/^\s*(#(?!clear )|\/\/)/.test(l));
}

/** Value of a `readonly NAME="..."` constant in the script. */
function constant(name: string): string {
    const value = new RegExp(`^readonly ${name}="(.*)"$`, "m").exec(script)?.[1];
    assert.ok(value, `readonly ${name} not found in bootstrap.sh`);
    return value;
}

const basename = (path: string) => path.slice(path.lastIndexOf("/") + 1);

const shipped = (name: string) => readFileSync(join(DIR, name), "utf8");

void describe("bootstrap.sh shell hygiene (STYLE: shell that runs on the host)", () => {
    void it("starts with the env bash shebang and set -euo pipefail, ends with main \"$@\"", () => {
        const lines = script.trimEnd().split("\n");
        assert.equal(lines[0], "#!/usr/bin/env bash");
        assert.ok(lines.includes("set -euo pipefail"));
        assert.equal(lines[lines.length - 1], 'main "$@"');
        assert.ok(script.endsWith('main "$@"\n'), "exactly one newline after main");
    });

    void it("parses (bash -n)", () => {
        const r = spawnSync("bash", ["-n", SCRIPT], { encoding: "utf8" });
        assert.equal(r.status, 0, r.stderr);
    });

    void it("is ShellCheck clean (shellcheck -x)", (t) => {
        const r = spawnSync("shellcheck", ["-x", SCRIPT], { encoding: "utf8", cwd: shippedDir.dir });
        if (r.error && (r.error as NodeJS.ErrnoException).code === "ENOENT" && !process.env.CI) {
            t.skip("shellcheck is not installed (required in CI)");
            return;
        }
        assert.equal(r.status, 0, r.stdout + r.stderr);
    });

    void it("never pipes a script into a shell and never uses curl | sh (H2)", () => {
        assert.doesNotMatch(script, /\|\s*(sudo\s+)?(ba)?sh\b/);
    });

    void it("waits for the dpkg lock on every apt-get call and for cloud-init (H1)", () => {
        const aptCalls = script.split("\n").filter((l) => /^\s*apt-get\b/.test(l));
        assert.deepEqual(aptCalls, ['  apt-get -q -y -o "DPkg::Lock::Timeout=${APT_LOCK_TIMEOUT}" \\']);
        assert.match(script, /^readonly APT_LOCK_TIMEOUT=300$/m);
        assert.match(script, /timeout "\$\{CLOUD_INIT_TIMEOUT\}" cloud-init status --wait/);
        assert.match(script, /export DEBIAN_FRONTEND=noninteractive/);
    });

    void it("ships exactly the files it lists (the provisioning step copies the whole directory)", () => {
        const listed = /readonly SHIPPED_FILES=\(\n([^)]*)\)/.exec(script)?.[1].split(/\s+/).filter(Boolean) ?? [];
        // (lib/ and modules/ are inlined into bootstrap.sh, not shipped.)
        const present = readdirSync(DIR, { withFileTypes: true }).filter((f) => f.isFile() && f.name !== "bootstrap.sh").map((f) => f.name);
        assert.deepEqual([...listed].sort(), [...present].sort());
    });
});

void describe("H3 sshd hardening drop-in", () => {
    void it("sshd-hardening.conf carries exactly the hardening directives", () => {
        assert.deepEqual(directives(shipped("sshd-hardening.conf")), [
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitEmptyPasswords no",
            "PermitRootLogin @PERMIT_ROOT_LOGIN@",
            "MaxAuthTries 3",
            "LoginGraceTime 30",
            "X11Forwarding no",
            "AllowAgentForwarding no",
            "AllowTcpForwarding no",
            "ClientAliveInterval 300",
        ]);
    });

    void it("H3 maxauthtries <= 4", () => {
        const n = Number(/^MaxAuthTries (\d+)$/m.exec(shipped("sshd-hardening.conf"))?.[1]);
        assert.ok(n >= 1 && n <= 4, `MaxAuthTries ${n}`);
    });

    void it("is installed under a name that sorts before cloud-init's 50-cloud-init.conf (first value wins)", () => {
        const target = constant("SSHD_DROPIN");
        assert.equal(target, "/etc/ssh/sshd_config.d/00-onebox-hardening.conf");
        // Drop-ins cloud images ship (Ubuntu's 50-cloud-init.conf and 60-cloudimg-settings.conf).
        const names = ["50-cloud-init.conf", "60-cloudimg-settings.conf", basename(target)];
        assert.equal([...names].sort()[0], basename(target));
    });

    const cases: [string, Settings, string][] = [
        ["deploy user (default): PermitRootLogin no", { ...BASE }, "no"],
        ["root as deploy user defaults to prohibit-password", { ...BASE, ONEBOX_DEPLOY_USER: "root" }, "prohibit-password"],
        ["explicit ONEBOX_ADMIN_CAN_ROOT=true", { ...BASE, ONEBOX_ADMIN_CAN_ROOT: "true" }, "prohibit-password"],
        ["explicit ONEBOX_ADMIN_CAN_ROOT=false", { ...BASE, ONEBOX_ADMIN_CAN_ROOT: "false" }, "no"],
    ];
    for (const [name, settings, permit] of cases) {
        void it(`H3 renders PermitRootLogin ${permit}: ${name}`, () => {
            const lines = directives(render("sshd", settings));
            assert.deepEqual(
                lines.filter((l) => l.startsWith("PermitRootLogin")),
                [`PermitRootLogin ${permit}`],
            );
            assert.ok(lines.includes("PasswordAuthentication no"));
            assert.doesNotMatch(lines.join("\n"), /@[A-Z_]+@/);
        });
    }
});

void describe("H7 Docker daemon.json", () => {
    void it("has exactly log rotation, live-restore, no-new-privileges and userland-proxy false", () => {
        assert.deepEqual(JSON.parse(shipped("daemon.json")), {
            "log-driver": "json-file",
            "log-opts": { "max-size": "10m", "max-file": "3" },
            "live-restore": true,
            "no-new-privileges": true,
            "userland-proxy": false,
        });
    });

    void it("is installed as /etc/docker/daemon.json and docker restarts only when it changed", () => {
        assert.equal(constant("DAEMON_JSON"), "/etc/docker/daemon.json");
        // (tests/unit/bootstrap/guests.test.ts runs the decisions: write, reload, restart, refuse.)
        const fn = /apply_daemon_settings\(\) \{([\s\S]*?)\n\}/.exec(script)?.[1] ?? "";
        const restart = fn.indexOf("systemctl restart docker.service");
        const unchanged = fn.indexOf("if ((${#keys[@]} == 0)); then");
        assert.ok(unchanged > 0 && restart > unchanged, "restart comes after the unchanged early return");
    });

    void it("does not add the deploy user to the docker group (root-equivalent)", () => {
        assert.doesNotMatch(script, /usermod\s+-aG?\s+docker|gpasswd\s+-a\b/);
    });
});

void describe("H5 fail2ban sshd jail", () => {
    void it("jail.local carries exactly the jail settings", () => {
        assert.deepEqual(directives(shipped("jail.local")), [
            "[sshd]",
            "enabled = true",
            "backend = systemd",
            "journalmatch = _SYSTEMD_UNIT=ssh.service + _SYSTEMD_UNIT=sshd.service + _COMM=sshd + _COMM=sshd-session",
            "port = @SSH_PORT@",
            "maxretry = 5",
            "findtime = 10m",
            "bantime = 1h",
            "banaction = iptables-multiport",
        ]);
    });

    void it("H5 renders the jail for the configured SSH port", () => {
        assert.ok(directives(render("jail")).includes("port = 22"));
        assert.ok(directives(render("jail", { ...BASE, ONEBOX_SSH_PORT: "2222" })).includes("port = 2222"));
    });

    void it("installs the jail where it overrides the distribution defaults", () => {
        assert.equal(constant("JAIL_FILE"), "/etc/fail2ban/jail.d/onebox.local");
    });
});

void describe("H4 ufw and the DOCKER-USER chain", () => {
    void it("after.rules.snippet carries exactly these rules", () => {
        assert.deepEqual(directives(shipped("after.rules.snippet")), [
            "*filter",
            ":DOCKER-USER - [0:0]",
            ":onebox-docker-deny - [0:0]",
            ":onebox-internal-input - [0:0]",
            "-A DOCKER-USER -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
            "-A DOCKER-USER -i docker0 -j RETURN",
            "-A DOCKER-USER -i br-+ -j RETURN",
            "-A DOCKER-USER -i obi-+ -j RETURN",
            "@ONEBOX_ALLOW_RULES@",
            "-A DOCKER-USER -o docker0 -j onebox-docker-deny",
            "-A DOCKER-USER -o br-+ -j onebox-docker-deny",
            "-A DOCKER-USER -o obi-+ -j onebox-docker-deny",
            "-A DOCKER-USER -j RETURN",
            '-A onebox-docker-deny -m limit --limit 3/min --limit-burst 10 -j LOG --log-prefix "[ONEBOX DOCKER BLOCK] "',
            "-A onebox-docker-deny -j DROP",
            // H13: new connections from an internal network's bridge to the host itself are dropped.
            "-I @ONEBOX_UFW_BEFORE_INPUT@ 1 -i obi-+ -j onebox-internal-input",
            "-A onebox-internal-input -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
            '-A onebox-internal-input -m limit --limit 3/min --limit-burst 10 -j LOG --log-prefix "[ONEBOX INTERNAL BLOCK] "',
            "-A onebox-internal-input -j DROP",
            "COMMIT",
        ]);
        const text = shipped("after.rules.snippet");
        assert.ok(text.startsWith("# BEGIN ONEBOX DOCKER-USER\n"));
        assert.ok(text.endsWith("# END ONEBOX DOCKER-USER\n"));
    });

    const allowRules = (text: string) => directives(text).filter((l) => l.includes("--ctorigdstport"));
    const chronos: Settings = {
        ...BASE,
        ONEBOX_PUBLIC_TCP_PORTS: "80 443",
        ONEBOX_RESTRICTED_PORTS: "5432:198.51.100.0/24 5432:2001:db8::/32 5432:203.0.113.7",
    };

    void it("H4 DOCKER-USER (IPv4) allows public ports and IPv4 restricted pairs by original destination port", () => {
        assert.deepEqual(allowRules(render("after.rules", chronos)), [
            "-A DOCKER-USER -p tcp -m conntrack --ctorigdstport 80 --ctdir ORIGINAL -j RETURN",
            "-A DOCKER-USER -p tcp -m conntrack --ctorigdstport 443 --ctdir ORIGINAL -j RETURN",
            "-A DOCKER-USER -s 198.51.100.0/24 -p tcp -m conntrack --ctorigdstport 5432 --ctdir ORIGINAL -j RETURN",
            "-A DOCKER-USER -s 203.0.113.7 -p tcp -m conntrack --ctorigdstport 5432 --ctdir ORIGINAL -j RETURN",
        ]);
    });

    void it("H4 DOCKER-USER (IPv6) gets the IPv6 restricted pairs only", () => {
        assert.deepEqual(allowRules(render("after6.rules", chronos)), [
            "-A DOCKER-USER -p tcp -m conntrack --ctorigdstport 80 --ctdir ORIGINAL -j RETURN",
            "-A DOCKER-USER -p tcp -m conntrack --ctorigdstport 443 --ctdir ORIGINAL -j RETURN",
            "-A DOCKER-USER -s 2001:db8::/32 -p tcp -m conntrack --ctorigdstport 5432 --ctdir ORIGINAL -j RETURN",
        ]);
    });

    void it("H4 origin lockdown: DOCKER-USER lets 80/443 through from Cloudflare's ranges only", () => {
        const lockdown: Settings = { ...BASE, ONEBOX_PUBLIC_TCP_PORTS: "", ONEBOX_RESTRICTED_PORTS: "80:173.245.48.0/20 80:2400:cb00::/32 443:173.245.48.0/20 443:2400:cb00::/32" };
        assert.deepEqual(allowRules(render("after.rules", lockdown)), [
            "-A DOCKER-USER -s 173.245.48.0/20 -p tcp -m conntrack --ctorigdstport 80 --ctdir ORIGINAL -j RETURN",
            "-A DOCKER-USER -s 173.245.48.0/20 -p tcp -m conntrack --ctorigdstport 443 --ctdir ORIGINAL -j RETURN",
        ]);
        assert.deepEqual(allowRules(render("after6.rules", lockdown)), [
            "-A DOCKER-USER -s 2400:cb00::/32 -p tcp -m conntrack --ctorigdstport 80 --ctdir ORIGINAL -j RETURN",
            "-A DOCKER-USER -s 2400:cb00::/32 -p tcp -m conntrack --ctorigdstport 443 --ctdir ORIGINAL -j RETURN",
        ]);
        assert.deepEqual(
            render("ufw-rules", lockdown).trim().split("\n").filter((l) => !l.includes("'onebox ssh'")),
            [
                "ufw allow from 173.245.48.0/20 to any port 80 proto tcp comment 'onebox restricted'",
                "ufw allow from 2400:cb00::/32 to any port 80 proto tcp comment 'onebox restricted'",
                "ufw allow from 173.245.48.0/20 to any port 443 proto tcp comment 'onebox restricted'",
                "ufw allow from 2400:cb00::/32 to any port 443 proto tcp comment 'onebox restricted'",
            ],
        );
    });

    void it("H13 the internal bridges' host rule goes into ufw's before-input chain of each family", () => {
        const hook = (text: string) => directives(text).filter((l) => l.startsWith("-I "));
        assert.deepEqual(hook(render("after.rules", BASE)), ["-I ufw-before-input 1 -i obi-+ -j onebox-internal-input"]);
        assert.deepEqual(hook(render("after6.rules", BASE)), ["-I ufw6-before-input 1 -i obi-+ -j onebox-internal-input"]);
    });

    void it("H13 the bridge prefix the firewall drops is the one compose names internal networks with", () => {
        const rules = directives(shipped("after.rules.snippet"));
        assert.ok(rules.includes(`-I @ONEBOX_UFW_BEFORE_INPUT@ 1 -i ${INTERNAL_BRIDGE_PREFIX}+ -j onebox-internal-input`));
        assert.ok(rules.includes(`-A DOCKER-USER -i ${INTERNAL_BRIDGE_PREFIX}+ -j RETURN`));
    });

    void it("H8 with no public or restricted port every published port is dropped", () => {
        const text = render("after.rules", { ...BASE, ONEBOX_PUBLIC_TCP_PORTS: "" });
        assert.deepEqual(allowRules(text), []);
        assert.ok(directives(text).includes("-A DOCKER-USER -o docker0 -j onebox-docker-deny"));
    });

    const ufwCases: [string, Settings, string[]][] = [
        [
            "SSH from admin CIDRs, web ports public, database restricted (ufw's normal forms)",
            {
                ...BASE,
                ONEBOX_SSH_ALLOWED_CIDRS: "203.0.113.7/32 10.1.2.3/8 2001:DB8:0:0::/48 2001:db8:0:0:0:0:0:1/128",
                ONEBOX_RESTRICTED_PORTS: "5432:198.51.100.0/24 5432:2001:0db8:0001::/48",
            },
            [
                "ufw allow from 203.0.113.7 to any port 22 proto tcp comment 'onebox ssh'",
                "ufw allow from 10.0.0.0/8 to any port 22 proto tcp comment 'onebox ssh'",
                "ufw allow from 2001:db8::/48 to any port 22 proto tcp comment 'onebox ssh'",
                "ufw allow from 2001:db8::1 to any port 22 proto tcp comment 'onebox ssh'",
                "ufw allow 80/tcp comment 'onebox public'",
                "ufw allow 443/tcp comment 'onebox public'",
                "ufw allow from 198.51.100.0/24 to any port 5432 proto tcp comment 'onebox restricted'",
                "ufw allow from 2001:db8:1::/48 to any port 5432 proto tcp comment 'onebox restricted'",
            ],
        ],
        [
            "SSH from anywhere on a custom port, duplicates collapsed",
            { ...BASE, ONEBOX_SSH_ALLOWED_CIDRS: "any", ONEBOX_SSH_PORT: "2222", ONEBOX_PUBLIC_TCP_PORTS: "443 443" },
            ["ufw allow 2222/tcp comment 'onebox ssh'", "ufw allow 443/tcp comment 'onebox public'"],
        ],
        [
            "nothing public (database-only host)",
            { ...BASE, ONEBOX_PUBLIC_TCP_PORTS: "", ONEBOX_RESTRICTED_PORTS: "5432:198.51.100.0/24" },
            [
                "ufw allow from 203.0.113.7 to any port 22 proto tcp comment 'onebox ssh'",
                "ufw allow from 198.51.100.0/24 to any port 5432 proto tcp comment 'onebox restricted'",
            ],
        ],
    ];
    for (const [name, settings, expected] of ufwCases) {
        void it(`H4 ufw allows exactly the intended ports: ${name}`, () => {
            assert.deepEqual(render("ufw-rules", settings).trimEnd().split("\n"), expected);
        });
    }
});

void describe("H6 unattended-upgrades", () => {
    void it("20auto-upgrades enables the daily run", () => {
        assert.deepEqual(directives(shipped("20auto-upgrades")), [
            'APT::Periodic::Update-Package-Lists "1";',
            'APT::Periodic::Unattended-Upgrade "1";',
        ]);
    });

    void it("52onebox-unattended-upgrades clears the distribution origins and allows security origins only", () => {
        const lines = directives(shipped("52onebox-unattended-upgrades"));
        assert.deepEqual(lines, [
            "#clear Unattended-Upgrade::Origins-Pattern;",
            "#clear Unattended-Upgrade::Allowed-Origins;",
            "Unattended-Upgrade::Origins-Pattern {",
            '        "origin=Debian,codename=${distro_codename}-security,label=Debian-Security";',
            '        "origin=Ubuntu,archive=${distro_codename}-security,label=Ubuntu";',
            '        "origin=UbuntuESMApps,archive=${distro_codename}-apps-security";',
            '        "origin=UbuntuESM,archive=${distro_codename}-infra-security";',
            "};",
            'Unattended-Upgrade::Automatic-Reboot "false";',
        ]);
        // `#clear` lines are apt directives, not comments: the filter above must keep them.
        const origins = lines.filter((l) => l.trim().startsWith('"origin='));
        assert.ok(origins.every((l) => l.includes("-security")));
    });

    void it("sorts after the distribution's 50unattended-upgrades (apt reads apt.conf.d in order)", () => {
        const target = constant("UU_ORIGINS_FILE");
        assert.equal(target, "/etc/apt/apt.conf.d/52onebox-unattended-upgrades");
        assert.deepEqual(["50unattended-upgrades", basename(target)].sort().reverse()[0], basename(target));
    });
});

void describe("kernel settings, data volume", () => {
    void it("sysctl.conf hardens without breaking Docker networking", () => {
        const settings = Object.fromEntries(
            directives(shipped("sysctl.conf")).map((l) => l.split("=").map((s) => s.trim()) as [string, string]),
        );
        assert.equal(settings["net.ipv4.ip_forward"], "1", "Docker needs forwarding");
        assert.deepEqual(settings, {
            "net.ipv4.ip_forward": "1",
            "net.ipv4.conf.all.rp_filter": "2",
            "net.ipv4.conf.default.rp_filter": "2",
            "net.ipv4.conf.all.accept_redirects": "0",
            "net.ipv4.conf.default.accept_redirects": "0",
            "net.ipv4.conf.all.secure_redirects": "0",
            "net.ipv4.conf.default.secure_redirects": "0",
            "net.ipv6.conf.all.accept_redirects": "0",
            "net.ipv6.conf.default.accept_redirects": "0",
            "net.ipv4.conf.all.send_redirects": "0",
            "net.ipv4.conf.default.send_redirects": "0",
            "net.ipv4.conf.all.accept_source_route": "0",
            "net.ipv4.conf.default.accept_source_route": "0",
            "net.ipv6.conf.all.accept_source_route": "0",
            "net.ipv6.conf.default.accept_source_route": "0",
            "net.ipv4.tcp_syncookies": "1",
            "net.ipv4.icmp_echo_ignore_broadcasts": "1",
            "net.ipv4.icmp_ignore_bogus_error_responses": "1",
            "kernel.kptr_restrict": "2",
            "kernel.dmesg_restrict": "1",
            "fs.protected_hardlinks": "1",
            "fs.protected_symlinks": "1",
            "fs.protected_fifos": "1",
            "fs.protected_regular": "2",
            "fs.suid_dumpable": "0",
            "vm.swappiness": "10",
        });
    });

    void it("docker.service waits for the data volume mount", () => {
        assert.deepEqual(directives(render("docker-requires-data", { ...BASE, ONEBOX_DATA_PATH: "/srv/data/" })), [
            "[Unit]",
            "RequiresMountsFor=/srv/data",
        ]);
    });

    void it("the fstab entry is by UUID with nofail, and a filesystem is never reformatted", () => {
        assert.match(script, /want="UUID=\$\{uuid\} \$\{path\} \$\{fstype\} defaults,nofail 0 2"/);
        const fn = /data_volume_apply\(\) \{([\s\S]*?)\n\}/.exec(script)?.[1] ?? "";
        assert.match(fn, /if \[\[ -z "\$\{fstype\}" \]\]; then[\s\S]*mkfs\.ext4/);
        assert.equal((script.match(/mkfs\./g) ?? []).length, 1, "a single mkfs call, behind the no-filesystem check");
    });

    /** `lsblk -P -p -o NAME,TYPE,FSTYPE,LABEL,MOUNTPOINT,PKNAME,RO` output; label defaults to "". */
    const lsblk = (rows: ([string, string, string, string, string, string] | [string, string, string, string, string, string, string])[]) =>
        rows
            .map(([n, t, f, m, p, ro, label = ""]) => `NAME="${n}" TYPE="${t}" FSTYPE="${f}" LABEL="${label}" MOUNTPOINT="${m}" PKNAME="${p}" RO="${ro}"`)
            .join("\n") + "\n";

    const diskCases: [string, string, string, string[]][] = [
        [
            "Lightsail Nitro: the attached disk is NVMe",
            "/dev/nvme0n1",
            lsblk([
                ["/dev/nvme0n1", "disk", "", "", "", "0"],
                ["/dev/nvme0n1p1", "part", "ext4", "/", "/dev/nvme0n1", "0"],
                ["/dev/nvme0n1p15", "part", "vfat", "/boot/efi", "/dev/nvme0n1", "0"],
                ["/dev/nvme1n1", "disk", "", "", "", "0"],
            ]),
            ["/dev/nvme1n1"],
        ],
        [
            "DigitalOcean: vda root, sda volume; loop, zram and read-only disks ignored",
            "/dev/vda",
            lsblk([
                ["/dev/loop0", "loop", "squashfs", "/snap/core", "", "1"],
                ["/dev/sda", "disk", "", "", "", "0"],
                ["/dev/sr0", "rom", "iso9660", "", "", "1"],
                ["/dev/vda", "disk", "", "", "", "0"],
                ["/dev/vda1", "part", "ext4", "/", "/dev/vda", "0"],
                ["/dev/vdb", "disk", "iso9660", "", "", "1"],
                ["/dev/zram0", "disk", "", "[SWAP]", "", "0"],
                ["/dev/xvdz", "disk", "", "", "", "1"],
            ]),
            ["/dev/sda"],
        ],
        [
            "a formatted or mounted disk is not a candidate (never reformatted)",
            "/dev/nvme0n1",
            lsblk([
                ["/dev/nvme0n1", "disk", "", "", "", "0"],
                ["/dev/nvme0n1p1", "part", "ext4", "/", "/dev/nvme0n1", "0"],
                ["/dev/nvme1n1", "disk", "ext4", "/mnt/data", "", "0"],
                ["/dev/nvme2n1", "disk", "xfs", "", "", "0"],
            ]),
            [],
        ],
        [
            "S5 replaced server: the previous server's onebox-data disk is found again, other filesystems are not",
            "/dev/nvme0n1",
            lsblk([
                ["/dev/nvme0n1", "disk", "", "", "", "0"],
                ["/dev/nvme0n1p1", "part", "ext4", "/", "/dev/nvme0n1", "0"],
                ["/dev/nvme1n1", "disk", "ext4", "", "", "0", "onebox-data"],
                ["/dev/nvme2n1", "disk", "ext4", "", "", "0", "backups"],
            ]),
            ["/dev/nvme1n1"],
        ],
        [
            "two bare disks: both reported (the script then refuses to guess)",
            "/dev/nvme0n1",
            lsblk([
                ["/dev/nvme0n1", "disk", "", "", "", "0"],
                ["/dev/nvme0n1p1", "part", "ext4", "/", "/dev/nvme0n1", "0"],
                ["/dev/nvme1n1", "disk", "", "", "", "0"],
                ["/dev/nvme2n1", "disk", "", "", "", "0"],
            ]),
            ["/dev/nvme1n1", "/dev/nvme2n1"],
        ],
    ];
    for (const [name, root, input, expected] of diskCases) {
        void it(`ONEBOX_DATA_DEVICE=auto candidates: ${name}`, () => {
            const r = run(["--select-data-disk", root], BASE, input);
            assert.equal(r.status, 0, r.stderr);
            assert.deepEqual(r.stdout.split("\n").filter(Boolean), expected);
        });
    }
});

void describe("settings: bad input gets a clear error naming the setting", () => {
    const bad: [string, Settings, RegExp][] = [
        ["malformed CIDR", { ...BASE, ONEBOX_SSH_ALLOWED_CIDRS: "203.0.113.7/33" }, /ONEBOX_SSH_ALLOWED_CIDRS: '203\.0\.113\.7\/33' is not a CIDR/],
        ["malformed IPv6", { ...BASE, ONEBOX_SSH_ALLOWED_CIDRS: "2001:db8::1::2/64" }, /ONEBOX_SSH_ALLOWED_CIDRS: '2001:db8::1::2\/64' is not a CIDR/],
        ["any mixed with CIDRs", { ...BASE, ONEBOX_SSH_ALLOWED_CIDRS: "any 203.0.113.7/32" }, /ONEBOX_SSH_ALLOWED_CIDRS: 'any' is not a CIDR/],
        ["a word that is not an address", { ...BASE, ONEBOX_SSH_ALLOWED_CIDRS: "203.0.113.7/32 $(id)" }, /ONEBOX_SSH_ALLOWED_CIDRS: '\$\(id\)' is not a CIDR/],
        ["SSH port listed as public", { ...BASE, ONEBOX_PUBLIC_TCP_PORTS: "22 443" }, /ONEBOX_PUBLIC_TCP_PORTS contains the SSH port 22/],
        ["port out of range", { ...BASE, ONEBOX_PUBLIC_TCP_PORTS: "80 65536" }, /ONEBOX_PUBLIC_TCP_PORTS: '65536' is not a port/],
        ["glob characters are not expanded", { ...BASE, ONEBOX_PUBLIC_TCP_PORTS: "*" }, /ONEBOX_PUBLIC_TCP_PORTS: '\*' is not a port/],
        ["restricted port without CIDR", { ...BASE, ONEBOX_RESTRICTED_PORTS: "5432" }, /ONEBOX_RESTRICTED_PORTS: '5432' must be port:cidr/],
        ["restricted port open to everyone", { ...BASE, ONEBOX_RESTRICTED_PORTS: "5432:0.0.0.0/0" }, /opens the port to everyone; list it in ONEBOX_PUBLIC_TCP_PORTS/],
        ["port in arithmetic that is not a number", { ...BASE, ONEBOX_SSH_PORT: "1+a[$(id)]" }, /ONEBOX_SSH_PORT='1\+a\[\$\(id\)\]' must be a port/],
        ["deploy user that is not a user name", { ...BASE, ONEBOX_DEPLOY_USER: "deploy,host=x" }, /ONEBOX_DEPLOY_USER='deploy,host=x' is not a valid user name/],
        ["data path is a system directory", { ...BASE, ONEBOX_DATA_PATH: "/var/lib" }, /ONEBOX_DATA_PATH='\/var\/lib' is a system directory/],
        ["relative data path", { ...BASE, ONEBOX_DATA_PATH: "data" }, /ONEBOX_DATA_PATH='data' must be an absolute path/],
        ["data device not under /dev", { ...BASE, ONEBOX_DATA_DEVICE: "sdb" }, /ONEBOX_DATA_DEVICE='sdb' must be empty, auto, or a \/dev path/],
        ["swap size with a unit", { ...BASE, ONEBOX_SWAP_MB: "1G" }, /ONEBOX_SWAP_MB='1G' must be a whole number/],
        ["SSH port 0", { ...BASE, ONEBOX_SSH_PORT: "0" }, /ONEBOX_SSH_PORT='0' must be a port/],
    ];
    for (const [name, settings, message] of bad) {
        void it(`rejects ${name}`, () => {
            const r = run(["--render", "ufw-rules"], settings);
            assert.equal(r.status, 2, `expected exit 2, got ${r.status}: ${r.stdout}${r.stderr}`);
            assert.match(r.stderr, message);
            assert.equal(r.stdout, "", "nothing rendered");
        });
    }

    void it("reports every problem at once", () => {
        const r = run(["--render", "sshd"], { ONEBOX_SSH_ALLOWED_CIDRS: "nope", ONEBOX_SWAP_MB: "x", ONEBOX_SSH_PORT: "y" });
        assert.equal(r.status, 2);
        assert.equal(r.stderr.split("\n").filter((l) => l.startsWith("  - ")).length, 3, r.stderr);
    });

    // The schema checks these before anything exists; the script no longer repeats them.
    const bySchema: [string, string][] = [
        ["no SSH CIDRs", "no admin CIDR"],
        ["SSH from 0.0.0.0/0 without the opt-in", "SSH open to the world without opt-in"],
        ["SSH from ::/0 without the opt-in", "SSH open to all of IPv6 without opt-in"],
        ["database open to everyone", "database open to the world"],
    ];
    for (const [what, name] of bySchema) {
        void it(`leaves to the schema: ${what} (BAD_CONFIGS "${name}")`, () => {
            const bad = BAD_CONFIGS.find((c) => c[0] === name);
            assert.ok(bad, `BAD_CONFIGS has no case "${name}"`);
            const [, change, path, message] = bad;
            const problems = (() => {
                try {
                    validateConfig(change(digitalOceanRaw()));
                } catch (e) {
                    assert.ok(e instanceof ConfigError, String(e));
                    return e.problems;
                }
                return [];
            })();
            assert.ok(problems.some((p) => p.path.startsWith(path) && message.test(p.message)), JSON.stringify(problems));
        });
    }

    void it("refuses a settings file others can write (it is sourced as root)", () => {
        const r = run(["--render", "sshd"], BASE, undefined, 0o666);
        assert.equal(r.status, 1);
        assert.match(r.stderr, /writable by group or others \(mode 666\); chmod 600/);
    });
});

void describe("own-session check before the firewall goes up (never lock out the deploy step)", () => {
    /** Calls a function of the script (everything but the final `main "$@"` line is sourced). */
    function fn(name: string, ...args: string[]): number | null {
        const r = spawnSync("bash", ["-c", 'source <(sed "\\$d" "$0"); "$@"', SCRIPT, name, ...args], { encoding: "utf8" });
        return r.status;
    }
    const cases: [string, string, boolean][] = [
        ["172.17.0.1", "172.16.0.0/12", true],
        ["172.32.0.1", "172.16.0.0/12", false],
        ["203.0.113.7", "203.0.113.7", true],
        ["203.0.113.8", "203.0.113.7/32", false],
        ["198.51.100.255", "198.51.100.0/24", true],
        ["8.8.8.8", "0.0.0.0/0", true],
    ];
    for (const [ip, cidr, inside] of cases) {
        void it(`${ip} ${inside ? "is" : "is not"} in ${cidr}`, () => {
            assert.equal(fn("ip4_in_cidr", ip, cidr), inside ? 0 : 1);
        });
    }
});
