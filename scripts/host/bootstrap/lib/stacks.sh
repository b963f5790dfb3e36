# shellcheck shell=bash
# Several stacks on one host (H4, H8, H14). Each stack (compose project <app>-<environment>) has
# its own settings file, ${ONEBOX_ETC_DIR}/<stack>/bootstrap.env; a host set up before that has
# one ${ONEBOX_ETC_DIR}/bootstrap.env. The host has one firewall, so each run applies the ports
# of EVERY stack on it: this run's settings plus the port settings of every other stack's file.
# A stack that drops a port closes it, unless another stack still wants it.
#
# Other stacks' files are parsed, never sourced: only the lines KEY='value' (the form the
# program writes, components/provisioning/shell.ts envFileLines) or KEY=value of plain
# characters, comments and blank lines; a file in any other form, not root-owned, writable by
# group or others, or whose ports fail the checks this stack's own pass, is skipped with a
# warning naming it (its ports are then closed: failing closed, never open).
#
# Merging:
#   ONEBOX_PUBLIC_TCP_PORTS      the union.
#   ONEBOX_RESTRICTED_PORTS      the union of the port:cidr pairs.
#   ONEBOX_KEEP_PUBLISHED_PORTS  "all" when any stack says all, else the union of the lists.
#   A port that one stack restricts to listed networks stays restricted, to the networks
#   every stack lists for it, even when another stack lists it as public or keeps it open:
#   opening it to everyone would silently undo the restricting stack's security setting (a
#   database port, or 80/443 under origin lockdown). The warning names both stacks; the fix
#   is to make them agree.
# Host-wide settings (SSH port and allowed CIDRs, root login, swap, data path and device,
# Docker source, Docker restarts) have one value per host: the last stack to run the
# bootstrap sets them, and a value that differs from another stack's file is warned about.

# Where the stacks' settings files live (overridable for tests).
ONEBOX_ETC_DIR="${ONEBOX_ETC_DIR:-/etc/onebox}"
# The keys read from other stacks' files: their ports and their name, and, only to compare
# them with this run's and warn, the host-wide settings.
readonly STACK_PORT_KEYS=(ONEBOX_PUBLIC_TCP_PORTS ONEBOX_RESTRICTED_PORTS ONEBOX_KEEP_PUBLISHED_PORTS ONEBOX_STACK)
readonly HOST_WIDE_KEYS=(
  ONEBOX_SSH_PORT ONEBOX_SSH_ALLOWED_CIDRS ONEBOX_ADMIN_CAN_ROOT ONEBOX_SWAP_MB ONEBOX_DATA_PATH
  ONEBOX_DATA_DEVICE ONEBOX_DOCKER_SOURCE ONEBOX_ALLOW_DOCKER_RESTART
)

# The union the firewall applies (set from this stack's settings by load_settings, extended
# by load_other_stacks).
HOST_PUBLIC_TCP_PORTS=""
HOST_RESTRICTED_PORTS=""
HOST_KEEP_PUBLISHED_PORTS=""
# "stack (file)" of every other stack whose ports are in the union.
OTHER_STACKS=()

# The other stacks' settings files: the legacy single-stack file, then each stack directory's,
# in name order; never the file this run reads.
other_stack_files() {
  local own file
  own="$(readlink -m -- "${SETTINGS_FILE}")"
  [[ -d "${ONEBOX_ETC_DIR}" ]] || return 0
  {
    if [[ -e "${ONEBOX_ETC_DIR}/bootstrap.env" || -L "${ONEBOX_ETC_DIR}/bootstrap.env" ]]; then
      printf '%s\n' "${ONEBOX_ETC_DIR}/bootstrap.env"
    fi
    find "${ONEBOX_ETC_DIR}" -mindepth 2 -maxdepth 2 -name bootstrap.env ! -type d 2>/dev/null | LC_ALL=C sort || true
  } | while IFS= read -r file; do
    if [[ "$(readlink -m -- "${file}")" != "${own}" ]]; then printf '%s\n' "${file}"; fi
  done
  return 0
}

