#!/usr/bin/env bash
# Installs what the test suites need and runs all of them, in order of cost:
# type check and lint, unit tests under Pulumi mocks, the library example, the
# real Pulumi engine (built from Go modules and cached), rendered-file validation,
# backup scripts against real PostgreSQL + S3, then the real-host suite that
# provisions a fresh Debian 13 server container over SSH.
#
#   bash scripts/test.sh            # everything (what CI runs)
#   bash scripts/test.sh --unit     # type check, lint and unit tests only
#
# Needs root (apt-get, dockerd) for the full run. Every loop is bounded.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
S3RVER_PREFIX="${ONEBOX_S3RVER_PREFIX:-/opt/s3rver}"
APT_PACKAGES=(docker.io debootstrap shellcheck openssh-client postgresql rclone age curl jq ca-certificates openssl faketime)

log() {
  printf '[test] %s\n' "$*" >&2
}

need_apt() {
  local missing=()
  local pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  if [[ ${#missing[@]} -gt 0 ]]; then
    log "installing Debian packages: ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
}

install_node_deps() {
  if [[ ! -d "$ROOT/node_modules" ]] || [[ "$ROOT/package-lock.json" -nt "$ROOT/node_modules/.package-lock.json" ]]; then
    log "npm ci"
    (cd "$ROOT" && npm ci --no-audit --no-fund)
  fi
  if [[ ! -x "$S3RVER_PREFIX/node_modules/.bin/s3rver" ]]; then
    log "installing s3rver into $S3RVER_PREFIX"
    npm install --no-audit --no-fund --prefix "$S3RVER_PREFIX" s3rver@3.7.1
  fi
  export S3RVER_BIN="$S3RVER_PREFIX/node_modules/.bin/s3rver"
}

start_dockerd() {
  if docker info >/dev/null 2>&1; then
    return 0
  fi
  log "starting dockerd"
  (dockerd >/var/log/onebox-dockerd.log 2>&1 &)
  local i
  for i in $(seq 1 60); do
    if docker info >/dev/null 2>&1; then
      log "dockerd ready after ${i}s"
      return 0
    fi
    sleep 1
  done
  log "dockerd did not start; last lines of its log:"
  tail -n 20 /var/log/onebox-dockerd.log >&2 || true
  return 1
}

run() {
  log "$*"
  (cd "$ROOT" && "$@")
}

# The engine toolchain: seconds from the cache, about half an hour to build on a
# machine that has none. It builds in the background at the lowest CPU priority
# while the other suites run, and the engine suite comes last.
ENGINE_PID=""
ENGINE_LOG=""
ENGINE_OUT=""
start_engine_toolchain() {
  ENGINE_LOG="$(mktemp "${TMPDIR:-/tmp}/onebox-toolchain.XXXXXX.log")"
  ENGINE_OUT="$(mktemp "${TMPDIR:-/tmp}/onebox-toolchain.XXXXXX.out")"
  log "engine toolchain: cached or building in the background (log: ${ENGINE_LOG})"
  nice -n 19 bash "$ROOT/tests/engine/toolchain.sh" >"$ENGINE_OUT" 2>"$ENGINE_LOG" &
  ENGINE_PID=$!
}

run_engine_suite() {
  log "waiting for the engine toolchain"
  if ! wait "$ENGINE_PID"; then
    log "the engine toolchain did not build; last lines of its log:"
    tail -n 30 "$ENGINE_LOG" >&2
    return 1
  fi
  local bin
  bin="$(tail -n 1 "$ENGINE_OUT")"
  log "engine toolchain: ${bin}"
  ONEBOX_ENGINE_BIN="$bin" run npm run test:engine
}

main() {
  local mode="${1:-all}"
  cd "$ROOT"
  if [[ "$mode" == "--unit" ]]; then
    install_node_deps
    run npm run typecheck
    run npm run lint
    run npm test
    return 0
  fi

  # Suites that need tools fail (instead of skipping) when one is missing.
  export ONEBOX_REQUIRE_TOOLS=1
  need_apt "${APT_PACKAGES[@]}"
  install_node_deps
  start_dockerd
  start_engine_toolchain

  run npm run typecheck
  run npm run lint
  run npm run schema:outputs -- --check
  # A change other teams could trip over needs a new major version and a changelog entry.
  run npm run contract:outputs -- --check
  # The unit suite (once, its clock just before a secret-rotation boundary, which it
  # crosses) and the backup scripts (as on a Sunday and on a Monday): each run's output is
  # printed whole. Today's date is no better a sample than these, and running the suites
  # again at today's date would add a quarter of an hour to CI.
  run bash scripts/test-calendar.sh --ci
  run npm run test:example
  run bash tests/host/fixture/base-image.sh
  run env ONEBOX_BASE_SUITE=bookworm bash tests/host/fixture/base-image.sh
  run bash tests/host/fixture/stack-images.sh
  # The stack's own Caddy build (proxy/caddy) for the proxy tests; the binary is cached by source hash.
  run bash tests/host/fixture/caddy-image.sh
  # A Caddy that routes by Traefik labels: the existing Traefik of the traefik-external tests.
  run bash tests/host/fixture/traefik-standin-image.sh
  # Debian's registry server (basic auth over TLS) for the private-registry test.
  run bash tests/host/fixture/registry-image.sh
  # Debian's PgBouncer for the pooler test (database.pooler).
  run bash tests/host/fixture/pgbouncer-image.sh
  run bash tests/render/validate-render.sh
  run bash tests/host/fixture/server-image.sh
  # One real-host suite at a time per machine: it uses fixed ports and container names.
  run flock -w 3600 /tmp/onebox-host-suite.lock npm run test:host
  # The real Pulumi engine (tests/engine/toolchain.sh builds it from Go modules once).
  run_engine_suite
}

main "$@"
