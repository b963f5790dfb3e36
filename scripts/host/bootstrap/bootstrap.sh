#!/usr/bin/env bash
# onebox host bootstrap: turns a fresh Ubuntu 22.04/24.04 or Debian 12/13 server into a
# hardened Docker host. Idempotent: every step checks before it changes anything and
# prints what it changed; a second run changes nothing and says so.
#
# Installed as /usr/local/lib/onebox/bootstrap.sh together with the files it installs
# (sshd-hardening.conf, daemon.json, jail.local, after.rules.snippet, sysctl.conf,
# 20auto-upgrades, 52onebox-unattended-upgrades, docker-requires-data.conf), and run as root.
#
# One concern per module (modules/NN-NAME.sh: NAME_apply converges it, NAME_check verifies
# it), applied in file-name order; shared helpers in lib/. The provisioning step sends one
# file: this one with lib/*.sh and modules/*.sh inlined at the @MODULES@ line below
# (components/provisioning/host-scripts.ts). Run the assembled script, not this file.
#
# Usage:
#   bootstrap.sh                      converge the host (needs root)
#   bootstrap.sh --check              run every module's check; one PASS/FAIL line per
#                                     property (H3-H7 refer to SECURITY.md), exit 1 on any
#                                     FAIL (needs root; changes nothing)
#   bootstrap.sh --render WHAT        print a rendered file (sshd | jail | after.rules |
#                                     after6.rules | ufw-rules | docker-requires-data)
#   bootstrap.sh --select-data-disk ROOT_DISK
#                                     read `lsblk -P -p -o NAME,TYPE,FSTYPE,LABEL,MOUNTPOINT,PKNAME,RO`
#                                     on stdin, print the candidate data disks (for tests)
#   bootstrap.sh --help
#
# Settings: read from the stack's /etc/onebox/<stack>/bootstrap.env (a shell file,
# root-owned, 0600), named by ONEBOX_BOOTSTRAP_ENV (the provisioning step passes it); run
# by hand without it, from /etc/onebox/bootstrap.env of a single-stack setup, or the only
# stack's file (several: it stops and asks to name one), falling back to the environment. The program
# validated them before it rendered the file (components/config/schema.ts); the script checks
# only their form (check_settings) and what only the host knows.
#
# Several stacks on one host (H14): the firewall this run applies holds the ports of every
# stack, read (parsed, never sourced) from the other stacks' files in ONEBOX_ETC_DIR
# (default /etc/onebox: <stack>/bootstrap.env, and bootstrap.env when it is not this run's);
# a port one stack restricts stays restricted; host-wide settings that differ between the
# files are warned about. The rules are in lib/stacks.sh.
#   ONEBOX_DEPLOY_USER        SSH login user of the provisioning steps. May be root on
#                             existing servers and the test server.          default: deploy
#   ONEBOX_ADMIN_CAN_ROOT     true: root logs in with keys (PermitRootLogin prohibit-password);
#                             false: PermitRootLogin no. Must be true when the deploy user is
#                             root.               default: true if ONEBOX_DEPLOY_USER=root, else false
#   ONEBOX_DATA_PATH          Mount point of the data volume (or plain directory without
#                             one) for database data and uploads.         default: /mnt/data
#   ONEBOX_DATA_DEVICE        Block device for ONEBOX_DATA_PATH. Formatted ext4 only when it
#                             carries no filesystem or partition table (never reformatted),
#                             added to /etc/fstab by UUID with nofail, mounted. "auto" picks
#                             the single whole disk that is not the root disk and has no
#                             partitions, filesystem or mount (Lightsail Nitro attaches disks
#                             as NVMe, e.g. /dev/nvme1n1) - or, first, the single unmounted
#                             disk with an "onebox-data" filesystem (the data disk of a replaced
#                             server) - and fails when there is not exactly one. An EBS name
#                             such as /dev/xvdf that does not exist on an NVMe host is looked
#                             up the same way.                         default: empty (no device)
#   ONEBOX_SWAP_MB            Size of /swapfile, created when the host has no swap at all and
#                             the value is > 0. 0 disables.                    default: 1024
#   ONEBOX_SSH_ALLOWED_CIDRS  Space-separated CIDRs (or addresses) that may reach SSH through
#                             ufw; "any" allows every address.       required, no default
#   ONEBOX_SSH_PORT           Port sshd listens on (the bootstrap does not move sshd; it
#                             checks sshd listens there before the firewall goes up). default: 22
#   ONEBOX_PUBLIC_TCP_PORTS   Space-separated TCP ports open to everyone, e.g. "80 443".
#                                                                          default: empty
#   ONEBOX_RESTRICTED_PORTS   Space-separated port:cidr pairs open only to a network, e.g.
#                             "5432:198.51.100.0/24 5432:2001:db8::/48".   default: empty
#   ONEBOX_DOCKER_SOURCE      distro: the distribution's docker.io and compose v2 plugin
#                             (Debian 13: docker-compose; Ubuntu 24.04: docker-compose-v2);
#                             docker: Docker's signed apt repository (docker-ce,
#                             docker-compose-plugin); auto: distro on Debian 13 and Ubuntu
#                             24.04, docker elsewhere. An existing working Docker with compose
#                             v2 is left as it is.                               default: auto
#   ONEBOX_STACK              The stack's compose project (<app>-<environment>): its containers
#                             are the stack's own; every other running container belongs to
#                             another stack (H14).                   default: empty (all foreign)
#   ONEBOX_ALLOW_DOCKER_RESTART
#                             true: the bootstrap may restart Docker to apply daemon settings
#                             while containers of other stacks run (they restart unless
#                             live-restore is in effect); false: it stops and names the settings
#                             and the containers instead (H14).               default: false
#   ONEBOX_KEEP_PUBLISHED_PORTS
#                             Published ports of other containers that the DOCKER-USER policy
#                             leaves open to everyone: "all" (every published port except the
#                             stack's restricted ones), a space-separated port list, or empty
#                             (every port not listed above is dropped) (H14). default: empty
#
# Property ids (H1-H14) refer to SECURITY.md. Needs bash 4.4+, util-linux, coreutils.
set -euo pipefail
# Lists in the settings are split on spaces; never expand them as file name patterns.
set -o noglob

