#!/usr/bin/env bash
# Builds the stack's proxy image: Caddy with onebox's rate limiter
# (proxy/caddy), on the official Caddy image of the version pinned in
# proxy/caddy/go.mod. Rate limits and allowFrom need it as proxy.image.
#
#   scripts/build-proxy-image.sh                       # tags onebox-caddy:<caddy version>
#   scripts/build-proxy-image.sh ghcr.io/acme/caddy    # tags ghcr.io/acme/caddy:<caddy version>
#   scripts/build-proxy-image.sh ghcr.io/acme/caddy --push
#
# With deploy.imageSource: upload the image is streamed to the server from
# this machine; with registry, push it (--push) to a registry the server can
# pull from (see deploy.registries). To update Caddy: bump
# github.com/caddyserver/caddy/v2 in proxy/caddy/go.mod
# (`cd proxy/caddy && go get github.com/caddyserver/caddy/v2@vX.Y.Z && go mod tidy`),
# run this again and set the new tag as proxy.image.
#
# Needs docker, and Docker Hub (golang and caddy images) reachable.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly SRC="${ROOT}/proxy/caddy"

log() { printf '[build-proxy-image] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# The version of a module or of Go as pinned in go.mod.
caddy_version() {
  awk '$1 == "github.com/caddyserver/caddy/v2" { sub(/^v/, "", $2); print $2; exit }' "${SRC}/go.mod"
}
go_version() {
  awk '$1 == "go" { print $2; exit }' "${SRC}/go.mod"
}

main() {
  local repo="onebox-caddy" push=false arg
  for arg in "$@"; do
    case "${arg}" in
      --push) push=true ;;
      -h|--help) sed -n '2,17p' "${BASH_SOURCE[0]}"; return 0 ;;
      -*) die "unknown option ${arg}" ;;
      *) repo="${arg}" ;;
    esac
  done
  command -v docker >/dev/null || die "docker not found"
  local caddy go
  caddy="$(caddy_version)"
  go="$(go_version)"
  [[ "${caddy}" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "no Caddy version found in ${SRC}/go.mod"
  [[ "${go}" =~ ^[0-9]+\.[0-9]+(\.[0-9]+)?$ ]] || die "no go version found in ${SRC}/go.mod"

  local tag="${repo}:${caddy}"
  log "building ${tag} (Caddy ${caddy}, Go ${go})"
  docker build --pull \
    --build-arg "GO_VERSION=${go}" --build-arg "CADDY_VERSION=${caddy}" \
    -t "${tag}" "${SRC}"
  docker run --rm --entrypoint caddy "${tag}" list-modules \
    | grep -qx 'http.handlers.onebox_rate_limit' \
    || die "${tag} lacks the rate-limit module"
  if [[ "${push}" == true ]]; then
    docker push "${tag}"
  fi
  log "built ${tag}; set it as the proxy image: pulumi config set --path proxy.image ${tag}"
}

main "$@"
