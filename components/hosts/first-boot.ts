/**
 * First-boot user data for cloud servers: a bash script that cloud-init runs
 * once, as root (DigitalOcean user data; Lightsail launch script, see
 * {@link renderLightsailLaunchScript}).
 *
 * It does the minimum that must happen before the program's first SSH
 * connection, and nothing else (packages, Docker, hardening and mounting the
 * data volume belong to the bootstrap, which runs over SSH):
 *
 * - installs the host key the program generated and pinned (R1), so the
 *   first SSH answer that can succeed already carries the pinned key. Until
 *   the script has run the deploy user does not exist and the server shows
 *   cloud-init's own keys, so early connections fail (and are retried); they
 *   are never trusted;
 * - creates the deploy user with password-less sudo and its authorized_keys;
 * - keeps containers away from the cloud metadata service, which serves this
 *   very user data (and so the host private key) to anyone on the server;
 * - guards the empty data mount point until the bootstrap mounts the volume.
 *
 * The script is data rendered by a pure function: tests assert the exact
 * text and run ShellCheck on it. Secrets (the host private key) only appear
 * inside quoted here-documents, never on a command line.
 */
import { quote } from "shell-quote";
import { openSshKeyFields } from "./ssh-identity";

/** Where the data volume is expected and where the bootstrap mounts it. */
export interface DataVolumeInfo {
    /**
     * Block device the provider attaches.
     * @example "/dev/disk/by-id/scsi-0DO_Volume_finances-prod-data"
     */
    readonly device: string;
    /** Mount point. @example "/mnt/data" */
    readonly path: string;
}

/** Input of {@link renderFirstBoot}. */
export interface FirstBootInput {
    /** Host private key, OpenSSH format ("-----BEGIN OPENSSH PRIVATE KEY-----"). Secret. */
    readonly hostPrivateKey: string;
    /** The matching public key, "ssh-ed25519 AAAA..." (the key connections pin). */
    readonly hostPublicKey: string;
    /** Login user to create. @example "deploy" */
    readonly deployUser: string;
    /** authorized_keys lines for that user: the deploy key first, then administrators' keys. */
    readonly authorizedKeys: readonly string[];
    /** The data volume this server will get. */
    readonly dataVolume: DataVolumeInfo;
}

/** Address of the metadata service on DigitalOcean and AWS (Lightsail). */
export const METADATA_ADDRESS = "169.254.169.254";

/** Where the pinned host key is installed on the server. */
export const HOST_KEY_PATH = "/etc/ssh/ssh_host_ed25519_key";

/** systemd unit that keeps containers away from the metadata service. */
export const METADATA_BLOCK_UNIT = "onebox-block-metadata.service";

/** Match and target of the rule the unit puts first in DOCKER-USER (REJECT: clients fail fast instead of hanging). */
export const METADATA_BLOCK_RULE = `-d ${METADATA_ADDRESS}/32 -j REJECT`;

/** Here-document delimiters; no line of embedded content may equal one of them. */
export const HEREDOC = {
    hostPrivateKey: "ONEBOX_HOST_PRIVATE_KEY",
    hostPublicKey: "ONEBOX_HOST_PUBLIC_KEY",
    authorizedKeys: "ONEBOX_AUTHORIZED_KEYS",
    unit: "ONEBOX_UNIT",
    script: "ONEBOX_FIRST_BOOT",
} as const;

const USER_NAME = /^[a-z_][a-z0-9_-]{0,31}$/;
const SAFE_PATH = /^\/[A-Za-z0-9._/-]+$/;
const PRIVATE_KEY = /^-----BEGIN OPENSSH PRIVATE KEY-----\n[\x20-\x7e\n]+\n-----END OPENSSH PRIVATE KEY-----\n?$/;

/** Throws unless `text` is safe to embed in a quoted here-document. */
function checkHeredocBody(what: string, text: string): void {
    const delimiters: string[] = Object.values(HEREDOC);
    for (const line of text.split("\n")) {
        if (delimiters.includes(line.trim())) {
            throw new Error(`${what} contains a line equal to a here-document delimiter (${line.trim()})`);
        }
    }
}

/** Validates the input; every problem here is a programming error, not a config one. */
function checkInput(input: FirstBootInput): void {
    if (!USER_NAME.test(input.deployUser)) {
        throw new Error(`first boot: ${JSON.stringify(input.deployUser)} is not a valid user name`);
    }
    if (!PRIVATE_KEY.test(input.hostPrivateKey)) {
        throw new Error("first boot: the host private key must be one OpenSSH private key (BEGIN/END OPENSSH PRIVATE KEY)");
    }
    checkHeredocBody("the host private key", input.hostPrivateKey);
    openSshKeyFields(input.hostPublicKey);
    if (input.authorizedKeys.length === 0) {
        throw new Error("first boot: at least one authorized key (the deploy key) is required");
    }
    for (const key of input.authorizedKeys) {
        if (/[\r\n]/.test(key)) {
            throw new Error("first boot: an authorized key must be a single line");
        }
        openSshKeyFields(key);
    }
    for (const [what, path] of [
        ["data device", input.dataVolume.device],
        ["data path", input.dataVolume.path],
    ]) {
        if (!SAFE_PATH.test(path)) {
            throw new Error(`first boot: ${what} ${JSON.stringify(path)} must be an absolute path of letters, digits, . _ / -`);
        }
    }
}

