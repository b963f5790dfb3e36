# shellcheck shell=bash
# Docker: the engine and the compose v2 plugin from signed apt repositories (H2), with the
# daemon settings of daemon.json (H7).

readonly DAEMON_JSON="/etc/docker/daemon.json"
readonly DOCKER_KEYRING="/etc/apt/keyrings/docker.asc"
readonly DOCKER_SOURCES="/etc/apt/sources.list.d/docker.list"
# Fingerprint of Docker's release signing key (https://docs.docker.com/engine/install/).
readonly DOCKER_KEY_FPR="9DC858229FC7DD38854AE2D88D81803C0EBFCD88"

# daemon.json first: a Docker installed below starts with the onebox settings.
docker_apply() {
  configure_docker_daemon
  install_docker
}

docker_check() {
  local rc info plan
  plan="$(daemon_plan "${DAEMON_JSON}" 2>&1)" && rc=0 || rc=1
  if ((rc)); then
    result H7 1 "${DAEMON_JSON} has the stack's daemon settings - ${plan//$'\n'/; }"
  else
    local missing
    missing="$(plan_field changed "${plan}" | paste -sd, -)"
    [[ -z "${missing}" ]] && rc=0 || rc=1
    result H7 "${rc}" "${DAEMON_JSON} has log rotation, live-restore, no-new-privileges, userland-proxy false${missing:+ - to set: ${missing}}"
  fi
  systemctl is-active --quiet docker.service && rc=0 || rc=1
  result H7 "${rc}" "docker is running"
  info="$(timeout 20 docker info --format '{{.LoggingDriver}} {{.LiveRestoreEnabled}} {{json .SecurityOptions}}' 2>/dev/null || true)"
  [[ "${info}" == "json-file true "* || "${info}" == "local true "* ]] && rc=0 || rc=1
  result H7 "${rc}" "docker info: log driver json-file (or local), live-restore on (${info%% \[*})"
  [[ "${info}" == *name=no-new-privileges* ]] && rc=0 || rc=1
  result H7 "${rc}" "docker info: no-new-privileges in the daemon's security options"
  daemon_applied "${DAEMON_JSON}" "${DAEMON_APPLIED}" && rc=0 || rc=1
  result H7 "${rc}" "the running dockerd uses ${DAEMON_JSON} (no restart pending)"
  # H14: settings that wait for a restart, and whether the stack may restart Docker under
  # other stacks' containers (what the apply would refuse).
  local key detail=""
  local -a waiting=()
  ((rc)) && waiting+=("(${DAEMON_JSON} changed since dockerd started)")
  while IFS= read -r key; do
    [[ -z "${key}" || " ${DOCKER_RELOADABLE_KEYS[*]} " == *" ${key} "* ]] || waiting+=("${key}")
  done < <(plan_field changed "${plan}")
  rc=0
  if ((${#waiting[@]} > 0)) && [[ "${ONEBOX_ALLOW_DOCKER_RESTART}" != "true" ]] && systemctl is-active --quiet docker.service; then
    local foreign
    foreign="$(foreign_containers 2>/dev/null)" || foreign="(docker ps failed)"
    if [[ -n "${foreign}" ]]; then
      rc=1
      detail=" - ${waiting[*]} need a Docker restart, which would stop containers of other stacks: ${foreign//$'\n'/, } (host.allowDockerRestart is false)"
    fi
  fi
  result H14 "${rc}" "no Docker restart waits for a permission the stack does not give${detail}"
  if in_docker_group; then
    printf 'INFO H7 %s is in the docker group (root-equivalent; onebox runs docker through sudo)\n' "${ONEBOX_DEPLOY_USER}"
  fi
}

# H7: daemon.json. Explained here because JSON has no comments:
# - log-driver json-file with max-size 10m / max-file 3: container logs rotate (30 MB per
#   container at most) instead of filling the disk.
# - live-restore: containers keep running while dockerd restarts (daemon.json changes,
#   unattended security updates of Docker).
# - no-new-privileges: processes in containers cannot gain privileges through setuid binaries.
# - userland-proxy false: published ports are served by iptables DNAT alone instead of one
#   docker-proxy process per port (memory on 1 GB hosts), so every connection to a published
#   port, hairpin ones included, goes through netfilter where DOCKER-USER applies the firewall
#   policy (H4), and containers see real client addresses. Docker then needs to set
#   net.ipv4.conf.<bridge>.route_localnet, i.e. a writable /proc/sys/net.
#
# H14: the host may be someone else's home (an existing server with Traefik and other stacks).
# The stack's settings are MERGED into the daemon.json the host has: every key it has is kept,
# the stack's missing keys are added. A value that contradicts the stack's (live-restore false,
# userland-proxy true, a log driver that does not rotate, iptables false, which would bypass
# the DOCKER-USER policy) stops the bootstrap naming the key: silently overriding another
# admin's choice, or silently running without the property, are both wrong. Values that give
# the same property are kept: log-driver "local" (it rotates by itself), and any max-size or
# max-file the host already sets in log-opts.
#
# Applying the file: dockerd re-reads some options on SIGHUP (systemctl reload docker; Docker's
# "configuration reload behavior": live-restore, debug, labels, registry mirrors, ...), the
# others only at a restart. A restart stops every container that live-restore does not keep,
# so the bootstrap restarts Docker only when no container of another stack runs or when the
# stack allows it (host.allowDockerRestart -> ONEBOX_ALLOW_DOCKER_RESTART); otherwise it stops
# and names the settings and the containers. A change of reloadable settings only is applied
# with a reload, which restarts nothing.
readonly DAEMON_APPLIED="/etc/onebox/docker-daemon.applied.json"
# Of the settings the stack adds, the ones dockerd applies on SIGHUP.
readonly DOCKER_RELOADABLE_KEYS=(live-restore)

# The merge, in jq: input the host's daemon.json, $want the stack's. Prints
# {conflicts: ["key\thave\twant"], merged: {...}, changed: [keys whose value the merge sets]}.
# shellcheck disable=SC2016 # a jq program: its $names are jq's
readonly DAEMON_MERGE_JQ='
$want[0] as $w | . as $h
| ([ ($w | keys_unsorted[]) as $k
    | select($k != "log-opts" and ($h | has($k)) and $h[$k] != $w[$k])
    | select(($k == "log-driver" and $h[$k] == "local") | not)
    | "\($k)\t\($h[$k] | tojson)\t\($w[$k] | tojson)" ]
  + (if $h.iptables == false then ["iptables\tfalse\ttrue (the default)"] else [] end))
  as $conflicts
| ($h + ($w | with_entries(select(.key as $k | $h | has($k) | not)))) as $m0
| (($h["log-opts"] // {}) as $o
   | if $o | has("max-size") then $o else $o + ($w["log-opts"] | with_entries(select(.key as $k | $o | has($k) | not))) end)
  as $opts
| ($m0 + {"log-opts": $opts}) as $m
| {conflicts: $conflicts, merged: $m, changed: [$m | keys_unsorted[] | select($h[.] != $m[.])]}'

# Why the stack needs each setting a host value may contradict.
daemon_key_reason() {
  case "$1" in
    log-driver) echo "container logs must rotate and stay readable with docker logs (json-file or local)" ;;
    live-restore) echo "containers must survive a dockerd restart (Docker updates, daemon changes)" ;;
    no-new-privileges) echo "no process in a container may gain privileges through setuid binaries" ;;
    userland-proxy) echo "published ports must pass through netfilter, where the DOCKER-USER firewall applies" ;;
    iptables) echo "Docker must write its iptables rules, or published ports bypass the DOCKER-USER firewall" ;;
    *) echo "the stack sets it" ;;
  esac
}

