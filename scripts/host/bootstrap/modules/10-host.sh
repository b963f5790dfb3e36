# shellcheck shell=bash
# Host: supported OS (Ubuntu 22.04/24.04, Debian 12/13), first-boot work finished (H1), and the
# shared parents of the onebox directory layout.

readonly CLOUD_INIT_TIMEOUT=900
OS_ID=""
OS_VERSION=""
OS_CODENAME=""
# The shared parents of the layout, with their modes (root-owned). Several stacks may live on
# the host: each stack's own directories (/etc/onebox/<stack>, /srv/onebox/<stack>,
# /var/lib/onebox/<stack>/{backup,status}, /var/log/onebox/<stack>) are created by its
# provisioning steps. The per-host directories of the single-stack layout (/srv/onebox/releases,
# /var/lib/onebox/{backup,status}) are neither created nor removed here: their migration moves them.
readonly LAYOUT_DIRS=(/etc/onebox:0700 /srv/onebox:0755 /var/lib/onebox:0755 /var/log/onebox:0755)

host_apply() {
  detect_os
  wait_for_cloud_init
  section "directories"
  local entry
  for entry in "${LAYOUT_DIRS[@]}"; do ensure_dir "${entry%:*}" "${entry##*:}"; done
  ok "directory layout in place"
}

host_check() {
  local rc entry
  os_supported && rc=0 || rc=1
  result HOST "${rc}" "OS ${OS_ID:-?} ${OS_VERSION:-?} is supported"
  for entry in "${LAYOUT_DIRS[@]}"; do
    [[ -d "${entry%:*}" && "$(stat -c '%a %u %g' "${entry%:*}")" == "${entry##*:0} 0 0" ]] && rc=0 || rc=1
    result HOST "${rc}" "${entry%:*} is a root-owned directory with mode ${entry##*:}"
  done
}

# Reads /etc/os-release into OS_ID, OS_VERSION, OS_CODENAME; fails when the OS is not supported.
os_supported() {
  [[ -r /etc/os-release ]] || return 1
  OS_ID="$(. /etc/os-release && echo "${ID:-}")"
  OS_VERSION="$(. /etc/os-release && echo "${VERSION_ID:-}")"
  OS_CODENAME="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
  case "${OS_ID}:${OS_VERSION}" in
    ubuntu:22.04 | ubuntu:24.04 | debian:12 | debian:13) return 0 ;;
    *) return 1 ;;
  esac
}

detect_os() {
  [[ -r /etc/os-release ]] || die "/etc/os-release is missing; supported: Ubuntu 22.04/24.04, Debian 12/13"
  os_supported || die "unsupported OS '${OS_ID} ${OS_VERSION}'; supported: Ubuntu 22.04/24.04, Debian 12/13"
  log "OS: ${OS_ID} ${OS_VERSION} (${OS_CODENAME})"
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