/** Renders the first-boot bash script. Pure; throws on input that could not be embedded safely. */
export function renderFirstBoot(input: FirstBootInput): string {
    checkInput(input);
    const privateKey = input.hostPrivateKey.endsWith("\n") ? input.hostPrivateKey : `${input.hostPrivateKey}\n`;
    const lines = [
        "#!/usr/bin/env bash",
        "# onebox first boot (rendered by components/hosts/first-boot.ts).",
        "# Runs once, as root, from cloud-init: pins the SSH host key, creates the",
        "# deploy user and keeps containers away from the cloud metadata service.",
        "# Packages, Docker, hardening and mounting the data volume are the",
        "# bootstrap's job, over SSH, once this script has run.",
        "set -euo pipefail",
        "",
        `readonly DEPLOY_USER=${quote([input.deployUser])}`,
        `readonly DATA_DEVICE=${quote([input.dataVolume.device])}`,
        `readonly DATA_PATH=${quote([input.dataVolume.path])}`,
        `readonly HOST_KEY=${HOST_KEY_PATH}`,
        `readonly METADATA_ADDRESS=${METADATA_ADDRESS}`,
        "",
        "log() {",
        "    printf 'onebox-first-boot: %s\\n' \"$*\"",
        "}",
        "",
        "# R1: the server must answer with the host key the program pinned, so the",
        "# generated key replaces the ones cloud-init created, and the other key types",
        "# go away so no client can be offered a key nobody pinned.",
        "install_host_key() {",
        "    install -m 0600 -o root -g root /dev/null \"$HOST_KEY\"",
        `    cat >"$HOST_KEY" <<'${HEREDOC.hostPrivateKey}'`,
        `${privateKey}${HEREDOC.hostPrivateKey}`,
        "    install -m 0644 -o root -g root /dev/null \"$HOST_KEY.pub\"",
        `    cat >"$HOST_KEY.pub" <<'${HEREDOC.hostPublicKey}'`,
        openSshKeyFields(input.hostPublicKey),
        HEREDOC.hostPublicKey,
        "    local derived pinned type",
        "    derived=\"$(ssh-keygen -y -f \"$HOST_KEY\" | cut -d' ' -f1,2)\"",
        "    pinned=\"$(cut -d' ' -f1,2 \"$HOST_KEY.pub\")\"",
        "    if [[ \"$derived\" != \"$pinned\" ]]; then",
        "        log \"the host private key does not match the pinned public key; stopping\"",
        "        exit 1",
        "    fi",
        "    for type in rsa ecdsa dsa; do",
        "        rm -f \"/etc/ssh/ssh_host_${type}_key\" \"/etc/ssh/ssh_host_${type}_key.pub\"",
        "    done",
        "    install -d -m 0755 /etc/ssh/sshd_config.d",
        "    printf 'HostKey %s\\n' \"$HOST_KEY\" >/etc/ssh/sshd_config.d/00-onebox-host-key.conf",
        "    chmod 0644 /etc/ssh/sshd_config.d/00-onebox-host-key.conf",
        "    /usr/sbin/sshd -t",
        "    # try-: on socket-activated sshd (Ubuntu 24.04) a stopped daemon starts with the new key anyway.",
        "    systemctl try-reload-or-restart ssh.service",
        "    log \"host key installed\"",
        "}",
        "",
        "create_deploy_user() {",
        "    local sudoers tmp",
        "    if ! id -u \"$DEPLOY_USER\" >/dev/null 2>&1; then",
        "        useradd --create-home --shell /bin/bash \"$DEPLOY_USER\"",
        "        # '*' rather than useradd's '!': no password ever matches, and sshd",
        "        # without PAM refuses public-key logins to '!'-locked accounts.",
        "        usermod --password '*' \"$DEPLOY_USER\"",
        "        log \"created user $DEPLOY_USER\"",
        "    fi",
        "    sudoers=\"/etc/sudoers.d/90-onebox-$DEPLOY_USER\"",
        "    tmp=\"$(mktemp)\"",
        "    printf '%s ALL=(ALL) NOPASSWD:ALL\\n' \"$DEPLOY_USER\" >\"$tmp\"",
        "    # A broken sudoers file locks everyone out of sudo: check before installing.",
        "    visudo -cf \"$tmp\" >/dev/null",
        "    install -m 0440 -o root -g root \"$tmp\" \"$sudoers\"",
        "    rm -f \"$tmp\"",
        "}",
        "",
        "install_authorized_keys() {",
        "    local home group tmp",
        "    home=\"$(getent passwd \"$DEPLOY_USER\" | cut -d: -f6)\"",
        "    group=\"$(id -gn \"$DEPLOY_USER\")\"",
        "    install -d -m 0700 -o \"$DEPLOY_USER\" -g \"$group\" \"$home/.ssh\"",
        "    tmp=\"$(mktemp)\"",
        `    cat >"$tmp" <<'${HEREDOC.authorizedKeys}'`,
        ...input.authorizedKeys.map((k) => k.trim()),
        HEREDOC.authorizedKeys,
        "    install -m 0600 -o \"$DEPLOY_USER\" -g \"$group\" \"$tmp\" \"$home/.ssh/authorized_keys\"",
        "    rm -f \"$tmp\"",
        "    log \"authorized_keys installed for $DEPLOY_USER\"",
        "}",
        "",
        "# User data holds the host private key, and the metadata service hands user",
        "# data to any process on the server that asks (DigitalOcean:",
        "# /metadata/v1/user-data, Lightsail: /latest/user-data). Containers run the",
        "# least trusted code here, so their traffic to the metadata address is",
        "# rejected in DOCKER-USER, the chain Docker leaves to the administrator and",
        "# evaluates before its own rules. Docker is installed later by the bootstrap",
        "# and the rule must come back after every reboot, so a unit that",
        "# docker.service pulls in (WantedBy) and that re-runs whenever Docker",
        "# restarts (PartOf) installs it. Enabling the unit before Docker exists only",
        "# creates the docker.service.wants/ link, which takes effect once Docker is",
        "# installed. Host processes (cloud-init, provider agents) keep access: their",
        "# traffic does not cross the FORWARD chain that DOCKER-USER hooks into.",
        "block_metadata_from_containers() {",
        `    cat >/etc/systemd/system/${METADATA_BLOCK_UNIT} <<'${HEREDOC.unit}'`,
        "[Unit]",
        `Description=Reject container traffic to the cloud metadata service (${METADATA_ADDRESS})`,
        "After=docker.service",
        "PartOf=docker.service",
        "",
        "[Service]",
        "Type=oneshot",
        "RemainAfterExit=yes",
        `ExecStart=/bin/sh -c 'iptables -w -C DOCKER-USER ${METADATA_BLOCK_RULE} 2>/dev/null || iptables -w -I DOCKER-USER 1 ${METADATA_BLOCK_RULE}'`,
        "",
        "[Install]",
        "WantedBy=docker.service",
        HEREDOC.unit,
        `    chmod 0644 /etc/systemd/system/${METADATA_BLOCK_UNIT}`,
        "    systemctl daemon-reload",
        `    systemctl enable ${METADATA_BLOCK_UNIT}`,
        "    if systemctl is-active --quiet docker.service; then",
        `        systemctl restart ${METADATA_BLOCK_UNIT}`,
        "    fi",
        "    log \"containers are kept away from $METADATA_ADDRESS\"",
        "}",
        "",
        "# Mounting is the bootstrap's job: the volume is attached after the server",
        "# is created and may not be there yet. Until then nothing may write into the",
        "# empty mount point: such files would land on the root disk and disappear",
        "# from view (and from backups) once the volume is mounted over them.",
        "prepare_data_mount_point() {",
        "    install -d -m 0700 /etc/onebox",
        "    printf 'ONEBOX_DATA_DEVICE=%s\\nONEBOX_DATA_PATH=%s\\n' \"$DATA_DEVICE\" \"$DATA_PATH\" >/etc/onebox/data-volume.env",
        "    chmod 0644 /etc/onebox/data-volume.env",
        "    if mountpoint -q \"$DATA_PATH\"; then",
        "        return 0",
        "    fi",
        "    install -d -m 0755 \"$DATA_PATH\"",
        "    if chattr +i \"$DATA_PATH\"; then",
        "        log \"$DATA_PATH stays immutable until the data volume is mounted on it\"",
        "    else",
        "        log \"warning: could not make $DATA_PATH immutable\"",
        "    fi",
        "}",
        "",
        "main() {",
        "    umask 077",
        "    install_host_key",
        "    create_deploy_user",
        "    install_authorized_keys",
        "    block_metadata_from_containers",
        "    prepare_data_mount_point",
        "    log \"done\"",
        "}",
        "",
        "main \"$@\"",
    ];
    return `${lines.join("\n")}\n`;
}

/**
 * Wraps the first-boot script for Lightsail, which runs launch scripts with
 * /bin/sh after its own setup lines: the bash script goes to bash on standard
 * input through a quoted here-document, so every byte stays literal and the
 * keys never reach a command line. A truncated transfer leaves the inner
 * script without its final `main "$@"` line, so nothing half-runs.
 */
export function renderLightsailLaunchScript(input: FirstBootInput): string {
    const script = renderFirstBoot(input);
    const lines = [
        "#!/bin/sh",
        "# onebox first boot, Lightsail launch script (rendered by components/hosts/first-boot.ts).",
        "# Lightsail runs launch scripts with /bin/sh, after its own setup lines; the",
        "# bash script is handed to bash on standard input.",
        `bash -s <<'${HEREDOC.script}'`,
        `${script}${HEREDOC.script}`,
    ];
    return `${lines.join("\n")}\n`;
}
