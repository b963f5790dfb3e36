# shellcheck shell=bash
# Packages: the tools the other concerns and the later steps rely on, from the distribution.
# Every apt call goes through apt_get, which waits for the dpkg lock (H1).

readonly APT_LOCK_TIMEOUT=300
# Tools the backup and deploy steps rely on; iptables for ufw/fail2ban/Docker; python3-systemd
# for fail2ban's journal backend.
readonly BASE_PACKAGES=(
  ca-certificates curl jq rclone age e2fsprogs procps iptables
  ufw fail2ban python3-systemd unattended-upgrades
)

packages_apply() {
  section "packages"
  install_packages "${BASE_PACKAGES[@]}"
}

packages_check() {
  local rc pkg
  local -a missing=()
  for pkg in "${BASE_PACKAGES[@]}"; do pkg_installed "${pkg}" || missing+=("${pkg}"); done
  ((${#missing[@]} == 0)) && rc=0 || rc=1
  result PKG "${rc}" "base packages installed${missing[*]:+ - missing: ${missing[*]}}"
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
