# shellcheck shell=bash
# Firewall (H4, H8): ufw with deny-incoming defaults and exactly the onebox rules, plus the
# DOCKER-USER chain that filters connections to published container ports. Several stacks may
# share the host (H14): the ports applied are the union of every stack's (HOST_*, set by
# lib/stacks.sh), the SSH rules this run's.

readonly UFW_AFTER_RULES="/etc/ufw/after.rules"
readonly UFW_AFTER6_RULES="/etc/ufw/after6.rules"
readonly BLOCK_BEGIN="# BEGIN ONEBOX DOCKER-USER"
readonly BLOCK_END="# END ONEBOX DOCKER-USER"

firewall_apply() {
  section "H4 firewall (ufw + DOCKER-USER)"
  check_own_session_allowed

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

  # Rules: add the missing onebox rules, delete onebox rules no stack wants any more.
  converge_ufw_rules "$(render_ufw_rules)"

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
    warn "published container ports not reachable from outside (not the stack's ports; to keep other stacks' ports open set host.keepPublishedPorts):"
    printf '  - %s\n' "${blocked//$'\n'/$'\n'  - }" >&2
  fi
  ok "ufw active: SSH ${ONEBOX_SSH_PORT}/tcp from ${ONEBOX_SSH_ALLOWED_CIDRS}; public: ${HOST_PUBLIC_TCP_PORTS:-none}; restricted: ${HOST_RESTRICTED_PORTS:-none}; other containers' published ports kept: ${HOST_KEEP_PUBLISHED_PORTS:-none}; DOCKER-USER loaded"
}

# converge_ufw_rules WANTED: adds the WANTED rules (`ufw show added` lines) ufw lacks and
# deletes the onebox rules (comment 'onebox...') that are not wanted; other rules stay, with
# a warning.
converge_ufw_rules() {
  local wanted="$1" current line rule comment
  local -a words
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
      changed "removed stale rule (no stack on this host wants it): ${line}"
    else
      warn "ufw rule not managed by onebox left in place: ${line} (ufw delete ...)"
    fi
  done <<<"${current}"
}

