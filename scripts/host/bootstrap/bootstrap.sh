#!/usr/bin/env bash
# onebox host bootstrap: turns a fresh Ubuntu 22.04/24.04 or Debian 12/13 server into a
# hardened Docker host. Idempotent: every step checks before it changes anything and
# prints what it changed; a second run changes nothing and says so.
#
# Installed as /usr/local/lib/onebox/bootstrap.sh together with the files it installs
# (sshd-hardening.conf, daemon.json, jail.local, after.rules.snippet, sysctl.conf,
# 20auto-upgrades, 52onebox-unattended-upgrades, docker-requires-data.conf), and run as root.
#
# Usage:
#   bootstrap.sh                      converge the host (needs root)
#   bootstrap.sh --check              verify H3-H7 only; one PASS/FAIL line per property,
#                                     exit 1 on any FAIL (needs root; changes nothing)
#   bootstrap.sh --render WHAT        print a rendered file (sshd | jail | after.rules |
#                                     after6.rules | ufw-rules | docker-requires-data)
#   bootstrap.sh --select-data-disk ROOT_DISK
#                                     read `lsblk -P -p -o NAME,TYPE,FSTYPE,LABEL,MOUNTPOINT,PKNAME,RO`
#                                     on stdin, print the candidate data disks (for tests)
#   bootstrap.sh --help
#
# Settings: read from /etc/onebox/bootstrap.env (a shell file, root-owned, 0600; the path
# can be overridden with ONEBOX_BOOTSTRAP_ENV), falling back to the environment.
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
#
# Property ids (H1-H8) refer to SECURITY.md. Needs bash 4.4+, util-linux, coreutils.
set -euo pipefail
# Lists in the settings are split on spaces; never expand them as file name patterns.
set -o noglob

readonly ENV_FILE_DEFAULT="/etc/onebox/bootstrap.env"
readonly SSHD_DROPIN="/etc/ssh/sshd_config.d/00-onebox-hardening.conf"
readonly SSHD_CONFIG="/etc/ssh/sshd_config"
readonly SSHD_INCLUDE="Include /etc/ssh/sshd_config.d/*.conf"
readonly DAEMON_JSON="/etc/docker/daemon.json"
readonly DOCKER_DATA_DROPIN="/etc/systemd/system/docker.service.d/10-onebox-data.conf"
readonly JAIL_FILE="/etc/fail2ban/jail.d/onebox.local"
readonly SYSCTL_FILE="/etc/sysctl.d/60-onebox.conf"
readonly AUTO_UPGRADES_FILE="/etc/apt/apt.conf.d/20auto-upgrades"
readonly UU_ORIGINS_FILE="/etc/apt/apt.conf.d/52onebox-unattended-upgrades"
readonly UFW_AFTER_RULES="/etc/ufw/after.rules"
readonly UFW_AFTER6_RULES="/etc/ufw/after6.rules"
readonly BLOCK_BEGIN="# BEGIN ONEBOX DOCKER-USER"
readonly BLOCK_END="# END ONEBOX DOCKER-USER"
readonly SWAP_FILE="/swapfile"
# Filesystem label of data volumes the bootstrap formats; lets "auto" find them again.
readonly DATA_LABEL="onebox-data"
readonly DOCKER_KEYRING="/etc/apt/keyrings/docker.asc"
readonly DOCKER_SOURCES="/etc/apt/sources.list.d/docker.list"
# Fingerprint of Docker's release signing key (https://docs.docker.com/engine/install/).
readonly DOCKER_KEY_FPR="9DC858229FC7DD38854AE2D88D81803C0EBFCD88"
readonly CLOUD_INIT_TIMEOUT=900
readonly APT_LOCK_TIMEOUT=300
# Tools the backup and deploy steps rely on; iptables for ufw/fail2ban/Docker; python3-systemd
# for fail2ban's journal backend.
readonly BASE_PACKAGES=(
  ca-certificates curl jq rclone age e2fsprogs procps iptables
  ufw fail2ban python3-systemd unattended-upgrades
)
# Files shipped next to this script.
readonly SHIPPED_FILES=(
  sshd-hardening.conf daemon.json jail.local after.rules.snippet sysctl.conf
  20auto-upgrades 52onebox-unattended-upgrades docker-requires-data.conf
)

SELF_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly SELF_DIR
SCRATCH=""
CHANGED=0
CHANGES=()
OS_ID=""
OS_VERSION=""
OS_CODENAME=""

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

# Loads the settings file (when present) and fills in defaults. The file is shell sourced
# as root, so it must not be writable by anyone else.
load_settings() {
  local quiet="${1:-}" env_file="${ONEBOX_BOOTSTRAP_ENV:-${ENV_FILE_DEFAULT}}"
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
  if [[ -z "${ONEBOX_ADMIN_CAN_ROOT:-}" ]]; then
    if [[ "${ONEBOX_DEPLOY_USER}" == "root" ]]; then ONEBOX_ADMIN_CAN_ROOT=true; else ONEBOX_ADMIN_CAN_ROOT=false; fi
  fi
  validate_settings
}

is_port() { [[ "$1" =~ ^[0-9]{1,5}$ ]] && (("10#$1" >= 1 && "10#$1" <= 65535)); }

