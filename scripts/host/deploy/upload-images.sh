#!/usr/bin/env bash
# Streams locally built images to the host: docker save | gzip | ssh docker load.
# Run by Pulumi (command.local.Command) for deploy.imageSource "upload", on the
# machine running Pulumi.
#
# Environment (set by the HostProvisioner; nothing secret is on the command line):
#   ONEBOX_SSH_HOST         address of the host
#   ONEBOX_SSH_PORT         SSH port
#   ONEBOX_SSH_USER         login user (docker load runs through sudo -n unless root)
#   ONEBOX_SSH_PRIVATE_KEY  private key, written to a 0600 file for the duration of the run
#   ONEBOX_SSH_HOST_KEY     the host's public key ("ssh-ed25519 AAAA..."), pinned (R1)
#   ONEBOX_IMAGES           space-separated image references, all present locally
set -euo pipefail

readonly LOG_TAG="onebox-upload-images"

log() { printf '%s: %s\n' "${LOG_TAG}" "$*"; }
die() {
  printf '%s: error: %s\n' "${LOG_TAG}" "$*" >&2
  exit 1
}

require_env() {
  local name
  for name in "$@"; do
    [[ -n "${!name:-}" ]] || die "${name} is not set"
  done
}

main() {
  require_env ONEBOX_SSH_HOST ONEBOX_SSH_PORT ONEBOX_SSH_USER ONEBOX_SSH_PRIVATE_KEY ONEBOX_SSH_HOST_KEY ONEBOX_IMAGES
  [[ "${ONEBOX_SSH_PORT}" =~ ^[0-9]+$ ]] || die "ONEBOX_SSH_PORT must be a port number"
  command -v docker >/dev/null 2>&1 || die "docker is not installed on this machine"
  command -v ssh >/dev/null 2>&1 || die "ssh is not installed on this machine"

  local -a images
  read -r -a images <<<"${ONEBOX_IMAGES}"
  local image
  for image in "${images[@]}"; do
    docker image inspect "${image}" >/dev/null 2>&1 || die "image ${image} is not in the local Docker; build or pull it first"
  done

  # Global, not local: the EXIT trap runs after main has returned.
  dir="$(mktemp -d)"
  trap 'rm -rf -- "${dir}"' EXIT
  (umask 077 && printf '%s\n' "${ONEBOX_SSH_PRIVATE_KEY}" >"${dir}/key")
  # known_hosts entry: plain host for port 22, [host]:port otherwise.
  local entry="${ONEBOX_SSH_HOST}"
  if [[ "${ONEBOX_SSH_PORT}" != 22 ]]; then
    entry="[${ONEBOX_SSH_HOST}]:${ONEBOX_SSH_PORT}"
  fi
  printf '%s %s\n' "${entry}" "${ONEBOX_SSH_HOST_KEY}" >"${dir}/known_hosts"

  local remote="docker load"
  if [[ "${ONEBOX_SSH_USER}" != root ]]; then
    remote="sudo -n docker load"
  fi
  log "uploading ${#images[@]} image(s) to ${ONEBOX_SSH_USER}@${ONEBOX_SSH_HOST}: ${images[*]}"
  docker save "${images[@]}" | gzip -1 | ssh \
    -o BatchMode=yes \
    -o IdentitiesOnly=yes \
    -o StrictHostKeyChecking=yes \
    -o UserKnownHostsFile="${dir}/known_hosts" \
    -o GlobalKnownHostsFile=/dev/null \
    -o ConnectTimeout=20 \
    -o ServerAliveInterval=15 \
    -i "${dir}/key" \
    -p "${ONEBOX_SSH_PORT}" \
    -- "${ONEBOX_SSH_USER}@${ONEBOX_SSH_HOST}" "${remote}"
  log "done"
}

main "$@"
