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
  local rc info
  same_content "${SELF_DIR}/daemon.json" "${DAEMON_JSON}" && rc=0 || rc=1
  result H7 "${rc}" "${DAEMON_JSON} has log rotation, live-restore, no-new-privileges, userland-proxy false"
  systemctl is-active --quiet docker.service && rc=0 || rc=1
  result H7 "${rc}" "docker is running"
  info="$(timeout 20 docker info --format '{{.LoggingDriver}} {{.LiveRestoreEnabled}} {{json .SecurityOptions}}' 2>/dev/null || true)"
  [[ "${info}" == "json-file true "* ]] && rc=0 || rc=1
  result H7 "${rc}" "docker info: log driver json-file, live-restore on (${info%% \[*})"
  [[ "${info}" == *name=no-new-privileges* ]] && rc=0 || rc=1
  result H7 "${rc}" "docker info: no-new-privileges in the daemon's security options"
  # The running daemon must have been started after daemon.json last changed.
  local started file_time
  started="$(systemctl show -p ActiveEnterTimestamp --value docker.service 2>/dev/null || true)"
  started="$(date -d "${started}" +%s 2>/dev/null || echo 0)"
  file_time="$(stat -c %Y "${DAEMON_JSON}" 2>/dev/null || echo 0)"
  ((started > 0 && file_time <= started)) && rc=0 || rc=1
  result H7 "${rc}" "dockerd started after ${DAEMON_JSON} last changed (no restart pending)"
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
configure_docker_daemon() {
  section "H7 Docker daemon settings"
  if [[ -x /usr/bin/dockerd ]] && has_line "$(dockerd --help 2>&1 || true)" -- '--validate'; then
    dockerd --validate --config-file "${SELF_DIR}/daemon.json" >/dev/null \
      || die "${SELF_DIR}/daemon.json is rejected by dockerd --validate"
  fi
  converge_file "${SELF_DIR}/daemon.json" "${DAEMON_JSON}" 0644
  if ((CHANGED == 0)); then
    ok "${DAEMON_JSON} is current"
    return 0
  fi
  changed "wrote ${DAEMON_JSON}"
  if systemctl is-active --quiet docker.service 2>/dev/null; then
    log "restarting docker to apply ${DAEMON_JSON}"
    systemctl restart docker.service
    wait_for_docker
    changed "restarted docker with the new daemon settings"
  fi
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
