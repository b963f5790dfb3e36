# shellcheck shell=bash
# Unattended upgrades (H6): daily, from the security origins only.

readonly AUTO_UPGRADES_FILE="/etc/apt/apt.conf.d/20auto-upgrades"
readonly UU_ORIGINS_FILE="/etc/apt/apt.conf.d/52onebox-unattended-upgrades"

upgrades_apply() {
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

upgrades_check() {
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

uu_origins() {
  apt-config dump 2>/dev/null \
    | sed -n -E 's/^Unattended-Upgrade::(Origins-Pattern|Allowed-Origins):: "(.*)";$/\2/p'
}
