# shellcheck shell=bash
# Kernel settings: the shipped sysctl.conf installed and live (where the kernel lets us).

readonly SYSCTL_FILE="/etc/sysctl.d/60-onebox.conf"

sysctl_apply() {
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

sysctl_check() {
  local rc line
  same_content "${SELF_DIR}/sysctl.conf" "${SYSCTL_FILE}" && rc=0 || rc=1
  result SYSCTL "${rc}" "${SYSCTL_FILE} has the onebox kernel settings"
  local -a refused=() missing=()
  while IFS= read -r line; do
    [[ -n "${line}" ]] || continue
    if [[ "${line}" == *"have (missing))" ]]; then
      missing+=("${line%% *}")
    else
      refused+=("${line}")
    fi
  done < <(sysctl_drift)
  ((${#missing[@]} == 0)) || printf 'INFO SYSCTL keys this kernel does not have: %s\n' "${missing[*]}"
  if in_container; then
    ((${#refused[@]} == 0)) || printf 'INFO SYSCTL not live (a container cannot set kernel-wide keys): %s\n' "${refused[*]}"
    return 0
  fi
  ((${#refused[@]} == 0)) && rc=0 || rc=1
  result SYSCTL "${rc}" "the kernel settings are live${refused[*]:+ - differ: ${refused[*]}}"
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
