# shellcheck shell=bash
# fail2ban (H5): an sshd jail on the systemd journal.

readonly JAIL_FILE="/etc/fail2ban/jail.d/onebox.local"

fail2ban_apply() {
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

fail2ban_check() {
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

render_jail() {
  render_template jail.local "SSH_PORT=$((10#${ONEBOX_SSH_PORT}))"
}

wait_for_fail2ban_jail() {
  local i
  for ((i = 0; i < 30; i++)); do
    fail2ban-client status sshd >/dev/null 2>&1 && return 0
    sleep 1
  done
  journalctl -u fail2ban.service --no-pager -n 20 >&2 || true
  die "fail2ban's sshd jail is not running after 30 s (fail2ban-client status sshd)"
}