# parse_stack_file FILE: fills the associative array STACK_FILE (declared by the caller) with
# the keys above; fails with the reason in PARSE_ERROR when the file cannot be trusted or read.
PARSE_ERROR=""
parse_stack_file() {
  local file="$1" owner mode line key value n=0
  PARSE_ERROR=""
  if [[ -L "${file}" || ! -f "${file}" ]]; then
    PARSE_ERROR="not a regular file"
    return 1
  fi
  owner="$(stat -c '%u' "${file}")"
  mode="$(stat -c '%a' "${file}")"
  if [[ "${owner}" != "0" && "${owner}" != "${EUID}" ]]; then
    PARSE_ERROR="owned by uid ${owner}, not root (chown root: ${file})"
    return 1
  fi
  if (((8#${mode} & 8#022) != 0)); then
    PARSE_ERROR="writable by group or others (mode ${mode}; chmod 600 ${file})"
    return 1
  fi
  [[ -r "${file}" ]] || { PARSE_ERROR="not readable"; return 1; }
  while IFS= read -r line || [[ -n "${line}" ]]; do
    n=$((n + 1))
    ((n <= 1000)) || { PARSE_ERROR="more than 1000 lines"; return 1; }
    [[ "${line}" =~ ^[[:space:]]*(#.*)?$ ]] && continue
    if [[ ! "${line}" =~ ^([A-Z_][A-Z0-9_]*)=(.*)$ ]]; then
      PARSE_ERROR="line ${n} is not KEY='value'"
      return 1
    fi
    key="${BASH_REMATCH[1]}"
    value="${BASH_REMATCH[2]}"
    if [[ "${value}" =~ ^\'([^\']*)\'$ ]]; then
      value="${BASH_REMATCH[1]}"
    elif [[ ! "${value}" =~ ^[A-Za-z0-9_@%+=:,./-]*$ ]]; then
      PARSE_ERROR="line ${n}: the value of ${key} is not one single-quoted string"
      return 1
    fi
    [[ " ${STACK_PORT_KEYS[*]} ${HOST_WIDE_KEYS[*]} " == *" ${key} "* ]] && STACK_FILE["${key}"]="${value}"
  done <"${file}"
  return 0
}

# A value from another stack's file, made safe to print (no control characters).
printable() { printf '%s' "${1//[^[:print:]]/?}"; }

# A value in the form that compares equal however it was written.
host_wide_form() {
  local key="$1" value="$2"
  case "${key}" in
    ONEBOX_SSH_ALLOWED_CIDRS) words_of "$(tr ' ' '\n' <<<"${value}" | LC_ALL=C sort -u | tr '\n' ' ')" ;;
    ONEBOX_SSH_PORT | ONEBOX_SWAP_MB) [[ "${value}" =~ ^[0-9]{1,6}$ ]] && printf '%s' "$((10#${value}))" || printf '%s' "${value}" ;;
    ONEBOX_DATA_PATH) printf '%s' "${value%/}" ;;
    *) words_of "${value}" ;;
  esac
}

# merge_open_port LIST PORT LABEL HOW HINT: adds PORT to the merge's LIST (public or keep,
# arrays of the calling merge, as are `seen` and `restricted_by`), once, unless a stack
# restricts it: a restricted port stays restricted, with a warning naming both stacks.
merge_open_port() {
  local list="$1" port="$((10#$2))" label="$3" how="$4" hint="$5"
  if [[ -n "${restricted_by[${port}]:-}" ]]; then
    warn "port ${port}: ${label} ${how}, but ${restricted_by[${port}]} restricts it to listed networks (ONEBOX_RESTRICTED_PORTS); it stays restricted to those networks. Make the stacks agree${hint}"
    return 0
  fi
  [[ -n "${seen[${list}${port}]:-}" ]] && return 0
  seen[${list}${port}]=1
  if [[ "${list}" == public ]]; then public+=("${port}"); else keep+=("${port}"); fi
}

# Reads every other stack's file, warns about host-wide settings that differ, and sets the
# HOST_* union the firewall applies. Logs what it read unless QUIET is "quiet".
# shellcheck disable=SC2034 # HOST_*: read by the firewall module (checked together when assembled)
load_other_stacks() {
  local quiet="${1:-}" file why key mine theirs label word pair port stack
  local own_label="${ONEBOX_STACK:-this stack} (${SETTINGS_FILE})"
  local -A STACK_FILE
  # The stacks' port settings, own first: labels and values, index by index.
  local -a labels=("${own_label}") publics=("${ONEBOX_PUBLIC_TCP_PORTS}")
  local -a restricteds=("${ONEBOX_RESTRICTED_PORTS}") keeps=("${ONEBOX_KEEP_PUBLISHED_PORTS}")
  local ssh_port=$((10#${ONEBOX_SSH_PORT}))
  OTHER_STACKS=()
  while IFS= read -r file; do
    [[ -n "${file}" ]] || continue
    STACK_FILE=()
    if ! parse_stack_file "${file}"; then
      warn "skipped the settings of another stack in ${file}: ${PARSE_ERROR}; its ports are not kept open by this run"
      continue
    fi
    stack="${STACK_FILE[ONEBOX_STACK]:-}"
    if [[ ! "${stack}" =~ ^([a-z0-9][a-z0-9_-]{0,62})?$ ]]; then
      warn "skipped the settings of another stack in ${file}: ONEBOX_STACK='$(printable "${stack}")' is not a compose project name; its ports are not kept open by this run"
      continue
    fi
    if [[ -n "${stack}" && "${stack}" == "${ONEBOX_STACK}" ]]; then
      [[ "${quiet}" == "quiet" ]] || log "${file} holds this stack's (${stack}) older settings; ${SETTINGS_FILE} is used instead"
      continue
    fi
    why="$(port_settings_problems "${STACK_FILE[ONEBOX_PUBLIC_TCP_PORTS]:-}" "${STACK_FILE[ONEBOX_RESTRICTED_PORTS]:-}" \
      "${STACK_FILE[ONEBOX_KEEP_PUBLISHED_PORTS]:-}" "${ssh_port}")"
    if [[ -n "${why}" ]]; then
      why="$(printable "${why//$'\n'/; }")"
      warn "skipped the settings of another stack in ${file}: ${why}; its ports are not kept open by this run"
      continue
    fi
    label="${stack:-another stack} (${file})"
    for key in "${HOST_WIDE_KEYS[@]}"; do
      [[ -n "${STACK_FILE[${key}]+set}" ]] || continue
      mine="$(host_wide_form "${key}" "${!key}")"
      theirs="$(host_wide_form "${key}" "${STACK_FILE[${key}]}")"
      [[ "${mine}" == "${theirs}" ]] && continue
      warn "${key} differs between stacks on this host: '$(printable "${theirs}")' in ${file} (${stack:-another stack}), '${mine}' in ${SETTINGS_FILE} (${ONEBOX_STACK:-this stack}); it is host-wide, so the last stack to run the bootstrap sets it (this run: '${mine}'). Make the stacks agree"
    done
    labels+=("${label}")
    publics+=("${STACK_FILE[ONEBOX_PUBLIC_TCP_PORTS]:-}")
    restricteds+=("${STACK_FILE[ONEBOX_RESTRICTED_PORTS]:-}")
    keeps+=("${STACK_FILE[ONEBOX_KEEP_PUBLISHED_PORTS]:-}")
    OTHER_STACKS+=("${label}")
  done < <(other_stack_files)

  # Restricted: every pair of every stack; which stacks restrict each port.
  local i
  local -A restricted_by=() seen=()
  local -a restricted=() public=() keep=()
  for i in "${!labels[@]}"; do
    for pair in ${restricteds[i]}; do
      port="$((10#${pair%%:*}))"
      if [[ -z "${seen[s${port}:${i}]:-}" ]]; then
        seen[s${port}:${i}]=1
        restricted_by[${port}]+="${restricted_by[${port}]:+, }${labels[i]}"
      fi
      pair="${port}:$(canonical_cidr "${pair#*:}")"
      [[ -n "${seen[r${pair}]:-}" ]] && continue
      seen[r${pair}]=1
      restricted+=("${pair}")
    done
  done
  # Public and kept ports: every stack's, except those a stack restricts.
  local keep_all=0
  for i in "${!labels[@]}"; do
    for word in ${publics[i]}; do
      merge_open_port public "${word}" "${labels[i]}" "opens it to everyone (ONEBOX_PUBLIC_TCP_PORTS)" ": remove the restriction, or the port from the public ones"
    done
    [[ "$(words_of "${keeps[i]}")" == "all" ]] && { keep_all=1; continue; }
    for word in ${keeps[i]}; do
      merge_open_port keep "${word}" "${labels[i]}" "keeps it open to everyone (ONEBOX_KEEP_PUBLISHED_PORTS)" ""
    done
  done
  HOST_PUBLIC_TCP_PORTS="${public[*]}"
  HOST_RESTRICTED_PORTS="${restricted[*]}"
  if ((keep_all)); then HOST_KEEP_PUBLISHED_PORTS=all; else HOST_KEEP_PUBLISHED_PORTS="${keep[*]}"; fi
  if [[ "${quiet}" != "quiet" && ${#OTHER_STACKS[@]} -gt 0 ]]; then
    log "the firewall also keeps the ports of the other stacks on this host: ${OTHER_STACKS[*]}"
  fi
  return 0
}
