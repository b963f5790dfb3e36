/**
 * The rendered first-boot script: exact text where it matters, ShellCheck,
 * and refusal of anything that could break out of its here-documents.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
    HEREDOC,
    HOST_KEY_PATH,
    METADATA_BLOCK_UNIT,
    renderFirstBoot,
    renderLightsailLaunchScript,
    type FirstBootInput,
} from "../../../components/hosts/first-boot";
import { ADMIN_KEY, heredoc, shellcheck } from "./support";

const PRIVATE_KEY = [
    "-----BEGIN OPENSSH PRIVATE KEY-----",
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW",
    "QyNTUxOQAAACBKsecretsecretsecretsecretsecretsecretsecretAAAA",
    "-----END OPENSSH PRIVATE KEY-----",
    "",
].join("\n");
const HOST_PUBLIC = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEpinnedHostKey\n";
const DEPLOY_PUBLIC = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDeployKey onebox-deploy";

const INPUT: FirstBootInput = {
    hostPrivateKey: PRIVATE_KEY,
    hostPublicKey: HOST_PUBLIC,
    deployUser: "deploy",
    authorizedKeys: [DEPLOY_PUBLIC, ADMIN_KEY],
    dataVolume: { device: "/dev/disk/by-id/scsi-0DO_Volume_finances-prod-data", path: "/mnt/data" },
};

const script = renderFirstBoot(INPUT);
const lines = script.split("\n");

void describe("first-boot script", () => {
    void test("is bash with strict mode, and its body runs from main \"$@\" on the last line", () => {
        assert.equal(lines[0], "#!/usr/bin/env bash");
        assert.ok(lines.includes("set -euo pipefail"));
        assert.ok(script.endsWith('\nmain "$@"\n'), "last line must be main \"$@\"");
        assert.equal(lines.filter((l) => l === 'main "$@"').length, 1);
    });

    void test("settings are rendered as readonly variables", () => {
        assert.deepEqual(
            lines.filter((l) => l.startsWith("readonly ")),
            [
                "readonly DEPLOY_USER=deploy",
                "readonly DATA_DEVICE=/dev/disk/by-id/scsi-0DO_Volume_finances-prod-data",
                "readonly DATA_PATH=/mnt/data",
                `readonly HOST_KEY=${HOST_KEY_PATH}`,
                "readonly METADATA_ADDRESS=169.254.169.254",
            ],
        );
    });

    void test("R1: installs exactly the given host private key (0600) and pinned public key, checks they match, removes other key types", () => {
        assert.equal(heredoc(script, HEREDOC.hostPrivateKey), PRIVATE_KEY);
        assert.equal(heredoc(script, HEREDOC.hostPublicKey), "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEpinnedHostKey\n");
        // The file is created 0600 before the key is written into it.
        const create = script.indexOf('install -m 0600 -o root -g root /dev/null "$HOST_KEY"');
        const write = script.indexOf(`cat >"$HOST_KEY" <<'${HEREDOC.hostPrivateKey}'`);
        assert.ok(create >= 0 && write > create, "private key file is created 0600 before it is written");
        assert.ok(script.includes('derived="$(ssh-keygen -y -f "$HOST_KEY" | cut -d\' \' -f1,2)"'));
        assert.ok(script.includes('    for type in rsa ecdsa dsa; do\n        rm -f "/etc/ssh/ssh_host_${type}_key" "/etc/ssh/ssh_host_${type}_key.pub"\n    done'));
        assert.ok(script.includes("printf 'HostKey %s\\n' \"$HOST_KEY\" >/etc/ssh/sshd_config.d/00-onebox-host-key.conf"));
        assert.ok(script.includes("    /usr/sbin/sshd -t\n"));
        assert.ok(script.includes("    systemctl try-reload-or-restart ssh.service\n"));
    });

    void test("R3: the host private key appears only inside its quoted here-document", () => {
        const body = PRIVATE_KEY.split("\n")[1];
        assert.equal(script.split(body).length - 1, 1, "the key material appears once");
        assert.ok(heredoc(script, HEREDOC.hostPrivateKey).includes(body));
        assert.ok(script.includes(`<<'${HEREDOC.hostPrivateKey}'`), "quoted delimiter: no expansion inside the key");
    });

    void test("creates the deploy user with password-less sudo checked by visudo before install", () => {
        assert.ok(script.includes('        useradd --create-home --shell /bin/bash "$DEPLOY_USER"\n'));
        assert.ok(script.includes("        usermod --password '*' \"$DEPLOY_USER\"\n"));
        const expected = [
            '    sudoers="/etc/sudoers.d/90-onebox-$DEPLOY_USER"',
            '    tmp="$(mktemp)"',
            "    printf '%s ALL=(ALL) NOPASSWD:ALL\\n' \"$DEPLOY_USER\" >\"$tmp\"",
            "    # A broken sudoers file locks everyone out of sudo: check before installing.",
            '    visudo -cf "$tmp" >/dev/null',
            '    install -m 0440 -o root -g root "$tmp" "$sudoers"',
        ].join("\n");
        assert.ok(script.includes(expected), "sudoers drop-in validated with visudo -cf before install");
    });

    void test("K1: authorized_keys holds the deploy key then the admin keys, 0600, owned by the user, in a 0700 .ssh", () => {
        assert.equal(heredoc(script, HEREDOC.authorizedKeys), `${DEPLOY_PUBLIC}\n${ADMIN_KEY}\n`);
        assert.ok(script.includes('    install -d -m 0700 -o "$DEPLOY_USER" -g "$group" "$home/.ssh"\n'));
        assert.ok(script.includes('    install -m 0600 -o "$DEPLOY_USER" -g "$group" "$tmp" "$home/.ssh/authorized_keys"\n'));
    });

    void test("blocks containers from 169.254.169.254 through a unit that docker.service pulls in", () => {
        assert.equal(
            heredoc(script, HEREDOC.unit),
            [
                "[Unit]",
                "Description=Reject container traffic to the cloud metadata service (169.254.169.254)",
                "After=docker.service",
                "PartOf=docker.service",
                "",
                "[Service]",
                "Type=oneshot",
                "RemainAfterExit=yes",
                "ExecStart=/bin/sh -c 'iptables -w -C DOCKER-USER -d 169.254.169.254/32 -j REJECT 2>/dev/null || iptables -w -I DOCKER-USER 1 -d 169.254.169.254/32 -j REJECT'",
                "",
                "[Install]",
                "WantedBy=docker.service",
                "",
            ].join("\n"),
        );
        assert.ok(script.includes(`    systemctl enable ${METADATA_BLOCK_UNIT}\n`));
        assert.ok(script.includes(`    if systemctl is-active --quiet docker.service; then\n        systemctl restart ${METADATA_BLOCK_UNIT}\n    fi\n`));
    });

    void test("records the data volume and guards the empty mount point", () => {
        assert.ok(script.includes("printf 'ONEBOX_DATA_DEVICE=%s\\nONEBOX_DATA_PATH=%s\\n' \"$DATA_DEVICE\" \"$DATA_PATH\" >/etc/onebox/data-volume.env"));
        assert.ok(script.includes('    if chattr +i "$DATA_PATH"; then\n'));
    });

    void test("main runs the steps in order: host key first, then user, keys, metadata block, data mount point", () => {
        const main = script.slice(script.indexOf("main() {"));
        const order = ["install_host_key", "create_deploy_user", "install_authorized_keys", "block_metadata_from_containers", "prepare_data_mount_point"].map((f) =>
            main.indexOf(`    ${f}\n`),
        );
        assert.ok(order.every((i) => i > 0), "every step is called from main");
        assert.deepEqual([...order].sort((a, b) => a - b), order);
    });

    void test("is ShellCheck clean (bash)", (t) => {
        const r = shellcheck(script, "bash");
        if (!r) {
            t.skip("shellcheck is not installed");
            return;
        }
        assert.equal(r.status, 0, r.output);
    });

    void test("ShellCheck is really checking: a broken script fails", (t) => {
        const r = shellcheck(script.replace('rm -f "$tmp"', "rm -f $tmp"), "bash");
        if (!r) {
            t.skip("shellcheck is not installed");
            return;
        }
        assert.notEqual(r.status, 0);
    });
});

void describe("Lightsail launch script", () => {
    const launch = renderLightsailLaunchScript(INPUT);

    void test("hands the exact bash script to bash on stdin through a quoted here-document", () => {
        assert.ok(launch.startsWith("#!/bin/sh\n"));
        assert.ok(launch.includes(`\nbash -s <<'${HEREDOC.script}'\n`));
        assert.equal(heredoc(launch, HEREDOC.script), script);
        assert.ok(launch.endsWith(`\n${HEREDOC.script}\n`));
    });

    void test("is ShellCheck clean (sh)", (t) => {
        const r = shellcheck(launch, "sh");
        if (!r) {
            t.skip("shellcheck is not installed");
            return;
        }
        assert.equal(r.status, 0, r.output);
    });
});

void describe("refuses input that could escape the script", () => {
    const cases: { name: string; input: Partial<FirstBootInput>; error: RegExp }[] = [
        { name: "a user name with shell syntax", input: { deployUser: "deploy;reboot" }, error: /user name/ },
        { name: "a private key with a line equal to a delimiter", input: { hostPrivateKey: PRIVATE_KEY.replace("-----END", `${HEREDOC.hostPrivateKey}\n-----END`) }, error: /delimiter/ },
        { name: "a private key that is not an OpenSSH private key", input: { hostPrivateKey: "-----BEGIN RSA PRIVATE KEY-----\nx\n-----END RSA PRIVATE KEY-----\n" }, error: /OpenSSH private key/ },
        { name: "an authorized key spanning two lines", input: { authorizedKeys: [`${DEPLOY_PUBLIC}\n${HEREDOC.authorizedKeys}\nrm -rf /`] }, error: /single line/ },
        { name: "no authorized key", input: { authorizedKeys: [] }, error: /at least one/ },
        { name: "a host public key that is not a key", input: { hostPublicKey: "$(reboot)" }, error: /OpenSSH public key/ },
        { name: "a data path with spaces", input: { dataVolume: { device: "/dev/sdb", path: "/mnt/my data" } }, error: /data path/ },
        { name: "a data device with a quote", input: { dataVolume: { device: "/dev/sdb'", path: "/mnt/data" } }, error: /data device/ },
    ];
    for (const c of cases) {
        void test(c.name, () => {
            assert.throws(() => renderFirstBoot({ ...INPUT, ...c.input }), c.error);
        });
    }
});