firewall_check() {
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
  local stacks=""
  ((${#OTHER_STACKS[@]} == 0)) || stacks=" (with the ports of the other stacks: ${OTHER_STACKS[*]})"
  result H4 "${rc}" "ufw allows SSH ${ONEBOX_SSH_PORT}/tcp from ${ONEBOX_SSH_ALLOWED_CIDRS}, public [${HOST_PUBLIC_TCP_PORTS}], restricted [${HOST_RESTRICTED_PORTS}]${stacks}${missing:+ - missing: ${missing//$'\n'/; }}"
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
  if [[ "$(words_of "${HOST_KEEP_PUBLISHED_PORTS}")" == "all" ]]; then
    result H4 "${rc}" "DOCKER-USER loaded; other containers' published ports are kept open (host.keepPublishedPorts: true)"
  else
    result H4 "${rc}" "DOCKER-USER drops unlisted connections to published ports (iptables -S DOCKER-USER)${HOST_KEEP_PUBLISHED_PORTS:+; kept open: ${HOST_KEEP_PUBLISHED_PORTS}}"
  fi
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

# The DOCKER-USER block for one address family (4 -> after.rules, 6 -> after6.rules).
render_docker_user_block() {
  local family="$1" port pair cidr
  local -a rules=()
  for port in ${HOST_PUBLIC_TCP_PORTS}; do
    rules+=("-A DOCKER-USER -p tcp -m conntrack --ctorigdstport $((10#${port})) --ctdir ORIGINAL -j RETURN")
  done
  for pair in ${HOST_RESTRICTED_PORTS}; do
    port="${pair%%:*}"
    cidr="${pair#*:}"
    [[ "$(cidr_family "${cidr}")" == "${family}" ]] || continue
    rules+=("-A DOCKER-USER -s $(canonical_cidr "${cidr}") -p tcp -m conntrack --ctorigdstport $((10#${port})) --ctdir ORIGINAL -j RETURN")
  done
  local line
  while IFS= read -r line; do
    [[ -n "${line}" ]] && rules+=("${line}")
  done < <(keep_published_rules)
  ((${#rules[@]} > 0)) || rules=("# (no port is open to the outside: every published port is dropped)")
  local joined
  joined="$(printf '%s\n' "${rules[@]}")"
  local before_input=ufw-before-input
  [[ "${family}" == 6 ]] && before_input=ufw6-before-input
  render_template after.rules.snippet "ONEBOX_ALLOW_RULES=${joined}" "ONEBOX_UFW_BEFORE_INPUT=${before_input}"
}

# H14 host.keepPublishedPorts: ports other containers publish (e.g. an existing Traefik's
# 80/443, another stack's app) that stay open to everyone, as Docker opens them without a host
# firewall. A list keeps those ports (TCP and UDP); "all" keeps every published port except
# the stack's restricted ones (dropped here unless a listed network sent them, above), and the
# rules after this block never see the rest. The stack's own containers publish only the
# proxy's and the database's ports (H8), so this changes nothing for them.
keep_published_rules() {
  local port pair proto
  local -A seen=()
  if [[ "$(words_of "${HOST_KEEP_PUBLISHED_PORTS}")" == "all" ]]; then
    for pair in ${HOST_RESTRICTED_PORTS}; do
      port="$((10#${pair%%:*}))"
      [[ -z "${seen[${port}]:-}" ]] || continue
      seen[${port}]=1
      printf -- '-A DOCKER-USER -p tcp -m conntrack --ctorigdstport %s --ctdir ORIGINAL -j onebox-docker-deny\n' "${port}"
    done
    printf -- '-A DOCKER-USER -j RETURN\n'
    return 0
  fi
  for port in ${HOST_KEEP_PUBLISHED_PORTS}; do
    port="$((10#${port}))"
    [[ -z "${seen[${port}]:-}" ]] || continue
    seen[${port}]=1
    for proto in tcp udp; do
      printf -- '-A DOCKER-USER -p %s -m conntrack --ctorigdstport %s --ctdir ORIGINAL -j RETURN\n' "${proto}" "${port}"
    done
  done
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
  for word in ${HOST_PUBLIC_TCP_PORTS}; do
    printf "ufw allow %s/tcp comment 'onebox public'\n" "$((10#${word}))"
  done
  for pair in ${HOST_RESTRICTED_PORTS}; do
    port="${pair%%:*}"
    cidr="${pair#*:}"
    printf "ufw allow from %s to any port %s proto tcp comment 'onebox restricted'\n" "$(canonical_cidr "${cidr}")" "$((10#${port}))"
  done
  } | awk '!seen[$0]++'
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

# Published container ports that the DOCKER-USER policy will not let in from outside, as
# "PORT/PROTO NAME" lines: on an existing server, services of other stacks that stop being
# reachable when the firewall goes up (H14).
blocked_published_ports() {
  local ps name ports mapping host hport proto pair
  local -A open=()
  local -a maps
  for hport in ${HOST_PUBLIC_TCP_PORTS}; do open["$((10#${hport}))/tcp"]=1; done
  for pair in ${HOST_RESTRICTED_PORTS}; do open["$((10#${pair%%:*}))/tcp"]=1; done
  local keep_all=0
  if [[ "$(words_of "${HOST_KEEP_PUBLISHED_PORTS}")" == "all" ]]; then
    keep_all=1
  else
    for hport in ${HOST_KEEP_PUBLISHED_PORTS}; do open["$((10#${hport}))/tcp"]=1 open["$((10#${hport}))/udp"]=1; done
  fi
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
      ((keep_all)) && continue
      printf '%s/%s (%s)\n' "${hport}" "${proto}" "${name}"
    done
  done <<<"${ps}" | sort -u
}