# daemon_plan FILE: merges the host's daemon.json FILE with the stack's into
# ${SCRATCH}/daemon.merged.json and prints "changed KEY" lines; dies on a conflict or an
# unreadable file.
daemon_plan() {
  local target="$1" have="${SCRATCH}/daemon.have.json" out line key value want
  if [[ -s "${target}" ]]; then
    jq -e 'type == "object"' "${target}" >/dev/null 2>&1 \
      || die "${target} is not a JSON object; fix it (dockerd would not start with it either)"
    cp "${target}" "${have}"
  else
    printf '{}\n' >"${have}"
  fi
  out="$(jq -c --slurpfile want "${SELF_DIR}/daemon.json" "${DAEMON_MERGE_JQ}" "${have}")" \
    || die "cannot merge ${target} with the stack's settings (jq failed)"
  local -a problems=()
  while IFS=$'\t' read -r key value want; do
    [[ -n "${key}" ]] || continue
    problems+=("${key}: the host has ${value}, the stack needs ${want}: $(daemon_key_reason "${key}")")
  done < <(jq -r '.conflicts[]' <<<"${out}")
  if ((${#problems[@]} > 0)); then
    printf '[bootstrap] ERROR: %s sets values that contradict the settings the stack needs (H7):\n' "${target}" >&2
    printf '  - %s\n' "${problems[@]}" >&2
    die "change or remove these keys in ${target} (the bootstrap never overrides another admin's daemon settings)"
  fi
  jq '.merged' <<<"${out}" >"${SCRATCH}/daemon.merged.json"
  while IFS= read -r line; do
    [[ -n "${line}" ]] && printf 'changed %s\n' "${line}"
  done < <(jq -r '.changed[]' <<<"${out}")
}

# plan_field changed PLAN: the keys of the plan's "changed KEY" lines. Succeeds when there are
# none (an empty plan is the usual case once the host has the settings).
plan_field() {
  local line
  while IFS= read -r line; do
    if [[ "${line}" == "$1 "* ]]; then
      printf '%s\n' "${line#"$1" }"
    fi
  done <<<"$2"
}

# Running containers that do not belong to this stack (compose project ${ONEBOX_STACK}), one
# name per line. Fails when Docker cannot tell (then nothing may be restarted).
foreign_containers() {
  local list
  command -v docker >/dev/null 2>&1 || return 0
  list="$(timeout 20 docker ps --format '{{.Names}}{{"\t"}}{{.Label "com.docker.compose.project"}}')" || return 1
  awk -F'\t' -v own="${ONEBOX_STACK}" 'NF && (own == "" || $2 != own) { print $1 }' <<<"${list}" | sort
}

# daemon_applied FILE RECORD: whether the running dockerd uses the daemon.json FILE: it
# started after the file last changed, or the bootstrap applied exactly this file with a
# reload and recorded it in RECORD.
daemon_applied() {
  local target="$1" record="$2" started file_time
  systemctl is-active --quiet docker.service 2>/dev/null || return 1
  started="$(systemctl show -p ActiveEnterTimestamp --value docker.service 2>/dev/null || true)"
  started="$(date -d "${started}" +%s 2>/dev/null || echo 0)"
  file_time="$(stat -c %Y "${target}" 2>/dev/null || echo 0)"
  ((started > 0 && file_time <= started)) && return 0
  [[ -f "${record}" ]] && cmp -s "${record}" "${target}"
}

configure_docker_daemon() {
  section "H7 Docker daemon settings (merged into ${DAEMON_JSON})"
  apply_daemon_settings "${DAEMON_JSON}" "${DAEMON_APPLIED}"
}

# apply_daemon_settings FILE RECORD: merges the stack's settings into the daemon.json FILE and
# applies them: nothing to do, write only (Docker not running yet), write and reload (only
# reloadable settings changed; recorded in RECORD), or write and restart (no container of
# another stack runs, or the stack allows it). Otherwise stops before changing anything.
apply_daemon_settings() {
  local target="$1" record="$2" plan key
  local -a keys=() restart_keys=()
  plan="$(daemon_plan "${target}")" || exit 1
  mapfile -t keys < <(plan_field changed "${plan}")
  if ((${#keys[@]} == 0)); then
    ok "${target} has the stack's settings (other keys left as they are)"
    return 0
  fi
  if [[ -x /usr/bin/dockerd ]] && has_line "$(dockerd --help 2>&1 || true)" -- '--validate'; then
    dockerd --validate --config-file "${SCRATCH}/daemon.merged.json" >/dev/null \
      || die "the merged ${target} is rejected by dockerd --validate"
  fi
  for key in "${keys[@]}"; do
    [[ " ${DOCKER_RELOADABLE_KEYS[*]} " == *" ${key} "* ]] || restart_keys+=("${key}")
  done
  if ! systemctl is-active --quiet docker.service 2>/dev/null; then
    write_daemon_json "${target}" "${keys[*]}"
    return 0
  fi
  if ((${#restart_keys[@]} == 0)); then
    write_daemon_json "${target}" "${keys[*]}"
    log "reloading docker to apply ${keys[*]} (SIGHUP: no container restarts)"
    systemctl reload docker.service
    wait_for_docker
    if [[ " ${keys[*]} " == *" live-restore "* ]]; then
      [[ "$(timeout 20 docker info --format '{{.LiveRestoreEnabled}}' 2>/dev/null || true)" == "true" ]] \
        || die "docker reloaded, but live-restore is still off (docker info); restart Docker in a maintenance window"
    fi
    mkdir -p "$(dirname "${record}")"
    cp "${target}" "${record}"
    changed "reloaded docker: ${keys[*]} applied live"
    return 0
  fi
  local foreign
  foreign="$(foreign_containers)" || die "cannot list the running containers (docker ps); not restarting Docker blind"
  if [[ -n "${foreign}" && "${ONEBOX_ALLOW_DOCKER_RESTART}" != "true" ]]; then
    die "the Docker daemon settings ${restart_keys[*]} take effect only when Docker restarts, and containers of other stacks run: ${foreign//$'\n'/, }. A restart stops them (those without live-restore in effect). Nothing was changed. Either add these settings to ${target} and restart Docker yourself in a maintenance window, or set host.allowDockerRestart: true to let the bootstrap restart it"
  fi
  write_daemon_json "${target}" "${keys[*]}"
  log "restarting docker to apply ${restart_keys[*]}${foreign:+ (allowed by host.allowDockerRestart; other containers: ${foreign//$'\n'/, })}"
  systemctl restart docker.service
  wait_for_docker
  rm -f "${record}"
  changed "restarted docker with the new daemon settings"
}

# write_daemon_json FILE KEYS: installs the merged daemon.json (root-owned, 0644).
write_daemon_json() {
  converge_file "${SCRATCH}/daemon.merged.json" "$1" 0644
  changed "set ${2// /, } in $1 (other keys kept)"
}

wait_for_docker() {
  local i
  for ((i = 0; i < 60; i++)); do
    timeout 10 docker info >/dev/null 2>&1 && return 0
    sleep 1
  done
  journalctl -u docker.service --no-pager -n 15 >&2 || true
  die "docker did not come up within 60 s (journalctl -u docker)"
}

docker_works() {
  command -v docker >/dev/null 2>&1 && timeout 20 docker compose version >/dev/null 2>&1
}

# Distribution packages providing Docker and the compose v2 plugin on this release
# (empty when the release has no compose v2 package).
distro_docker_packages() {
  case "${OS_ID}:${OS_VERSION}" in
    debian:13) echo "docker.io docker-cli docker-compose" ;;
    ubuntu:24.04) echo "docker.io docker-compose-v2" ;;
    ubuntu:22.04)
      # jammy-updates carries docker-compose-v2 on current mirrors; used only with distro.
      apt-cache show docker-compose-v2 >/dev/null 2>&1 && echo "docker.io docker-compose-v2" ;;
    *) ;;
  esac
}

docker_source() {
  case "${ONEBOX_DOCKER_SOURCE}" in
    auto)
      case "${OS_ID}:${OS_VERSION}" in
        debian:13 | ubuntu:24.04) echo distro ;;
        *) echo docker ;;
      esac
      ;;
    *) echo "${ONEBOX_DOCKER_SOURCE}" ;;
  esac
}

# H2: Docker's repository with its key pinned by fingerprint and referenced with signed-by.
setup_docker_repository() {
  command -v gpg >/dev/null 2>&1 || install_packages gpg
  install -d -m 0755 /etc/apt/keyrings
  local key="${SCRATCH}/docker.asc" have_fpr=""
  if [[ -s "${DOCKER_KEYRING}" ]]; then
    have_fpr="$(key_fingerprints "${DOCKER_KEYRING}")"
  fi
  if [[ "${have_fpr}" != "${DOCKER_KEY_FPR}" ]]; then
    log "downloading Docker's apt signing key"
    curl -fsSL --proto '=https' --tlsv1.2 --retry 3 --max-time 60 \
      "https://download.docker.com/linux/${OS_ID}/gpg" -o "${key}"
    [[ "$(key_fingerprints "${key}")" == "${DOCKER_KEY_FPR}" ]] \
      || die "the key from download.docker.com does not have the expected fingerprint ${DOCKER_KEY_FPR}"
    converge_file "${key}" "${DOCKER_KEYRING}" 0644
    changed "installed Docker's signing key ${DOCKER_KEYRING} (fingerprint ${DOCKER_KEY_FPR})"
  else
    ok "Docker's signing key ${DOCKER_KEYRING} is present"
  fi
  local arch
  arch="$(dpkg --print-architecture)"
  printf 'deb [arch=%s signed-by=%s] https://download.docker.com/linux/%s %s stable\n' \
    "${arch}" "${DOCKER_KEYRING}" "${OS_ID}" "${OS_CODENAME}" >"${SCRATCH}/docker.list"
  converge_file "${SCRATCH}/docker.list" "${DOCKER_SOURCES}" 0644
  if ((CHANGED)); then
    changed "added Docker's apt repository ${DOCKER_SOURCES}"
  fi
}

key_fingerprints() {
  GNUPGHOME="${SCRATCH}/gnupg" gpg --batch --quiet --show-keys --with-colons "$1" 2>/dev/null \
    | awk -F: '$1 == "pub" { want = 1; next } want && $1 == "fpr" { print $10; exit }' || true
}

install_docker() {
  section "H2 Docker and compose v2 from signed apt repositories"
  if docker_works; then
    ok "$(docker --version) with $(docker compose version 2>/dev/null) is installed; source left as it is"
  else
    local source pkgs
    if pkg_installed docker-ce; then
      source=docker
    elif pkg_installed docker.io; then
      source=distro
    else
      source="$(docker_source)"
    fi
    if [[ "${source}" == "distro" ]]; then
      pkgs="$(distro_docker_packages)"
      if [[ -z "${pkgs}" ]] && pkg_installed docker.io; then
        # An existing distribution Docker (e.g. Debian 12's 20.10) without a compose v2
        # package: keep the engine, add only Docker's compose plugin from its signed repository.
        mkdir -p "${SCRATCH}/gnupg" && chmod 700 "${SCRATCH}/gnupg"
        setup_docker_repository
        pkgs="docker-compose-plugin"
      fi
      [[ -n "${pkgs}" ]] || die "${OS_ID} ${OS_VERSION} has no distribution package with the compose v2 plugin; set ONEBOX_DOCKER_SOURCE=docker (or auto)"
      log "Docker from the distribution: ${pkgs}"
    else
      mkdir -p "${SCRATCH}/gnupg" && chmod 700 "${SCRATCH}/gnupg"
      setup_docker_repository
      pkgs="docker-ce docker-ce-cli containerd.io docker-compose-plugin"
      log "Docker from download.docker.com: ${pkgs}"
    fi
    local -a pkg_list
    read -ra pkg_list <<<"${pkgs}"
    install_packages "${pkg_list[@]}"
  fi
  if ! systemctl is-enabled --quiet docker.service 2>/dev/null || ! systemctl is-active --quiet docker.service; then
    systemctl enable --now docker.service >/dev/null 2>&1 || true
    changed "enabled and started docker.service"
  fi
  wait_for_docker
  docker compose version >/dev/null 2>&1 || die "docker compose version fails after the installation"
  ok "$(docker compose version) (docker $(docker version --format '{{.Server.Version}}'))"
  report_docker_group
}

in_docker_group() {
  local groups
  groups=" $(id -nG "${ONEBOX_DEPLOY_USER}" 2>/dev/null || true) "
  [[ "${groups}" == *" docker "* ]]
}

# Membership in the docker group is root-equivalent (docker run -v /:/host). The onebox
# steps run docker through sudo over the deploy key instead, so the deploy user is NOT
# added; an existing membership is reported and left alone.
report_docker_group() {
  if in_docker_group; then
    warn "${ONEBOX_DEPLOY_USER} is in the docker group (root-equivalent); left as found. Remove with: gpasswd -d ${ONEBOX_DEPLOY_USER} docker"
  else
    ok "${ONEBOX_DEPLOY_USER} is not in the docker group (docker runs through sudo)"
  fi
}
