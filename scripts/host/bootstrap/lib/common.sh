# shellcheck shell=bash
# Helpers every module uses: addresses, files, templates and the --check result lines.

# ---------------------------------------------------------------------------- addresses

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


ip4_to_int() {
  local IFS=.
  local -a o
  read -ra o <<<"$1"
  echo $(((10#${o[0]} << 24) | (10#${o[1]} << 16) | (10#${o[2]} << 8) | 10#${o[3]}))
}

# The whole address space: ufw turns it into "any".
is_everything() { [[ "$1" == */0 || "$1" == */00 ]]; }

# ---------------------------------------------------------------------------- text

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
# ---------------------------------------------------------------------------- files

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

# Set by converge_file, read by the modules right after it: 1 when it changed the file.
CHANGED=0

# converge_file SRC DEST MODE: make DEST (root-owned, MODE) a copy of SRC, atomically.
# Sets CHANGED=1 when it changed anything, else 0.
# shellcheck disable=SC2034 # CHANGED is read by the modules (checked together when assembled)
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

in_container() { systemd-detect-virt --container --quiet 2>/dev/null; }

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