# Files shipped next to this script.
readonly SHIPPED_FILES=(
  sshd-hardening.conf daemon.json jail.local after.rules.snippet sysctl.conf
  20auto-upgrades 52onebox-unattended-upgrades docker-requires-data.conf
  migrate-layout.sh
)
# The modules in the order they apply (their file-name order).
readonly MODULES=(host data_volume swap sysctl packages docker ssh firewall fail2ban upgrades)

SELF_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly SELF_DIR
SCRATCH=""
CHANGES=()
# The settings file this run reads (set by load_settings).
SETTINGS_FILE=""

# ---------------------------------------------------------------------------- output

log() { printf '[bootstrap] %s\n' "$*"; }
section() { printf '\n[bootstrap] == %s\n' "$*"; }
ok() { log "ok: $*"; }
changed() { CHANGES+=("$*"); log "changed: $*"; }
warn() { printf '[bootstrap] WARNING: %s\n' "$*" >&2; }
die() { printf '[bootstrap] ERROR: %s\n' "$*" >&2; exit 1; }

on_error() {
  printf '[bootstrap] ERROR: command failed (exit %s) at line %s: %s\n' "$1" "$2" "$3" >&2
}

cleanup() {
  if [[ -n "${SCRATCH}" && -d "${SCRATCH}" ]]; then
    rm -rf "${SCRATCH}"
  fi
}

