# shellcheck shell=bash
# Swap: a swap file of ONEBOX_SWAP_MB MiB on a host without any swap (1 GB servers).

readonly SWAP_FILE="/swapfile"

swap_apply() {
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

swap_check() {
  local rc active
  if ((10#${ONEBOX_SWAP_MB} == 0)); then
    printf 'INFO SWAP ONEBOX_SWAP_MB=0: no swap file managed\n'
    return 0
  fi
  if in_container; then
    printf 'INFO SWAP running in a container: swap belongs to the host kernel\n'
    return 0
  fi
  active="$(swapon --show=NAME --noheadings 2>/dev/null || true)"
  [[ -n "${active}" ]] && rc=0 || rc=1
  result SWAP "${rc}" "swap is active (${active:-none})"
  if grep -qxF "${SWAP_FILE}" <<<"${active}"; then
    grep -qE "^${SWAP_FILE}[[:space:]]" /etc/fstab && rc=0 || rc=1
    result SWAP "${rc}" "${SWAP_FILE} is in /etc/fstab"
  fi
}
