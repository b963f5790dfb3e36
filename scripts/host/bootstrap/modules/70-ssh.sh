# shellcheck shell=bash
# SSH (H3): the hardening drop-in, sorted before any cloud-init drop-in, validated before sshd
# reloads, and never locking the deploy user out.

readonly SSHD_DROPIN="/etc/ssh/sshd_config.d/00-onebox-hardening.conf"
readonly SSHD_CONFIG="/etc/ssh/sshd_config"
readonly SSHD_INCLUDE="Include /etc/ssh/sshd_config.d/*.conf"

ssh_apply() {
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

ssh_check() {
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

render_sshd() {
  local permit=no
  [[ "${ONEBOX_ADMIN_CAN_ROOT}" == "true" ]] && permit=prohibit-password
  render_template sshd-hardening.conf "PERMIT_ROOT_LOGIN=${permit}"
}

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

unit_exists() { [[ -n "$(systemctl list-unit-files --no-legend "$1" 2>/dev/null)" ]]; }

ssh_unit() {
  if unit_exists ssh.service; then echo ssh; else echo sshd; fi
}