usage() {
  sed -n '2,/^set -euo pipefail/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

# ---------------------------------------------------------------------------- settings

# SETTINGS_FILE: ONEBOX_BOOTSTRAP_ENV when set (the provisioning step names the stack's
# file); else the single-stack layout's /etc/onebox/bootstrap.env when it exists; else the
# only stack's /etc/onebox/<stack>/bootstrap.env. With several stacks and none named it
# stops rather than apply one of them by chance (a manual `--check` names one).
find_settings_file() {
  local etc="${ONEBOX_ETC_DIR:-/etc/onebox}" f
  local -a found=()
  SETTINGS_FILE="${ONEBOX_BOOTSTRAP_ENV:-}"
  [[ -z "${SETTINGS_FILE}" ]] || return 0
  SETTINGS_FILE="${etc}/bootstrap.env"
  [[ ! -e "${SETTINGS_FILE}" ]] || return 0
  set +o noglob
  for f in "${etc}"/*/bootstrap.env; do
    # A directory that is a link was left by the move to per-stack directories: the same stack.
    [[ -e "${f}" && ! -L "$(dirname -- "${f}")" ]] && found+=("${f}")
  done
  set -o noglob
  if ((${#found[@]} == 1)); then
    SETTINGS_FILE="${found[0]}"
  elif ((${#found[@]} > 1)); then
    die "this server holds several stacks' settings (${found[*]}); name one: ONEBOX_BOOTSTRAP_ENV=<file> $0 ..."
  fi
}

# Loads the settings file (when present) and fills in defaults. The file is shell sourced
# as root, so it must not be writable by anyone else.
# shellcheck disable=SC2034 # SETTINGS_FILE, HOST_*: read by lib/stacks.sh and the firewall module (checked together when assembled)
load_settings() {
  local quiet="${1:-}" env_file
  find_settings_file
  env_file="${SETTINGS_FILE}"
  if [[ -e "${env_file}" ]]; then
    local owner mode
    owner="$(stat -c '%u' "${env_file}")"
    mode="$(stat -c '%a' "${env_file}")"
    [[ "${owner}" == "0" || "${owner}" == "${EUID}" ]] \
      || die "${env_file} is owned by uid ${owner}; it is sourced as root, so it must be owned by root (chown root: ${env_file})"
    (((8#${mode} & 8#022) == 0)) \
      || die "${env_file} is writable by group or others (mode ${mode}); chmod 600 ${env_file}"
    (((8#${mode} & 8#077) == 0)) || warn "${env_file} has mode ${mode}; it should be 0600"
    # shellcheck source=/dev/null
    source "${env_file}"
  elif [[ -n "${ONEBOX_BOOTSTRAP_ENV:-}" ]]; then
    die "ONEBOX_BOOTSTRAP_ENV points to ${env_file}, which does not exist"
  elif [[ "${quiet}" != "quiet" ]]; then
    warn "${env_file} not found; using settings from the environment and defaults"
  fi

  ONEBOX_DEPLOY_USER="${ONEBOX_DEPLOY_USER:-deploy}"
  ONEBOX_DATA_PATH="${ONEBOX_DATA_PATH:-/mnt/data}"
  ONEBOX_DATA_DEVICE="${ONEBOX_DATA_DEVICE:-}"
  ONEBOX_SWAP_MB="${ONEBOX_SWAP_MB:-1024}"
  ONEBOX_SSH_ALLOWED_CIDRS="${ONEBOX_SSH_ALLOWED_CIDRS:-}"
  ONEBOX_SSH_PORT="${ONEBOX_SSH_PORT:-22}"
  ONEBOX_PUBLIC_TCP_PORTS="${ONEBOX_PUBLIC_TCP_PORTS:-}"
  ONEBOX_RESTRICTED_PORTS="${ONEBOX_RESTRICTED_PORTS:-}"
  ONEBOX_DOCKER_SOURCE="${ONEBOX_DOCKER_SOURCE:-auto}"
  ONEBOX_STACK="${ONEBOX_STACK:-}"
  ONEBOX_ALLOW_DOCKER_RESTART="${ONEBOX_ALLOW_DOCKER_RESTART:-false}"
  ONEBOX_KEEP_PUBLISHED_PORTS="${ONEBOX_KEEP_PUBLISHED_PORTS:-}"
  if [[ -z "${ONEBOX_ADMIN_CAN_ROOT:-}" ]]; then
    if [[ "${ONEBOX_DEPLOY_USER}" == "root" ]]; then ONEBOX_ADMIN_CAN_ROOT=true; else ONEBOX_ADMIN_CAN_ROOT=false; fi
  fi
  check_settings
  # The firewall applies every stack's ports: this stack's, extended by load_other_stacks.
  HOST_PUBLIC_TCP_PORTS="${ONEBOX_PUBLIC_TCP_PORTS}"
  HOST_RESTRICTED_PORTS="${ONEBOX_RESTRICTED_PORTS}"
  HOST_KEEP_PUBLISHED_PORTS="${ONEBOX_KEEP_PUBLISHED_PORTS}"
}

# The form of each value, which keeps it from changing the meaning of the commands and files it
# ends up in: numbers in arithmetic, addresses and names as command arguments, the data path in
# /etc/fstab. The rest was validated by the program; a few checks stay because their values do
# not all come from the schema (Cloudflare's ranges, the SSH port next to the web ports) or the
# schema checks the form only (a data path over a system directory). Lists every problem, exit 2.
check_settings() {
  local -a problems=()
  local word ssh_port=0

  [[ "${ONEBOX_DEPLOY_USER}" =~ ^[a-z_][a-z0-9_-]{0,31}$ ]] \
    || problems+=("ONEBOX_DEPLOY_USER='${ONEBOX_DEPLOY_USER}' is not a valid user name, e.g. deploy")
  if [[ ! "${ONEBOX_DATA_PATH}" =~ ^/[A-Za-z0-9._/-]+$ || "${ONEBOX_DATA_PATH}" == *..* ]]; then
    problems+=("ONEBOX_DATA_PATH='${ONEBOX_DATA_PATH}' must be an absolute path without spaces, e.g. /mnt/data")
  else
    case "${ONEBOX_DATA_PATH%/}" in
      "" | /bin | /boot | /dev | /etc | /lib | /lib64 | /proc | /root | /run | /sbin | /sys | /tmp | /usr | /var | /var/lib | /var/lib/docker | /home | /mnt | /srv)
        problems+=("ONEBOX_DATA_PATH='${ONEBOX_DATA_PATH}' is a system directory; use a dedicated one such as /mnt/data") ;;
    esac
  fi
  [[ "${ONEBOX_DATA_DEVICE}" =~ ^(auto|/dev/[A-Za-z0-9._/:-]+)?$ ]] \
    || problems+=("ONEBOX_DATA_DEVICE='${ONEBOX_DATA_DEVICE}' must be empty, auto, or a /dev path such as /dev/sdb")
  [[ "${ONEBOX_SWAP_MB}" =~ ^[0-9]{1,6}$ ]] \
    || problems+=("ONEBOX_SWAP_MB='${ONEBOX_SWAP_MB}' must be a whole number of MiB between 0 and 65536")
  if is_port "${ONEBOX_SSH_PORT}"; then
    ssh_port=$((10#${ONEBOX_SSH_PORT}))
  else
    problems+=("ONEBOX_SSH_PORT='${ONEBOX_SSH_PORT}' must be a port between 1 and 65535")
  fi
  if [[ "$(words_of "${ONEBOX_SSH_ALLOWED_CIDRS}")" != "any" ]]; then
    for word in ${ONEBOX_SSH_ALLOWED_CIDRS}; do
      cidr_family "${word}" >/dev/null \
        || problems+=("ONEBOX_SSH_ALLOWED_CIDRS: '${word}' is not a CIDR, e.g. 203.0.113.7/32 or 2001:db8::/48")
    done
  fi
  while IFS= read -r word; do
    [[ -n "${word}" ]] && problems+=("${word}")
  done < <(port_settings_problems "${ONEBOX_PUBLIC_TCP_PORTS}" "${ONEBOX_RESTRICTED_PORTS}" "${ONEBOX_KEEP_PUBLISHED_PORTS}" "${ssh_port}")

  [[ "${ONEBOX_STACK}" =~ ^([a-z0-9][a-z0-9_-]{0,62})?$ ]] \
    || problems+=("ONEBOX_STACK='${ONEBOX_STACK}' must be a compose project name such as shop-production")
  [[ "${ONEBOX_ALLOW_DOCKER_RESTART}" == "true" || "${ONEBOX_ALLOW_DOCKER_RESTART}" == "false" ]] \
    || problems+=("ONEBOX_ALLOW_DOCKER_RESTART='${ONEBOX_ALLOW_DOCKER_RESTART}' must be true or false")
  if ((${#problems[@]} > 0)); then
    printf '[bootstrap] ERROR: invalid settings:\n' >&2
    printf '  - %s\n' "${problems[@]}" >&2
    exit 2
  fi
}

# port_settings_problems PUBLIC RESTRICTED KEEP SSH_PORT: the problems of a stack's port
# settings (ONEBOX_PUBLIC_TCP_PORTS, ONEBOX_RESTRICTED_PORTS, ONEBOX_KEEP_PUBLISHED_PORTS), one
# per line; none when they are valid. SSH_PORT is the port sshd listens on (0: unknown), which
# neither list may open. The same checks apply to this stack's settings and to the ports read
# from the other stacks' files (lib/stacks.sh).
port_settings_problems() {
  local public="$1" restricted="$2" keep="$3" ssh_port="$4" word pair port cidr
  for word in ${public}; do
    if ! is_port "${word}"; then
      printf '%s\n' "ONEBOX_PUBLIC_TCP_PORTS: '${word}' is not a port between 1 and 65535"
    elif ((10#${word} == ssh_port)); then
      printf '%s\n' "ONEBOX_PUBLIC_TCP_PORTS contains the SSH port ${word}; SSH access is set by ONEBOX_SSH_ALLOWED_CIDRS (use any to open it)"
    fi
  done
  for pair in ${restricted}; do
    port="${pair%%:*}"
    cidr="${pair#*:}"
    if [[ "${pair}" != *:* ]] || ! is_port "${port}" || ! cidr_family "${cidr}" >/dev/null; then
      printf '%s\n' "ONEBOX_RESTRICTED_PORTS: '${pair}' must be port:cidr, e.g. 5432:198.51.100.0/24"
    elif is_everything "${cidr}"; then
      printf '%s\n' "ONEBOX_RESTRICTED_PORTS: '${pair}' opens the port to everyone; list it in ONEBOX_PUBLIC_TCP_PORTS instead"
    elif ((10#${port} == ssh_port)); then
      printf '%s\n' "ONEBOX_RESTRICTED_PORTS: '${pair}' is the SSH port; use ONEBOX_SSH_ALLOWED_CIDRS"
    fi
  done
  [[ "$(words_of "${keep}")" != "all" ]] || return 0
  for word in ${keep}; do
    if ! is_port "${word}"; then
      printf '%s\n' "ONEBOX_KEEP_PUBLISHED_PORTS: '${word}' is not a port between 1 and 65535 (or use all alone)"
      continue
    fi
    for pair in ${restricted}; do
      if is_port "${pair%%:*}" && ((10#${pair%%:*} == 10#${word})); then
        printf '%s\n' "ONEBOX_KEEP_PUBLISHED_PORTS: ${word} is restricted to listed networks (ONEBOX_RESTRICTED_PORTS); keeping it would open it to everyone"
        break
      fi
    done
  done
  return 0
}

# @MODULES@

# ---------------------------------------------------------------------------- main

require_root() {
  ((EUID == 0)) || die "run as root (sudo ${BASH_SOURCE[0]})"
}

require_shipped_files() {
  local f
  local -a missing=()
  for f in "${SHIPPED_FILES[@]}"; do [[ -r "${SELF_DIR}/${f}" ]] || missing+=("${f}"); done
  ((${#missing[@]} == 0)) || die "missing next to ${BASH_SOURCE[0]}: ${missing[*]} (ship the whole scripts/host/bootstrap directory)"
}

# One bootstrap at a time (a retried provisioning step could start a second one).
take_lock() {
  exec 9>/run/onebox-bootstrap.lock
  flock -w 900 9 || die "another bootstrap is still running after 15 minutes (/run/onebox-bootstrap.lock)"
}

# Every module must be in this file (a run of the unassembled source has none of them).
require_modules() {
  local m
  for m in "${MODULES[@]}"; do
    declare -F "${m}_apply" "${m}_check" >/dev/null \
      || die "module ${m} is missing: run the assembled script (components/provisioning/host-scripts.ts), not scripts/host/bootstrap/bootstrap.sh"
  done
}

run_bootstrap() {
  local start="${SECONDS}" m
  require_root
  take_lock
  export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1
  for m in "${MODULES[@]}"; do "${m}_apply"; done
  printf '\n'
  if ((${#CHANGES[@]} == 0)); then
    log "done in $((SECONDS - start)) s: no changes, the host already matches the settings"
  else
    log "done in $((SECONDS - start)) s: ${#CHANGES[@]} changes"
  fi
}

run_check() {
  local m
  for m in "${MODULES[@]}"; do "${m}_check"; done
  printf 'check: %d PASS, %d FAIL\n' "${CHECK_PASSES}" "${CHECK_FAILS}"
}

main() {
  local mode="${1:-apply}"
  case "${mode}" in
    -h | --help) usage; return 0 ;;
  esac
  trap cleanup EXIT
  trap 'on_error "$?" "${LINENO}" "${BASH_COMMAND}"' ERR
  set -o errtrace
  SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/onebox-bootstrap.XXXXXX")"
  require_modules
  case "${mode}" in
    apply)
      require_shipped_files
      load_settings
      load_other_stacks
      run_bootstrap
      ;;
    --check)
      require_root
      require_shipped_files
      load_settings
      load_other_stacks quiet
      run_check
      ((CHECK_FAILS == 0)) || exit 1
      ;;
    --render)
      (($# == 2)) || die "usage: $0 --render sshd|jail|after.rules|after6.rules|ufw-rules|docker-requires-data"
      load_settings quiet
      load_other_stacks quiet
      case "$2" in
        sshd) render_sshd ;;
        jail) render_jail ;;
        after.rules) render_docker_user_block 4 ;;
        after6.rules) render_docker_user_block 6 ;;
        ufw-rules) render_ufw_rules ;;
        docker-requires-data) render_docker_data_dropin ;;
        *) die "unknown --render target '$2'" ;;
      esac
      ;;
    --select-data-disk)
      (($# == 2)) || die "usage: $0 --select-data-disk ROOT_DISK < lsblk-output"
      select_data_disks "$2"
      ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