is_ipv4() {
  local IFS=. octet
  local -a parts
  [[ "$1" =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] || return 1
  read -ra parts <<<"$1"
  for octet in "${parts[@]}"; do (("10#${octet}" <= 255)) || return 1; done
}

# Prints the 8 groups of an IPv6 address (lowercase hex, no leading zeros), or fails.
ipv6_groups() {
  local a="${1,,}" g
  local -a head=() tail=() all=()
  [[ "${a}" =~ ^[0-9a-f:]+$ && "${a}" == *:* ]] || return 1
  if [[ "${a}" == *::* ]]; then
    [[ "${a#*::}" != *::* ]] || return 1
    IFS=: read -ra head <<<"${a%%::*}"
    IFS=: read -ra tail <<<"${a#*::}"
    ((${#head[@]} + ${#tail[@]} <= 7)) || return 1
    all=("${head[@]}")
    while ((${#all[@]} + ${#tail[@]} < 8)); do all+=(0); done
    all+=("${tail[@]}")
  else
    IFS=: read -ra all <<<"${a}"
    ((${#all[@]} == 8)) && [[ "${a}" != *: ]] || return 1
  fi
  for g in "${all[@]}"; do
    [[ "${g}" =~ ^[0-9a-f]{1,4}$ ]] || return 1
    printf '%x ' "$((16#${g}))"
  done
}

# RFC 5952 text of 8 groups: the longest run (>= 2) of zero groups becomes "::".
ipv6_compress() {
  local -a g
  read -ra g <<<"$1"
  local i run_start=-1 run_len=0 best_start=-1 best_len=0
  for i in "${!g[@]}"; do
    if [[ "${g[i]}" == 0 ]]; then
      ((run_start >= 0)) || run_start="${i}"
      run_len=$((run_len + 1))
      if ((run_len > best_len)); then best_start="${run_start}" best_len="${run_len}"; fi
    else
      run_start=-1 run_len=0
    fi
  done
  local IFS=:
  if ((best_len >= 2)); then
    printf '%s::%s\n' "${g[*]:0:best_start}" "${g[*]:best_start+best_len}"
  else
    printf '%s\n' "${g[*]}"
  fi
}

is_ipv6() { ipv6_groups "$1" >/dev/null; }

# An address or CIDR (ufw accepts both); prints its family, 4 or 6.
cidr_family() {
  local addr="${1%/*}" bits=""
  [[ "$1" == */* ]] && bits="${1#*/}"
  if is_ipv4 "${addr}"; then
    [[ -z "${bits}" ]] || { [[ "${bits}" =~ ^[0-9]{1,2}$ ]] && ((10#${bits} <= 32)); } || return 1
    echo 4
  elif is_ipv6 "${addr}"; then
    [[ -z "${bits}" ]] || { [[ "${bits}" =~ ^[0-9]{1,3}$ ]] && ((10#${bits} <= 128)); } || return 1
    echo 6
  else
    return 1
  fi
}

# The form ufw stores and prints (so `ufw show added` compares equal): IPv4 host bits
# cleared, /32 and /128 dropped, IPv6 lowercase and compressed (ufw keeps IPv6 host bits).
canonical_cidr() {
  local addr="${1%/*}" bits="" text
  [[ "$1" == */* ]] && bits="$((10#${1#*/}))"
  if is_ipv4 "${addr}"; then
    bits="${bits:-32}"
    local n
    n="$(ip4_to_int "${addr}")"
    ((bits == 0)) && n=0 || n=$((n & ((0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF)))
    text="$((n >> 24 & 255)).$((n >> 16 & 255)).$((n >> 8 & 255)).$((n & 255))"
    ((bits == 32)) || text+="/${bits}"
  else
    bits="${bits:-128}"
    text="$(ipv6_compress "$(ipv6_groups "${addr}")")"
    ((bits == 128)) || text+="/${bits}"
  fi
  printf '%s\n' "${text}"
}

# The whole address space: ufw turns it into "any", so it gets its own settings.
is_everything() { [[ "$1" == */0 || "$1" == */00 ]]; }

# Collects every problem, then fails once listing all of them.
validate_settings() {
  local -a problems=()
  local word pair port cidr

  [[ "${ONEBOX_DEPLOY_USER}" =~ ^[a-z_][a-z0-9_-]{0,31}$ ]] \
    || problems+=("ONEBOX_DEPLOY_USER='${ONEBOX_DEPLOY_USER}' is not a valid user name, e.g. deploy")
  case "${ONEBOX_ADMIN_CAN_ROOT}" in
    true | false) ;;
    *) problems+=("ONEBOX_ADMIN_CAN_ROOT='${ONEBOX_ADMIN_CAN_ROOT}' must be true or false") ;;
  esac
  if [[ "${ONEBOX_DEPLOY_USER}" == "root" && "${ONEBOX_ADMIN_CAN_ROOT}" != "true" ]]; then
    problems+=("ONEBOX_DEPLOY_USER=root needs ONEBOX_ADMIN_CAN_ROOT=true (PermitRootLogin no would lock the deploy user out)")
  fi
  if [[ ! "${ONEBOX_DATA_PATH}" =~ ^/[A-Za-z0-9._/-]+$ || "${ONEBOX_DATA_PATH}" == *..* ]]; then
    problems+=("ONEBOX_DATA_PATH='${ONEBOX_DATA_PATH}' must be an absolute path without spaces, e.g. /mnt/data")
  else
    case "${ONEBOX_DATA_PATH%/}" in
      "" | /bin | /boot | /dev | /etc | /lib | /lib64 | /proc | /root | /run | /sbin | /sys | /tmp | /usr | /var | /var/lib | /var/lib/docker | /home | /mnt | /srv)
        problems+=("ONEBOX_DATA_PATH='${ONEBOX_DATA_PATH}' is a system directory; use a dedicated one such as /mnt/data") ;;
    esac
  fi
  if [[ -n "${ONEBOX_DATA_DEVICE}" && "${ONEBOX_DATA_DEVICE}" != "auto" && ! "${ONEBOX_DATA_DEVICE}" =~ ^/dev/[A-Za-z0-9._/:-]+$ ]]; then
    problems+=("ONEBOX_DATA_DEVICE='${ONEBOX_DATA_DEVICE}' must be empty, auto, or a /dev path such as /dev/sdb")
  fi
  if [[ ! "${ONEBOX_SWAP_MB}" =~ ^[0-9]{1,6}$ ]] || ((10#${ONEBOX_SWAP_MB} > 65536)); then
    problems+=("ONEBOX_SWAP_MB='${ONEBOX_SWAP_MB}' must be a whole number of MiB between 0 and 65536")
  fi
  local ssh_port=22
  if is_port "${ONEBOX_SSH_PORT}"; then
    ssh_port=$((10#${ONEBOX_SSH_PORT}))
  else
    problems+=("ONEBOX_SSH_PORT='${ONEBOX_SSH_PORT}' must be a port between 1 and 65535")
  fi

  if [[ -z "${ONEBOX_SSH_ALLOWED_CIDRS// /}" ]]; then
    problems+=("ONEBOX_SSH_ALLOWED_CIDRS is empty; list the admin networks, e.g. \"203.0.113.7/32\", or set it to any")
  elif [[ " ${ONEBOX_SSH_ALLOWED_CIDRS} " == *" any "* ]]; then
    [[ "$(words_of "${ONEBOX_SSH_ALLOWED_CIDRS}")" == "any" ]] \
      || problems+=("ONEBOX_SSH_ALLOWED_CIDRS: 'any' cannot be combined with CIDRs")
  else
    for word in ${ONEBOX_SSH_ALLOWED_CIDRS}; do
      if ! cidr_family "${word}" >/dev/null; then
        problems+=("ONEBOX_SSH_ALLOWED_CIDRS: '${word}' is not a CIDR, e.g. 203.0.113.7/32 or 2001:db8::/48")
      elif is_everything "${word}"; then
        problems+=("ONEBOX_SSH_ALLOWED_CIDRS: '${word}' is the whole address space; write any instead")
      fi
    done
  fi
  for word in ${ONEBOX_PUBLIC_TCP_PORTS}; do
    if ! is_port "${word}"; then
      problems+=("ONEBOX_PUBLIC_TCP_PORTS: '${word}' is not a port between 1 and 65535")
    elif ((10#${word} == ssh_port)); then
      problems+=("ONEBOX_PUBLIC_TCP_PORTS contains the SSH port ${word}; SSH access is set by ONEBOX_SSH_ALLOWED_CIDRS (use any to open it)")
    fi
  done
  for pair in ${ONEBOX_RESTRICTED_PORTS}; do
    port="${pair%%:*}"
    cidr="${pair#*:}"
    if [[ "${pair}" != *:* ]] || ! is_port "${port}" || ! cidr_family "${cidr}" >/dev/null; then
      problems+=("ONEBOX_RESTRICTED_PORTS: '${pair}' must be port:cidr, e.g. 5432:198.51.100.0/24")
    elif is_everything "${cidr}"; then
      problems+=("ONEBOX_RESTRICTED_PORTS: '${pair}' opens the port to everyone; list it in ONEBOX_PUBLIC_TCP_PORTS instead")
    elif ((10#${port} == ssh_port)); then
      problems+=("ONEBOX_RESTRICTED_PORTS: '${pair}' is the SSH port; use ONEBOX_SSH_ALLOWED_CIDRS")
    fi
  done
  case "${ONEBOX_DOCKER_SOURCE}" in
    auto | distro | docker) ;;
    *) problems+=("ONEBOX_DOCKER_SOURCE='${ONEBOX_DOCKER_SOURCE}' must be auto, distro or docker") ;;
  esac

  if ((${#problems[@]} > 0)); then
    printf '[bootstrap] ERROR: invalid settings:\n' >&2
    printf '  - %s\n' "${problems[@]}" >&2
    exit 2
  fi
}

# has_line TEXT GREP_ARGS...: grep -q on captured output. Never `producer | grep -q` under
# pipefail: grep exits at the first match, the producer dies of SIGPIPE and the pipeline fails.
has_line() {
  local text="$1"
  shift
  grep -q "$@" <<<"${text}"
}

# Normalises whitespace: "  a   b " -> "a b".
words_of() {
  local -a w
  read -ra w <<<"$1"
  printf '%s' "${w[*]}"
}

# ---------------------------------------------------------------------------- rendering

# render_template FILE [KEY=VALUE...]: the shipped FILE with every @KEY@ replaced.
render_template() {
  local file="${SELF_DIR}/$1" content kv
  shift
  [[ -r "${file}" ]] || die "${file} is missing; ship it next to bootstrap.sh"
  content="$(<"${file}")"
  for kv in "$@"; do
    content="${content//"@${kv%%=*}@"/"${kv#*=}"}"
  done
  if [[ "${content}" =~ @[A-Z_]+@ ]]; then
    die "${file}: placeholder ${BASH_REMATCH[0]} was not filled in"
  fi
  printf '%s\n' "${content}"
}

render_sshd() {
  local permit=no
  [[ "${ONEBOX_ADMIN_CAN_ROOT}" == "true" ]] && permit=prohibit-password
  render_template sshd-hardening.conf "PERMIT_ROOT_LOGIN=${permit}"
}

render_jail() {
  render_template jail.local "SSH_PORT=$((10#${ONEBOX_SSH_PORT}))"
}

render_docker_data_dropin() {
  render_template docker-requires-data.conf "DATA_PATH=${ONEBOX_DATA_PATH%/}"
}

# The DOCKER-USER block for one address family (4 -> after.rules, 6 -> after6.rules).
render_docker_user_block() {
  local family="$1" port pair cidr
  local -a rules=()
  for port in ${ONEBOX_PUBLIC_TCP_PORTS}; do
    rules+=("-A DOCKER-USER -p tcp -m conntrack --ctorigdstport $((10#${port})) --ctdir ORIGINAL -j RETURN")
  done
  for pair in ${ONEBOX_RESTRICTED_PORTS}; do
    port="${pair%%:*}"
    cidr="${pair#*:}"
    [[ "$(cidr_family "${cidr}")" == "${family}" ]] || continue
    rules+=("-A DOCKER-USER -s $(canonical_cidr "${cidr}") -p tcp -m conntrack --ctorigdstport $((10#${port})) --ctdir ORIGINAL -j RETURN")
  done
  ((${#rules[@]} > 0)) || rules=("# (no port is open to the outside: every published port is dropped)")
  local joined
  joined="$(printf '%s\n' "${rules[@]}")"
  local before_input=ufw-before-input
  [[ "${family}" == 6 ]] && before_input=ufw6-before-input
  render_template after.rules.snippet "ONEBOX_ALLOW_RULES=${joined}" "ONEBOX_UFW_BEFORE_INPUT=${before_input}"
}

# The ufw rules onebox manages, one per line, exactly as `ufw show added` prints them.
render_ufw_rules() {
  local word pair port cidr ssh_port=$((10#${ONEBOX_SSH_PORT}))
  {
  if [[ "$(words_of "${ONEBOX_SSH_ALLOWED_CIDRS}")" == "any" ]]; then
    printf "ufw allow %s/tcp comment 'onebox ssh'\n" "${ssh_port}"
  else
    for word in ${ONEBOX_SSH_ALLOWED_CIDRS}; do
      printf "ufw allow from %s to any port %s proto tcp comment 'onebox ssh'\n" "$(canonical_cidr "${word}")" "${ssh_port}"
    done
  fi
  for word in ${ONEBOX_PUBLIC_TCP_PORTS}; do
    printf "ufw allow %s/tcp comment 'onebox public'\n" "$((10#${word}))"
  done
  for pair in ${ONEBOX_RESTRICTED_PORTS}; do
    port="${pair%%:*}"
    cidr="${pair#*:}"
    printf "ufw allow from %s to any port %s proto tcp comment 'onebox restricted'\n" "$(canonical_cidr "${cidr}")" "$((10#${port}))"
  done
  } | awk '!seen[$0]++'
}

# ---------------------------------------------------------------------------- helpers

# converge_file SRC DEST MODE: make DEST (root-owned, MODE) a copy of SRC, atomically.
# Sets CHANGED=1 when it changed anything, else 0.
converge_file() {
  local src="$1" dest="$2" mode="$3" tmp
  CHANGED=0
  if [[ -f "${dest}" && ! -L "${dest}" ]] && cmp -s "${src}" "${dest}"; then
    if [[ "$(stat -c '%a %u %g' "${dest}")" != "${mode#0} 0 0" ]]; then
      chown 0:0 "${dest}"
      chmod "${mode}" "${dest}"
      CHANGED=1
    fi
    return 0
  fi
  mkdir -p "$(dirname "${dest}")"
  tmp="$(mktemp "$(dirname "${dest}")/.onebox.XXXXXX")"
  cat "${src}" >"${tmp}"
  chown 0:0 "${tmp}"
  chmod "${mode}" "${tmp}"
  mv -f "${tmp}" "${dest}"
  CHANGED=1
}

# ensure_dir PATH MODE: a root-owned directory with MODE.
ensure_dir() {
  local path="$1" mode="$2"
  if [[ ! -d "${path}" ]]; then
    install -d -m "${mode}" -o root -g root "${path}"
    changed "created ${path} (${mode})"
  elif [[ "$(stat -c '%a %u %g' "${path}")" != "${mode#0} 0 0" ]]; then
    chown root:root "${path}"
    chmod "${mode}" "${path}"
    changed "set ${path} to root:root ${mode}"
  fi
}

# Every apt call waits for the dpkg lock instead of failing (H1) and never prompts.
apt_get() {
  apt-get -q -y -o "DPkg::Lock::Timeout=${APT_LOCK_TIMEOUT}" \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"
}

# apt-get update, retried (bounded) for a busy lists lock or a flaky mirror.
apt_update() {
  local attempt logf="${SCRATCH}/apt-update.log"
  for attempt in 1 2 3 4 5; do
    if apt_get update >"${logf}" 2>&1; then
      return 0
    fi
    warn "apt-get update failed (attempt ${attempt}/5); retrying in 10 s"
    tail -n 5 "${logf}" >&2
    sleep 10
  done
  die "apt-get update kept failing; see the messages above"
}

pkg_installed() {
  [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" == "installed" ]]
}

# install_packages PKG...: installs the missing ones (one apt-get update + install).
install_packages() {
  local pkg logf="${SCRATCH}/apt-install.log"
  local -a missing=()
  for pkg in "$@"; do pkg_installed "${pkg}" || missing+=("${pkg}"); done
  if ((${#missing[@]} == 0)); then
    ok "packages present: $*"
    return 0
  fi
  log "installing ${missing[*]}"
  apt_update
  if ! apt_get install --no-install-recommends "${missing[@]}" >"${logf}" 2>&1; then
    tail -n 30 "${logf}" >&2
    die "apt-get install ${missing[*]} failed"
  fi
  changed "installed packages: ${missing[*]}"
}

in_container() { systemd-detect-virt --container --quiet 2>/dev/null; }

unit_exists() { [[ -n "$(systemctl list-unit-files --no-legend "$1" 2>/dev/null)" ]]; }

ssh_unit() {
  if unit_exists ssh.service; then echo ssh; else echo sshd; fi
}

# ---------------------------------------------------------------------------- H1 + OS

detect_os() {
  [[ -r /etc/os-release ]] || die "/etc/os-release is missing; supported: Ubuntu 22.04/24.04, Debian 12/13"
  OS_ID="$(. /etc/os-release && echo "${ID:-}")"
  OS_VERSION="$(. /etc/os-release && echo "${VERSION_ID:-}")"
  OS_CODENAME="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
  case "${OS_ID}:${OS_VERSION}" in
    ubuntu:22.04 | ubuntu:24.04 | debian:12 | debian:13) log "OS: ${OS_ID} ${OS_VERSION} (${OS_CODENAME})" ;;
    *) die "unsupported OS '${OS_ID} ${OS_VERSION}'; supported: Ubuntu 22.04/24.04, Debian 12/13" ;;
  esac
}

# H1: first-boot package work (cloud-init's own apt runs, user creation) must finish first.
wait_for_cloud_init() {
  section "H1 cloud-init"
  if ! command -v cloud-init >/dev/null 2>&1; then
    ok "no cloud-init on this host; nothing to wait for"
    return 0
  fi
  local rc=0
  log "waiting (at most ${CLOUD_INIT_TIMEOUT} s) for cloud-init to finish"
  timeout "${CLOUD_INIT_TIMEOUT}" cloud-init status --wait >/dev/null 2>&1 || rc=$?
  case "${rc}" in
    0) ok "cloud-init finished" ;;
    2) warn "cloud-init finished with recoverable errors (cloud-init status --long); continuing" ;;
    124) die "cloud-init still running after ${CLOUD_INIT_TIMEOUT} s; check cloud-init status --long and /var/log/cloud-init-output.log" ;;
    *) warn "cloud-init reported a failure (exit ${rc}; cloud-init status --long); continuing" ;;
  esac
}

# ---------------------------------------------------------------------------- layout

configure_layout() {
  section "directories"
  ensure_dir /etc/onebox 0700
  ensure_dir /srv/onebox 0755
  ensure_dir /srv/onebox/releases 0755
  ensure_dir /var/lib/onebox 0755
  ensure_dir /var/lib/onebox/status 0755
  ensure_dir /var/lib/onebox/backup 0700
  ok "directory layout in place"
}

# ---------------------------------------------------------------------------- data volume

# Reads `lsblk -P -p -o NAME,TYPE,FSTYPE,LABEL,MOUNTPOINT,PKNAME,RO` on stdin and prints
# the whole disks that could be the data disk: not ROOT_DISK, not loop/zram/ram/optical,
# writable, without partitions or mount, and either without a filesystem or with the
# onebox data label. (The caller re-checks each with blkid: lsblk's FSTYPE comes from udev.)
select_data_disks() {
  local root_disk="$1" line name type fstype label mountpoint pkname ro
  local -a names=() types=() fstypes=() labels=() mounts=() ros=() parents=()
  while IFS= read -r line; do
    [[ -n "${line}" ]] || continue
    name="" type="" fstype="" label="" mountpoint="" pkname="" ro=""
    [[ "${line}" =~ (^|[[:space:]])NAME=\"([^\"]*)\" ]] && name="${BASH_REMATCH[2]}"
    [[ "${line}" =~ (^|[[:space:]])TYPE=\"([^\"]*)\" ]] && type="${BASH_REMATCH[2]}"
    [[ "${line}" =~ (^|[[:space:]])FSTYPE=\"([^\"]*)\" ]] && fstype="${BASH_REMATCH[2]}"
    [[ "${line}" =~ (^|[[:space:]])LABEL=\"([^\"]*)\" ]] && label="${BASH_REMATCH[2]}"
    [[ "${line}" =~ (^|[[:space:]])MOUNTPOINT=\"([^\"]*)\" ]] && mountpoint="${BASH_REMATCH[2]}"
    [[ "${line}" =~ (^|[[:space:]])PKNAME=\"([^\"]*)\" ]] && pkname="${BASH_REMATCH[2]}"
    [[ "${line}" =~ (^|[[:space:]])RO=\"([^\"]*)\" ]] && ro="${BASH_REMATCH[2]}"
    names+=("${name}") types+=("${type}") fstypes+=("${fstype}") labels+=("${label}") mounts+=("${mountpoint}")
    ros+=("${ro}") parents+=("${pkname}")
  done
  local i j has_child
  for i in "${!names[@]}"; do
    name="${names[i]}"
    [[ "${types[i]}" == "disk" ]] || continue
    [[ "${name}" != "${root_disk}" ]] || continue
    [[ ! "${name}" =~ ^/dev/(loop|zram|ram|sr|fd) ]] || continue
    [[ "${ros[i]}" != "1" && -z "${mounts[i]}" ]] || continue
    [[ -z "${fstypes[i]}" || "${labels[i]}" == "${DATA_LABEL}" ]] || continue
    has_child=0
    for j in "${!names[@]}"; do
      [[ "${parents[j]}" == "${name}" ]] && { has_child=1; break; }
    done
    ((has_child == 0)) && printf '%s\n' "${name}"
  done
  return 0
}

root_disk() {
  local src
  src="$(findmnt -nvo SOURCE / 2>/dev/null || true)"
  [[ "${src}" == /dev/* ]] || return 0
  lsblk -npo PKNAME "${src}" 2>/dev/null | awk 'NF { print; exit }' || true
}

# Resolves ONEBOX_DATA_DEVICE=auto to exactly one device (in AUTO_DEVICE; not printed, so
# that die stops the bootstrap itself rather than a subshell), or fails. A disk that
# already holds a onebox data filesystem (a replaced server's) wins over blank disks.
AUTO_DEVICE=""
find_auto_data_disk() {
  local root cand fstype pttype label
  local -a blank=() labelled=()
  root="$(root_disk)"
  while IFS= read -r cand; do
    [[ -b "${cand}" ]] || continue
    fstype="$(blkid -p -o value -s TYPE "${cand}" 2>/dev/null || true)"
    pttype="$(blkid -p -o value -s PTTYPE "${cand}" 2>/dev/null || true)"
    label="$(blkid -p -o value -s LABEL "${cand}" 2>/dev/null || true)"
    if [[ -z "${fstype}" && -z "${pttype}" ]]; then
      blank+=("${cand}")
    elif [[ -n "${fstype}" && "${label}" == "${DATA_LABEL}" ]]; then
      labelled+=("${cand}")
    fi
  done < <(lsblk -P -p -o NAME,TYPE,FSTYPE,LABEL,MOUNTPOINT,PKNAME,RO | select_data_disks "${root}")
  if ((${#labelled[@]} == 1)); then
    AUTO_DEVICE="${labelled[0]}"
  elif ((${#labelled[@]} > 1)); then
    die "ONEBOX_DATA_DEVICE=auto: ${#labelled[@]} disks carry a ${DATA_LABEL} filesystem (${labelled[*]}); set ONEBOX_DATA_DEVICE to the one to use"
  elif ((${#blank[@]} == 1)); then
    AUTO_DEVICE="${blank[0]}"
  elif ((${#blank[@]} == 0)); then
    die "ONEBOX_DATA_DEVICE=auto: no unmounted disk other than the root disk ${root:-?} that is blank or carries a ${DATA_LABEL} filesystem (lsblk -p -f). Attach the volume, or set ONEBOX_DATA_DEVICE to its /dev path"
  else
    die "ONEBOX_DATA_DEVICE=auto: ${#blank[@]} blank disks (${blank[*]}); set ONEBOX_DATA_DEVICE to the one to use"
  fi
}

# Nitro-based instances (Lightsail, EC2) expose an EBS disk attached as /dev/xvdf or /dev/sdf
# as an NVMe device (/dev/nvme1n1): such a name that does not exist is looked up like auto.
is_missing_ebs_name() {
  [[ "$1" =~ ^/dev/(xvd|sd)[a-z]+$ && ! -e "$1" ]] || return 1
  [[ -n "$(find /sys/block -maxdepth 1 -name 'nvme*' -print -quit 2>/dev/null)" ]]
}

# Mount source of DATA_PATH according to /etc/fstab ("" when not listed).
fstab_source_for() {
  awk -v mp="$1" '$1 !~ /^#/ && NF >= 2 && $2 == mp { print $1; exit }' /etc/fstab 2>/dev/null || true
}

configure_data_volume() {
  section "data volume"
  local path="${ONEBOX_DATA_PATH%/}" device="${ONEBOX_DATA_DEVICE}"
  if [[ -z "${device}" ]]; then
    ensure_dir "${path}" 0755
    ok "no data device configured; ${path} is a directory on the root filesystem"
    remove_docker_data_dropin
    return 0
  fi

  if is_missing_ebs_name "${device}"; then
    warn "ONEBOX_DATA_DEVICE=${device} does not exist here (Nitro instances show attached disks as NVMe); looking for it as with auto"
    device=auto
  fi
  local mounted_src
  mounted_src="$(findmnt -n -o SOURCE --mountpoint "${path}" 2>/dev/null || true)"
  if [[ "${device}" == "auto" ]]; then
    if [[ -n "${mounted_src}" ]]; then
      ok "${path} is mounted from ${mounted_src}"
      install_docker_data_dropin
      return 0
    fi
    if [[ -n "$(fstab_source_for "${path}")" ]]; then
      log "${path} is in /etc/fstab; mounting it"
      mkdir -p "${path}"
      mount "${path}" || die "mount ${path} (from /etc/fstab) failed; is the volume attached?"
      changed "mounted ${path}"
      install_docker_data_dropin
      return 0
    fi
    find_auto_data_disk
    device="${AUTO_DEVICE}"
    log "ONEBOX_DATA_DEVICE=auto selected ${device}"
  fi

  [[ -b "${device}" ]] || die "ONEBOX_DATA_DEVICE=${device} is not a block device on this host (lsblk -p lists the disks)"
  local real
  real="$(readlink -f "${device}")"

  local fstype pttype uuid
  fstype="$(blkid -p -o value -s TYPE "${real}" 2>/dev/null || true)"
  pttype="$(blkid -p -o value -s PTTYPE "${real}" 2>/dev/null || true)"
  if [[ -z "${fstype}" && -n "${pttype}" ]]; then
    die "${device} has a ${pttype} partition table; point ONEBOX_DATA_DEVICE at the partition (e.g. ${device}1)"
  fi
  if [[ -z "${fstype}" ]]; then
    if [[ -n "$(wipefs -n "${real}" 2>/dev/null | tail -n +2)" ]]; then
      die "${device} carries signatures (wipefs -n ${device}); refusing to format it"
    fi
    log "formatting ${device} as ext4 (it has no filesystem)"
    mkfs.ext4 -q -L "${DATA_LABEL}" "${real}"
    fstype=ext4
    changed "formatted ${device} as ext4"
  else
    ok "${device} already has a ${fstype} filesystem (never reformatted)"
  fi
  uuid="$(blkid -p -o value -s UUID "${real}")"
  [[ -n "${uuid}" ]] || die "could not read the filesystem UUID of ${device} (blkid -p ${device})"

  # /etc/fstab: one line for this volume, by UUID, nofail (a missing volume must not stop the boot).
  local want="UUID=${uuid} ${path} ${fstype} defaults,nofail 0 2" listed
  listed="$(fstab_source_for "${path}")"
  if [[ -z "${listed}" ]]; then
    if awk -v u="UUID=${uuid}" '$1 == u { found = 1 } END { exit !found }' /etc/fstab 2>/dev/null; then
      die "/etc/fstab already mounts UUID=${uuid} elsewhere; remove that line or set ONEBOX_DATA_PATH to its mount point"
    fi
    printf '%s\n' "${want}" >>/etc/fstab
    systemctl daemon-reload
    changed "added to /etc/fstab: ${want}"
  elif [[ "${listed}" == "UUID=${uuid}" || "$(readlink -f "${listed}" 2>/dev/null)" == "${real}" ]]; then
    ok "/etc/fstab mounts ${device} at ${path}"
  else
    die "/etc/fstab mounts ${listed} at ${path}, not ${device}; fix /etc/fstab or the settings"
  fi

  local other
  other="$(findmnt -rn -o TARGET --source "${real}" 2>/dev/null | awk -v p="${path}" '$0 != p { print; exit }' || true)"
  [[ -z "${other}" ]] || die "${device} is also mounted at ${other}; unmount it there (and remove its fstab line) first"
  if [[ -n "${mounted_src}" ]]; then
    [[ "$(readlink -f "${mounted_src}")" == "${real}" ]] \
      || die "${path} is mounted from ${mounted_src}, not ${device}"
    ok "${path} is mounted from ${device}"
  else
    mkdir -p "${path}"
    if [[ -n "$(find "${path}" -mindepth 1 -maxdepth 1 -print -quit)" ]]; then
      die "${path} is not empty; mounting ${device} over it would hide its files. Move them away first"
    fi
    mount "${path}"
    changed "mounted ${device} at ${path}"
  fi
  install_docker_data_dropin
}

install_docker_data_dropin() {
  render_docker_data_dropin >"${SCRATCH}/docker-data.conf"
  converge_file "${SCRATCH}/docker-data.conf" "${DOCKER_DATA_DROPIN}" 0644
  if ((CHANGED)); then
    systemctl daemon-reload
    changed "docker.service now requires the ${ONEBOX_DATA_PATH} mount (${DOCKER_DATA_DROPIN})"
  fi
}

remove_docker_data_dropin() {
  if [[ -e "${DOCKER_DATA_DROPIN}" ]]; then
    rm -f "${DOCKER_DATA_DROPIN}"
    systemctl daemon-reload
    changed "removed ${DOCKER_DATA_DROPIN} (no data device configured)"
  fi
}

# ---------------------------------------------------------------------------- swap + sysctl

configure_swap() {
  section "swap"
  local mb=$((10#${ONEBOX_SWAP_MB})) active
  if ((mb == 0)); then
    ok "ONEBOX_SWAP_MB=0: no swap file managed"
    return 0
  fi
  active="$(swapon --show=NAME --noheadings 2>/dev/null || true)"
  if [[ -n "${active}" ]]; then
    ok "swap already active ($(words_of "${active}")); not adding a swap file"
    if grep -qxF "${SWAP_FILE}" <<<"${active}" && ! grep -qE "^${SWAP_FILE}[[:space:]]" /etc/fstab; then
      printf '%s none swap sw 0 0\n' "${SWAP_FILE}" >>/etc/fstab
      changed "added ${SWAP_FILE} to /etc/fstab"
    fi
    return 0
  fi
  if in_container; then
    # Swap is a kernel-wide resource: a container must not add swap to its host.
    warn "running in a container: not creating ${SWAP_FILE} (swap belongs to the host kernel)"
    return 0
  fi
  local want_bytes=$((mb * 1024 * 1024))
  if [[ ! -f "${SWAP_FILE}" || "$(stat -c %s "${SWAP_FILE}")" != "${want_bytes}" \
    || "$(blkid -p -o value -s TYPE "${SWAP_FILE}" 2>/dev/null || true)" != "swap" ]]; then
    rm -f "${SWAP_FILE}"
    install -m 600 /dev/null "${SWAP_FILE}"
    fallocate -l "${mb}M" "${SWAP_FILE}" 2>/dev/null \
      || dd if=/dev/zero of="${SWAP_FILE}" bs=1M count="${mb}" status=none
    mkswap -q "${SWAP_FILE}" >/dev/null
  fi
  chmod 600 "${SWAP_FILE}"
  swapon "${SWAP_FILE}"
  grep -qE "^${SWAP_FILE}[[:space:]]" /etc/fstab || printf '%s none swap sw 0 0\n' "${SWAP_FILE}" >>/etc/fstab
  changed "created and enabled ${mb} MiB swap file ${SWAP_FILE}"
}

# key=value lines of the shipped sysctl file.
sysctl_wanted() {
  sed -n -E 's/^[[:space:]]*([a-z0-9_.]+)[[:space:]]*=[[:space:]]*(.*[^[:space:]])[[:space:]]*$/\1=\2/p' \
    "${SELF_DIR}/sysctl.conf"
}

sysctl_drift() {
  local kv key want have
  while IFS= read -r kv; do
    key="${kv%%=*}"
    want="${kv#*=}"
    have="$(sysctl -n "${key}" 2>/dev/null)" || have="(missing)"
    have="$(words_of "${have}")"
    [[ "${have}" == "${want}" ]] || printf '%s (want %s, have %s)\n' "${key}" "${want}" "${have:-?}"
  done < <(sysctl_wanted)
}

configure_sysctl() {
  section "sysctl"
  converge_file "${SELF_DIR}/sysctl.conf" "${SYSCTL_FILE}" 0644
  ((CHANGED)) && changed "wrote ${SYSCTL_FILE}"
  local drift
  drift="$(sysctl_drift)"
  if [[ -z "${drift}" ]]; then
    ok "kernel settings of ${SYSCTL_FILE} are live"
    return 0
  fi
  # sysctl --system exits non-zero when the kernel (or a container's read-only /proc/sys)
  # refuses any key: report those keys, don't fail the bootstrap for them.
  sysctl --system >"${SCRATCH}/sysctl.log" 2>&1 || true
  local still
  still="$(sysctl_drift)"
  if [[ "${still}" != "${drift}" ]]; then
    changed "applied kernel settings (sysctl --system)"
  fi
  if [[ -n "${still}" ]]; then
    local why="the kernel refused them"
    in_container && why="a container cannot set kernel-wide keys"
    warn "sysctl keys not applied (${why}):"
    printf '  - %s\n' "${still//$'\n'/$'\n'  - }" >&2
  fi
}

# ---------------------------------------------------------------------------- H7 + H2 Docker

# H7: daemon.json. Explained here because JSON has no comments:
# - log-driver json-file with max-size 10m / max-file 3: container logs rotate (30 MB per
#   container at most) instead of filling the disk.
# - live-restore: containers keep running while dockerd restarts (daemon.json changes,
#   unattended security updates of Docker).
# - no-new-privileges: processes in containers cannot gain privileges through setuid binaries.
# - userland-proxy false: published ports are served by iptables DNAT alone instead of one
#   docker-proxy process per port (memory on 1 GB hosts), so every connection to a published
#   port, hairpin ones included, goes through netfilter where DOCKER-USER applies the firewall
#   policy (H4), and containers see real client addresses. Docker then needs to set
#   net.ipv4.conf.<bridge>.route_localnet, i.e. a writable /proc/sys/net.
configure_docker_daemon() {
  section "H7 Docker daemon settings"
  if [[ -x /usr/bin/dockerd ]] && has_line "$(dockerd --help 2>&1 || true)" -- '--validate'; then
    dockerd --validate --config-file "${SELF_DIR}/daemon.json" >/dev/null \
      || die "${SELF_DIR}/daemon.json is rejected by dockerd --validate"
  fi
  converge_file "${SELF_DIR}/daemon.json" "${DAEMON_JSON}" 0644
  if ((CHANGED == 0)); then
    ok "${DAEMON_JSON} is current"
    return 0
  fi
  changed "wrote ${DAEMON_JSON}"
  if systemctl is-active --quiet docker.service 2>/dev/null; then
    log "restarting docker to apply ${DAEMON_JSON}"
    systemctl restart docker.service
    wait_for_docker
    changed "restarted docker with the new daemon settings"
  fi
}

wait_for_docker() {
  local i
  for ((i = 0; i < 60; i++)); do
    timeout 10 docker info >/dev/null 2>&1 && return 0
    sleep 1
  done
  journalctl -u docker.service --no-pager -n 15 >&2 || true
  die "docker did not come up within 60 s (journalctl -u docker)"
}

docker_works() {
  command -v docker >/dev/null 2>&1 && timeout 20 docker compose version >/dev/null 2>&1
}

# Distribution packages providing Docker and the compose v2 plugin on this release
# (empty when the release has no compose v2 package).
distro_docker_packages() {
  case "${OS_ID}:${OS_VERSION}" in
    debian:13) echo "docker.io docker-cli docker-compose" ;;
    ubuntu:24.04) echo "docker.io docker-compose-v2" ;;
    ubuntu:22.04)
      # jammy-updates carries docker-compose-v2 on current mirrors; used only with distro.
      apt-cache show docker-compose-v2 >/dev/null 2>&1 && echo "docker.io docker-compose-v2" ;;
    *) ;;
  esac
}

docker_source() {
  case "${ONEBOX_DOCKER_SOURCE}" in
    auto)
      case "${OS_ID}:${OS_VERSION}" in
        debian:13 | ubuntu:24.04) echo distro ;;
        *) echo docker ;;
      esac
      ;;
    *) echo "${ONEBOX_DOCKER_SOURCE}" ;;
  esac
}

# H2: Docker's repository with its key pinned by fingerprint and referenced with signed-by.
setup_docker_repository() {
  command -v gpg >/dev/null 2>&1 || install_packages gpg
  install -d -m 0755 /etc/apt/keyrings
  local key="${SCRATCH}/docker.asc" have_fpr=""
  if [[ -s "${DOCKER_KEYRING}" ]]; then
    have_fpr="$(key_fingerprints "${DOCKER_KEYRING}")"
  fi
  if [[ "${have_fpr}" != "${DOCKER_KEY_FPR}" ]]; then
    log "downloading Docker's apt signing key"
    curl -fsSL --proto '=https' --tlsv1.2 --retry 3 --max-time 60 \
      "https://download.docker.com/linux/${OS_ID}/gpg" -o "${key}"
    [[ "$(key_fingerprints "${key}")" == "${DOCKER_KEY_FPR}" ]] \
      || die "the key from download.docker.com does not have the expected fingerprint ${DOCKER_KEY_FPR}"
    converge_file "${key}" "${DOCKER_KEYRING}" 0644
    changed "installed Docker's signing key ${DOCKER_KEYRING} (fingerprint ${DOCKER_KEY_FPR})"
  else
    ok "Docker's signing key ${DOCKER_KEYRING} is present"
  fi
  local arch
  arch="$(dpkg --print-architecture)"
  printf 'deb [arch=%s signed-by=%s] https://download.docker.com/linux/%s %s stable\n' \
    "${arch}" "${DOCKER_KEYRING}" "${OS_ID}" "${OS_CODENAME}" >"${SCRATCH}/docker.list"
  converge_file "${SCRATCH}/docker.list" "${DOCKER_SOURCES}" 0644
  if ((CHANGED)); then
    changed "added Docker's apt repository ${DOCKER_SOURCES}"
  fi
}

key_fingerprints() {
  GNUPGHOME="${SCRATCH}/gnupg" gpg --batch --quiet --show-keys --with-colons "$1" 2>/dev/null \
    | awk -F: '$1 == "pub" { want = 1; next } want && $1 == "fpr" { print $10; exit }' || true
}

install_docker() {
  section "H2 Docker and compose v2 from signed apt repositories"
  if docker_works; then
    ok "$(docker --version) with $(docker compose version 2>/dev/null) is installed; source left as it is"
  else
    local source pkgs
    if pkg_installed docker-ce; then
      source=docker
    elif pkg_installed docker.io; then
      source=distro
    else
      source="$(docker_source)"
    fi
    if [[ "${source}" == "distro" ]]; then
      pkgs="$(distro_docker_packages)"
      if [[ -z "${pkgs}" ]] && pkg_installed docker.io; then
        # An existing distribution Docker (e.g. Debian 12's 20.10) without a compose v2
        # package: keep the engine, add only Docker's compose plugin from its signed repository.
        mkdir -p "${SCRATCH}/gnupg" && chmod 700 "${SCRATCH}/gnupg"
        setup_docker_repository
        pkgs="docker-compose-plugin"
      fi
      [[ -n "${pkgs}" ]] || die "${OS_ID} ${OS_VERSION} has no distribution package with the compose v2 plugin; set ONEBOX_DOCKER_SOURCE=docker (or auto)"
      log "Docker from the distribution: ${pkgs}"
    else
      mkdir -p "${SCRATCH}/gnupg" && chmod 700 "${SCRATCH}/gnupg"
      setup_docker_repository
      pkgs="docker-ce docker-ce-cli containerd.io docker-compose-plugin"
      log "Docker from download.docker.com: ${pkgs}"
    fi
    local -a pkg_list
    read -ra pkg_list <<<"${pkgs}"
    install_packages "${pkg_list[@]}"
  fi
  if ! systemctl is-enabled --quiet docker.service 2>/dev/null || ! systemctl is-active --quiet docker.service; then
    systemctl enable --now docker.service >/dev/null 2>&1 || true
    changed "enabled and started docker.service"
  fi
  wait_for_docker
  docker compose version >/dev/null 2>&1 || die "docker compose version fails after the installation"
  ok "$(docker compose version) (docker $(docker version --format '{{.Server.Version}}'))"
  report_docker_group
}

in_docker_group() {
  local groups
  groups=" $(id -nG "${ONEBOX_DEPLOY_USER}" 2>/dev/null || true) "
  [[ "${groups}" == *" docker "* ]]
}

# Membership in the docker group is root-equivalent (docker run -v /:/host). The onebox
# steps run docker through sudo over the deploy key instead, so the deploy user is NOT
# added; an existing membership is reported and left alone.
report_docker_group() {
  if in_docker_group; then
    warn "${ONEBOX_DEPLOY_USER} is in the docker group (root-equivalent); left as found. Remove with: gpasswd -d ${ONEBOX_DEPLOY_USER} docker"
  else
    ok "${ONEBOX_DEPLOY_USER} is not in the docker group (docker runs through sudo)"
  fi
}

# ---------------------------------------------------------------------------- H3 sshd

# sshd -T keyword/value pairs the drop-in must produce.
sshd_wanted() {
  render_sshd | awk '!/^[[:space:]]*(#|$)/ { print tolower($1) " " $2 }'
}

# Prints mismatches between `sshd -T` and the wanted values ("" when all match).
sshd_effective_mismatches() {
  local effective key want have
  effective="$(sshd -T 2>/dev/null)" || { echo "sshd -T failed"; return 0; }
  while read -r key want; do
    have="$(awk -v k="${key}" '$1 == k { print $2; exit }' <<<"${effective}")"
    # sshd -T prints prohibit-password under its old name.
    [[ "${have}" == "without-password" ]] && have="prohibit-password"
    [[ "${have}" == "${want}" ]] || printf '%s: want %s, sshd -T says %s\n' "${key}" "${want}" "${have:-nothing}"
  done < <(sshd_wanted)
}

# Never lock the deploy user out: it must exist and have an authorized key.
check_deploy_login() {
  local user="${ONEBOX_DEPLOY_USER}" home files f
  home="$(getent passwd "${user}" | cut -d: -f6)" \
    || die "ONEBOX_DEPLOY_USER=${user} does not exist; disabling password logins would lock it out"
  files="$(sshd -T -C "user=${user},host=localhost,addr=127.0.0.1" 2>/dev/null \
    | awk '$1 == "authorizedkeysfile" { $1 = ""; print }')" || true
  files="$(words_of "${files}")"
  [[ -n "${files}" ]] || files=".ssh/authorized_keys .ssh/authorized_keys2"
  for f in ${files}; do
    f="${f//%h/${home}}"
    f="${f//%u/${user}}"
    f="${f//%%/%}"
    [[ "${f}" == /* ]] || f="${home}/${f}"
    if [[ -s "${f}" ]] && grep -qE '^[^#]*(ssh-|ecdsa-|sk-)' "${f}"; then
      ok "${user} has an authorized key (${f})"
      return 0
    fi
  done
  if has_line "$(sshd -T 2>/dev/null || true)" -E '^authorizedkeyscommand [^n]'; then
    warn "${user} has no authorized_keys file; relying on sshd's AuthorizedKeysCommand"
    return 0
  fi
  die "${user} has no authorized SSH key (${files}); turning passwords off would lock it out"
}

ensure_sshd_include() {
  if grep -qE '^[[:space:]]*Include[[:space:]]+/etc/ssh/sshd_config\.d/\*\.conf' "${SSHD_CONFIG}"; then
    return 0
  fi
  cp -p "${SSHD_CONFIG}" "${SCRATCH}/sshd_config.before"
  { printf '# Added by onebox: drop-ins first (sshd keeps the first value of each keyword).\n%s\n\n' "${SSHD_INCLUDE}"
    cat "${SCRATCH}/sshd_config.before"; } >"${SCRATCH}/sshd_config.new"
  converge_file "${SCRATCH}/sshd_config.new" "${SSHD_CONFIG}" 0644
  changed "added '${SSHD_INCLUDE}' at the top of ${SSHD_CONFIG}"
}

configure_sshd() {
  section "H3 SSH hardening"
  command -v sshd >/dev/null 2>&1 || die "sshd is not installed"
  mkdir -p /run/sshd # privilege separation directory `sshd -t` needs (socket-activated hosts)
  check_deploy_login
  local had_dropin=0
  [[ -f "${SSHD_DROPIN}" ]] && { had_dropin=1; cp -p "${SSHD_DROPIN}" "${SCRATCH}/sshd-dropin.before"; }
  ensure_sshd_include
  local include_changed=0
  [[ -f "${SCRATCH}/sshd_config.before" ]] && include_changed=1
  render_sshd >"${SCRATCH}/sshd-dropin"
  converge_file "${SCRATCH}/sshd-dropin" "${SSHD_DROPIN}" 0644
  local dropin_changed="${CHANGED}"
  if ((dropin_changed || include_changed)); then
    # Validate BEFORE reloading; roll back on error so the running sshd never sees it.
    if ! sshd -t 2>"${SCRATCH}/sshd-t.log"; then
      if ((had_dropin)); then cp -p "${SCRATCH}/sshd-dropin.before" "${SSHD_DROPIN}"; else rm -f "${SSHD_DROPIN}"; fi
      ((include_changed)) && cp -p "${SCRATCH}/sshd_config.before" "${SSHD_CONFIG}"
      cat "${SCRATCH}/sshd-t.log" >&2
      die "sshd -t rejected the new configuration; rolled back ${SSHD_DROPIN}"
    fi
    ((dropin_changed)) && changed "wrote ${SSHD_DROPIN}"
    local unit
    unit="$(ssh_unit)"
    # reload (SIGHUP) re-reads the configuration; existing sessions, this one included, stay.
    if systemctl is-active --quiet "${unit}.service"; then
      systemctl reload "${unit}.service"
      changed "reloaded ${unit}.service"
    else
      log "${unit}.service is not running (socket activation?); it reads the new configuration at its next start"
    fi
  else
    ok "${SSHD_DROPIN} is current"
  fi
  local mismatches
  mismatches="$(sshd_effective_mismatches)"
  [[ -z "${mismatches}" ]] || die "sshd's effective configuration does not match ${SSHD_DROPIN}: ${mismatches//$'\n'/; }. An earlier directive wins (check ${SSHD_CONFIG} before its Include line)"
  ok "sshd -T matches the hardening ($(sshd_wanted | tr '\n' ',' | sed 's/,$//; s/,/, /g'))"
  has_line "$(sshd -T 2>/dev/null | awk '$1 == "port" { print $2 }' || true)" -x "$((10#${ONEBOX_SSH_PORT}))" \
    || die "sshd does not listen on ONEBOX_SSH_PORT=${ONEBOX_SSH_PORT} (sshd -T | grep ^port); the firewall would lock SSH out"
}

# ---------------------------------------------------------------------------- H4 ufw

ip4_to_int() {
  local IFS=.
  local -a o
  read -ra o <<<"$1"
  echo $(((10#${o[0]} << 24) | (10#${o[1]} << 16) | (10#${o[2]} << 8) | 10#${o[3]}))
}

ip4_in_cidr() {
  local ip net bits="${2#*/}" mask
  [[ "$2" == */* ]] || bits=32
  ip="$(ip4_to_int "$1")"
  net="$(ip4_to_int "${2%/*}")"
  ((bits == 0)) && return 0
  mask=$(((0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF))
  (((ip & mask) == (net & mask)))
}

# The current SSH session must stay allowed, or the next provisioning run is locked out.
check_own_session_allowed() {
  local session="${SSH_CONNECTION:-}" cidr client
  client="${session%% *}"
  if [[ -z "${session}" ]]; then
    log "not started over SSH (or sudo reset SSH_CONNECTION); skipping the own-session check"
    return 0
  fi
  [[ "$(words_of "${ONEBOX_SSH_ALLOWED_CIDRS}")" == "any" ]] && return 0
  if ! is_ipv4 "${client}"; then
    warn "this session comes from ${client}; make sure ONEBOX_SSH_ALLOWED_CIDRS covers it"
    return 0
  fi
  [[ "${client}" == 127.* ]] && return 0
  for cidr in ${ONEBOX_SSH_ALLOWED_CIDRS}; do
    [[ "$(cidr_family "${cidr}")" == "4" ]] && ip4_in_cidr "${client}" "${cidr}" && return 0
  done
  die "this SSH session comes from ${client}, which ONEBOX_SSH_ALLOWED_CIDRS (${ONEBOX_SSH_ALLOWED_CIDRS}) does not allow; the next connection would be refused. Add it or fix the setting"
}

# `ufw show added` lines (rules in the user tables), one per line.
ufw_added() {
  ufw show added 2>/dev/null | grep '^ufw ' || true
}

# Replace the onebox block in a ufw rules file with the rendered one.
converge_rules_block() {
  local file="$1" block="$2" out="${SCRATCH}/rules.new"
  [[ -f "${file}" ]] || die "${file} is missing; is ufw installed?"
  awk -v b="${BLOCK_BEGIN}" -v e="${BLOCK_END}" '
    $0 == b { skip = 1; next }
    $0 == e { skip = 0; next }
    !skip { lines[++n] = $0 }
    END { while (n > 0 && lines[n] ~ /^[[:space:]]*$/) n--; for (i = 1; i <= n; i++) print lines[i] }
  ' "${file}" >"${out}"
  printf '\n' >>"${out}"
  cat "${block}" >>"${out}"
  cp -p "${file}" "${SCRATCH}/$(basename "${file}").before"
  converge_file "${out}" "${file}" "0$(stat -c %a "${file}")"
}

configure_ufw() {
  section "H4 firewall (ufw + DOCKER-USER)"
  check_own_session_allowed

  local line rule comment
  local -a words
  # Defaults: deny incoming, allow outgoing, deny routed (Docker's own forwarding rules
  # come before ufw's in FORWARD; DOCKER-USER below filters what reaches containers).
  local -A defaults=([incoming]=deny [outgoing]=allow [routed]=deny)
  local -A policy_key=([incoming]=DEFAULT_INPUT_POLICY [outgoing]=DEFAULT_OUTPUT_POLICY [routed]=DEFAULT_FORWARD_POLICY)
  local -A policy_val=([deny]=DROP [allow]=ACCEPT)
  local dir
  for dir in incoming outgoing routed; do
    if ! grep -qx "${policy_key[${dir}]}=\"${policy_val[${defaults[${dir}]}]}\"" /etc/default/ufw; then
      ufw default "${defaults[${dir}]}" "${dir}" </dev/null >/dev/null
      changed "ufw default ${defaults[${dir}]} ${dir}"
    fi
  done

  # Rules: add the missing onebox rules, delete onebox rules no longer wanted.
  local wanted current
  wanted="$(render_ufw_rules)"
  current="$(ufw_added)"
  while IFS= read -r line; do
    [[ -n "${line}" ]] || continue
    grep -qxF -- "${line}" <<<"${current}" && continue
    [[ "${line}" =~ ^ufw\ (.*)\ comment\ \'(.*)\'$ ]] || die "internal: cannot parse ${line}"
    rule="${BASH_REMATCH[1]}"
    comment="${BASH_REMATCH[2]}"
    read -ra words <<<"${rule}"
    # stdin from /dev/null: ufw must not read the rule list this loop is reading.
    ufw "${words[@]}" comment "${comment}" </dev/null >/dev/null
    changed "${line}"
  done <<<"${wanted}"
  while IFS= read -r line; do
    [[ -n "${line}" ]] || continue
    grep -qxF -- "${line}" <<<"${wanted}" && continue
    if [[ "${line}" =~ ^ufw\ (.*)\ comment\ \'onebox[^\']*\'$ ]]; then
      read -ra words <<<"${BASH_REMATCH[1]}"
      ufw delete "${words[@]}" </dev/null >/dev/null
      changed "removed stale rule: ${line}"
    else
      warn "ufw rule not managed by onebox left in place: ${line} (ufw delete ...)"
    fi
  done <<<"${current}"

  # DOCKER-USER policy for published ports, IPv4 and IPv6.
  local rules_changed=0 family file
  for family in 4 6; do
    file="${UFW_AFTER_RULES}"
    [[ "${family}" == 6 ]] && file="${UFW_AFTER6_RULES}"
    render_docker_user_block "${family}" >"${SCRATCH}/block${family}"
    converge_rules_block "${file}" "${SCRATCH}/block${family}"
    if ((CHANGED)); then
      rules_changed=1
      changed "DOCKER-USER rules in ${file}"
    fi
  done

  local status
  status="$(ufw status 2>/dev/null || true)"
  if ! grep -qx 'Status: active' <<<"${status}"; then
    if ! ufw --force enable >"${SCRATCH}/ufw.log" 2>&1; then
      cat "${SCRATCH}/ufw.log" >&2
      die "ufw enable failed"
    fi
    changed "enabled ufw"
  elif ((rules_changed)); then
    if ! ufw reload >"${SCRATCH}/ufw.log" 2>&1; then
      cat "${SCRATCH}/ufw.log" >&2
      cp -p "${SCRATCH}/after.rules.before" "${UFW_AFTER_RULES}"
      cp -p "${SCRATCH}/after6.rules.before" "${UFW_AFTER6_RULES}"
      ufw reload >/dev/null 2>&1 || true
      die "ufw reload rejected the DOCKER-USER rules; restored the previous after.rules"
    fi
    changed "reloaded ufw"
  fi
  systemctl is-enabled --quiet ufw.service 2>/dev/null || { systemctl enable ufw.service >/dev/null 2>&1; changed "enabled ufw.service"; }
  has_line "$(iptables -S DOCKER-USER 2>/dev/null || true)" -- '-j onebox-docker-deny' \
    || die "the DOCKER-USER rules are not loaded (iptables -S DOCKER-USER); check ufw status and ${UFW_AFTER_RULES}"
  has_line "$(iptables -S ufw-before-input 2>/dev/null || true)" -- '-A ufw-before-input -i obi-+ -j onebox-internal-input' \
    || die "the internal networks' host rule is not loaded (iptables -S ufw-before-input); check ufw status and ${UFW_AFTER_RULES}"
  local blocked
  blocked="$(blocked_published_ports)"
  if [[ -n "${blocked}" ]]; then
    warn "published container ports not reachable from outside (not in ONEBOX_PUBLIC_TCP_PORTS/ONEBOX_RESTRICTED_PORTS):"
    printf '  - %s\n' "${blocked//$'\n'/$'\n'  - }" >&2
  fi
  ok "ufw active: SSH ${ONEBOX_SSH_PORT}/tcp from ${ONEBOX_SSH_ALLOWED_CIDRS}; public: ${ONEBOX_PUBLIC_TCP_PORTS:-none}; restricted: ${ONEBOX_RESTRICTED_PORTS:-none}; DOCKER-USER loaded"
}

# Published container ports that the DOCKER-USER policy will not let in from outside, as
# "PORT/PROTO NAME" lines. On an existing server these are services that stop being
# reachable: list them in ONEBOX_PUBLIC_TCP_PORTS / ONEBOX_RESTRICTED_PORTS if they should be.
blocked_published_ports() {
  local ps name ports mapping host hport proto pair
  local -A open=()
  local -a maps
  for hport in ${ONEBOX_PUBLIC_TCP_PORTS}; do open["$((10#${hport}))/tcp"]=1; done
  for pair in ${ONEBOX_RESTRICTED_PORTS}; do open["$((10#${pair%%:*}))/tcp"]=1; done
  command -v docker >/dev/null 2>&1 || return 0
  ps="$(timeout 20 docker ps --format '{{.Names}}{{"\t"}}{{.Ports}}' 2>/dev/null || true)"
  while IFS=$'\t' read -r name ports; do
    [[ -n "${ports}" ]] || continue
    IFS=',' read -ra maps <<<"${ports// /}"
    for mapping in "${maps[@]}"; do
      # e.g. 0.0.0.0:8081->8080/tcp, :::8081->8080/tcp, 127.0.0.1:5432->5432/tcp
      [[ "${mapping}" =~ ^(.*):([0-9]+(-[0-9]+)?)-\>[0-9-]+/([a-z]+)$ ]] || continue
      host="${BASH_REMATCH[1]}" hport="${BASH_REMATCH[2]}" proto="${BASH_REMATCH[4]}"
      [[ "${host}" == 127.* || "${host}" == "::1" || "${host}" == "[::1]" ]] && continue
      [[ -n "${open["${hport}/${proto}"]:-}" ]] && continue
      printf '%s/%s (%s)\n' "${hport}" "${proto}" "${name}"
    done
  done <<<"${ps}" | sort -u
}

# ---------------------------------------------------------------------------- H5 fail2ban

wait_for_fail2ban_jail() {
  local i
  for ((i = 0; i < 30; i++)); do
    fail2ban-client status sshd >/dev/null 2>&1 && return 0
    sleep 1
  done
  journalctl -u fail2ban.service --no-pager -n 20 >&2 || true
  die "fail2ban's sshd jail is not running after 30 s (fail2ban-client status sshd)"
}

configure_fail2ban() {
  section "H5 fail2ban"
  render_jail >"${SCRATCH}/jail"
  converge_file "${SCRATCH}/jail" "${JAIL_FILE}" 0644
  local jail_changed="${CHANGED}"
  if ! fail2ban-client --test >"${SCRATCH}/f2b-test.log" 2>&1; then
    cat "${SCRATCH}/f2b-test.log" >&2
    die "fail2ban-client --test rejects the configuration (${JAIL_FILE})"
  fi
  ((jail_changed)) && changed "wrote ${JAIL_FILE}"
  if ! systemctl is-enabled --quiet fail2ban.service; then
    systemctl enable fail2ban.service >/dev/null 2>&1
    changed "enabled fail2ban.service"
  fi
  if ((jail_changed)) || ! systemctl is-active --quiet fail2ban.service; then
    systemctl restart fail2ban.service
    changed "restarted fail2ban"
  fi
  wait_for_fail2ban_jail
  ok "fail2ban sshd jail running (backend systemd, $(fail2ban-client get sshd maxretry) retries in $(fail2ban-client get sshd findtime) s, ban $(fail2ban-client get sshd bantime) s)"
}

# ---------------------------------------------------------------------------- H6 unattended-upgrades

configure_unattended_upgrades() {
  section "H6 unattended security upgrades"
  converge_file "${SELF_DIR}/20auto-upgrades" "${AUTO_UPGRADES_FILE}" 0644
  ((CHANGED)) && changed "wrote ${AUTO_UPGRADES_FILE}"
  converge_file "${SELF_DIR}/52onebox-unattended-upgrades" "${UU_ORIGINS_FILE}" 0644
  ((CHANGED)) && changed "wrote ${UU_ORIGINS_FILE}"
  local unit
  for unit in apt-daily.timer apt-daily-upgrade.timer unattended-upgrades.service; do
    if ! systemctl is-enabled --quiet "${unit}" 2>/dev/null; then
      systemctl enable "${unit}" >/dev/null 2>&1
      changed "enabled ${unit}"
    fi
  done
  for unit in apt-daily.timer apt-daily-upgrade.timer; do
    if ! systemctl is-active --quiet "${unit}"; then
      systemctl start "${unit}"
      changed "started ${unit}"
    fi
  done
  ok "unattended-upgrades: daily, security origins only ($(uu_origins | wc -l) patterns)"
}

uu_origins() {
  apt-config dump 2>/dev/null \
    | sed -n -E 's/^Unattended-Upgrade::(Origins-Pattern|Allowed-Origins):: "(.*)";$/\2/p'
}

# ---------------------------------------------------------------------------- --check

CHECK_FAILS=0
CHECK_PASSES=0

# result ID CONDITION_RC MESSAGE
result() {
  if (($2 == 0)); then
    printf 'PASS %s %s\n' "$1" "$3"
    CHECK_PASSES=$((CHECK_PASSES + 1))
  else
    printf 'FAIL %s %s\n' "$1" "$3"
    CHECK_FAILS=$((CHECK_FAILS + 1))
  fi
}

# same_content RENDERED_FILE TARGET: 0 when TARGET exists with exactly that content.
same_content() { [[ -f "$2" ]] && cmp -s "$1" "$2"; }

check_h3() {
  local rc f key
  render_sshd >"${SCRATCH}/c-sshd"
  same_content "${SCRATCH}/c-sshd" "${SSHD_DROPIN}" && rc=0 || rc=1
  result H3 "${rc}" "${SSHD_DROPIN} has the onebox hardening"
  grep -qE '^[[:space:]]*Include[[:space:]]+/etc/ssh/sshd_config\.d/\*\.conf' "${SSHD_CONFIG}" && rc=0 || rc=1
  result H3 "${rc}" "${SSHD_CONFIG} includes sshd_config.d/*.conf"
  # Drop-ins that sort before ours and set one of our keywords would win over it.
  local -a earlier=()
  local keys
  keys="$(sshd_wanted | awk '{ print $1 }' | paste -sd'|')"
  while IFS= read -r f; do
    [[ "${f}" == "${SSHD_DROPIN}" ]] && break
    grep -qiE "^[[:space:]]*(${keys})[[:space:]]" "${f}" && earlier+=("${f}")
  done < <(find /etc/ssh/sshd_config.d -maxdepth 1 -name '*.conf' 2>/dev/null | LC_ALL=C sort)
  ((${#earlier[@]} == 0)) && rc=0 || rc=1
  result H3 "${rc}" "no drop-in sorts before ours with a hardened keyword${earlier[*]:+ (found: ${earlier[*]})}"
  local effective want have
  effective="$(sshd -T 2>/dev/null || true)"
  while read -r key want; do
    have="$(awk -v k="${key}" '$1 == k { print $2; exit }' <<<"${effective}")"
    [[ "${have}" == "without-password" ]] && have="prohibit-password"
    [[ "${have}" == "${want}" ]] && rc=0 || rc=1
    result H3 "${rc}" "sshd -T ${key} ${have:-?} (want ${want})"
  done < <(sshd_wanted)
}

check_h4() {
  local rc status
  status="$(ufw status verbose 2>/dev/null || true)"
  grep -qx 'Status: active' <<<"${status}" && rc=0 || rc=1
  result H4 "${rc}" "ufw is active"
  grep -q '^Default: deny (incoming), allow (outgoing)' <<<"${status}" && rc=0 || rc=1
  result H4 "${rc}" "ufw default deny incoming, allow outgoing"
  local wanted current missing extra
  wanted="$(render_ufw_rules)"
  current="$(ufw_added)"
  missing="$(grep -vxF -f <(printf '%s\n' "${current}") <<<"${wanted}" || true)"
  extra="$(grep -vxF -f <(printf '%s\n' "${wanted}") <<<"${current}" || true)"
  [[ -z "${missing}" ]] && rc=0 || rc=1
  result H4 "${rc}" "ufw allows SSH ${ONEBOX_SSH_PORT}/tcp from ${ONEBOX_SSH_ALLOWED_CIDRS}, public [${ONEBOX_PUBLIC_TCP_PORTS}], restricted [${ONEBOX_RESTRICTED_PORTS}]${missing:+ - missing: ${missing//$'\n'/; }}"
  [[ -z "${extra}" ]] && rc=0 || rc=1
  result H4 "${rc}" "ufw allows nothing else${extra:+ - extra: ${extra//$'\n'/; }}"
  local family file
  for family in 4 6; do
    file="${UFW_AFTER_RULES}"
    [[ "${family}" == 6 ]] && file="${UFW_AFTER6_RULES}"
    render_docker_user_block "${family}" >"${SCRATCH}/c-block"
    awk -v b="${BLOCK_BEGIN}" -v e="${BLOCK_END}" '$0 == b { p = 1 } p { print } $0 == e { p = 0 }' \
      "${file}" 2>/dev/null >"${SCRATCH}/c-block-have" || true
    cmp -s "${SCRATCH}/c-block" "${SCRATCH}/c-block-have" && rc=0 || rc=1
    result H4 "${rc}" "${file} has the current DOCKER-USER block"
  done
  has_line "$(iptables -S DOCKER-USER 2>/dev/null || true)" -- '-o docker0 -j onebox-docker-deny' && rc=0 || rc=1
  result H4 "${rc}" "DOCKER-USER drops unlisted connections to published ports (iptables -S DOCKER-USER)"
  has_line "$(iptables -S ufw-before-input 2>/dev/null || true)" -- '-A ufw-before-input -i obi-+ -j onebox-internal-input' && rc=0 || rc=1
  result H13 "${rc}" "containers on internal networks cannot open connections to the host (iptables -S ufw-before-input)"
  local blocked line
  blocked="$(blocked_published_ports)"
  while IFS= read -r line; do
    [[ -n "${line}" ]] && printf 'INFO H8 published port %s is not open to the outside (DOCKER-USER drops it)\n' "${line}"
  done <<<"${blocked}"
  if systemctl is-active --quiet docker.service; then
    has_line "$(iptables -S FORWARD 2>/dev/null || true)" -x -- '-A FORWARD -j DOCKER-USER' && rc=0 || rc=1
    result H4 "${rc}" "FORWARD sends forwarded traffic through DOCKER-USER"
  fi
}

check_h5() {
  local rc
  systemctl is-active --quiet fail2ban.service && systemctl is-enabled --quiet fail2ban.service && rc=0 || rc=1
  result H5 "${rc}" "fail2ban is enabled and running"
  render_jail >"${SCRATCH}/c-jail"
  same_content "${SCRATCH}/c-jail" "${JAIL_FILE}" && rc=0 || rc=1
  result H5 "${rc}" "${JAIL_FILE} has the onebox sshd jail"
  fail2ban-client status sshd >/dev/null 2>&1 && rc=0 || rc=1
  result H5 "${rc}" "fail2ban-client status sshd answers"
  # `get JAIL journalmatch` only works for a journal (systemd backend) jail.
  [[ -n "$(fail2ban-client get sshd journalmatch 2>/dev/null | grep -F '_SYSTEMD_UNIT=ssh.service' || true)" ]] && rc=0 || rc=1
  result H5 "${rc}" "sshd jail reads the systemd journal"
  [[ "$(fail2ban-client get sshd maxretry 2>/dev/null)" == "5" ]] && rc=0 || rc=1
  result H5 "${rc}" "sshd jail maxretry 5"
}

check_h6() {
  local rc origins
  pkg_installed unattended-upgrades && rc=0 || rc=1
  result H6 "${rc}" "unattended-upgrades is installed"
  [[ "$(apt-config shell V APT::Periodic::Unattended-Upgrade 2>/dev/null || true)" == "V='1'" ]] && rc=0 || rc=1
  result H6 "${rc}" 'APT::Periodic::Unattended-Upgrade "1"'
  origins="$(uu_origins)"
  [[ -n "${origins}" ]] && ! grep -qv -- '-security' <<<"${origins}" && rc=0 || rc=1
  result H6 "${rc}" "unattended-upgrades origins are security-only (${origins//$'\n'/ | })"
  systemctl is-enabled --quiet apt-daily-upgrade.timer && systemctl is-active --quiet apt-daily-upgrade.timer && rc=0 || rc=1
  result H6 "${rc}" "apt-daily-upgrade.timer is enabled and active"
}

check_h7() {
  local rc info
  same_content "${SELF_DIR}/daemon.json" "${DAEMON_JSON}" && rc=0 || rc=1
  result H7 "${rc}" "${DAEMON_JSON} has log rotation, live-restore, no-new-privileges, userland-proxy false"
  systemctl is-active --quiet docker.service && rc=0 || rc=1
  result H7 "${rc}" "docker is running"
  info="$(timeout 20 docker info --format '{{.LoggingDriver}} {{.LiveRestoreEnabled}} {{json .SecurityOptions}}' 2>/dev/null || true)"
  [[ "${info}" == "json-file true "* ]] && rc=0 || rc=1
  result H7 "${rc}" "docker info: log driver json-file, live-restore on (${info%% \[*})"
  [[ "${info}" == *name=no-new-privileges* ]] && rc=0 || rc=1
  result H7 "${rc}" "docker info: no-new-privileges in the daemon's security options"
  # The running daemon must have been started after daemon.json last changed.
  local started file_time
  started="$(systemctl show -p ActiveEnterTimestamp --value docker.service 2>/dev/null || true)"
  started="$(date -d "${started}" +%s 2>/dev/null || echo 0)"
  file_time="$(stat -c %Y "${DAEMON_JSON}" 2>/dev/null || echo 0)"
  ((started > 0 && file_time <= started)) && rc=0 || rc=1
  result H7 "${rc}" "dockerd started after ${DAEMON_JSON} last changed (no restart pending)"
  if in_docker_group; then
    printf 'INFO H7 %s is in the docker group (root-equivalent; onebox runs docker through sudo)\n' "${ONEBOX_DEPLOY_USER}"
  fi
}

run_check() {
  check_h3
  check_h4
  check_h5
  check_h6
  check_h7
  printf 'check: %d PASS, %d FAIL\n' "${CHECK_PASSES}" "${CHECK_FAILS}"
}

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

run_bootstrap() {
  local start="${SECONDS}"
  require_root
  take_lock
  export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1
  detect_os
  wait_for_cloud_init
  configure_layout
  configure_data_volume
  configure_swap
  configure_sysctl
  section "packages"
  install_packages "${BASE_PACKAGES[@]}"
  configure_docker_daemon
  install_docker
  configure_sshd
  configure_ufw
  configure_fail2ban
  configure_unattended_upgrades
  printf '\n'
  if ((${#CHANGES[@]} == 0)); then
    log "done in $((SECONDS - start)) s: no changes, the host already matches the settings"
  else
    log "done in $((SECONDS - start)) s: ${#CHANGES[@]} changes"
  fi
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
  case "${mode}" in
    apply)
      require_shipped_files
      load_settings
      run_bootstrap
      ;;
    --check)
      require_root
      require_shipped_files
      load_settings
      run_check
      ((CHECK_FAILS == 0)) || exit 1
      ;;
    --render)
      (($# == 2)) || die "usage: $0 --render sshd|jail|after.rules|after6.rules|ufw-rules|docker-requires-data"
      load_settings quiet
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
