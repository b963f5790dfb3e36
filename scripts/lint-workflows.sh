#!/usr/bin/env bash
# actionlint on the GitHub Actions workflows (.github/workflows/*.yml), with
# ShellCheck on their `run:` scripts. actionlint is a Go module: the first run
# builds the pinned version with the Go toolchain into a per-version cache
# outside the repository; later runs take it from there.
#
#   bash scripts/lint-workflows.sh                 # lint every workflow
#   bash scripts/lint-workflows.sh FILE...         # lint these files (tests)
#   bash scripts/lint-workflows.sh --print-binary  # install if needed, print the binary's path
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ACTIONLINT_VERSION="v1.7.12"
CACHE_DIR="${ONEBOX_TOOLS_CACHE:-${HOME}/.cache/onebox/tools}/actionlint-${ACTIONLINT_VERSION}"

log() {
  printf '[lint-workflows] %s\n' "$*" >&2
}

actionlint_binary() {
  local bin="${CACHE_DIR}/actionlint"
  if [[ -x "${bin}" ]] && "${bin}" -version 2>/dev/null | head -n 1 | grep -qxF "${ACTIONLINT_VERSION}"; then
    printf '%s\n' "${bin}"
    return 0
  fi
  command -v go >/dev/null 2>&1 || {
    log "Go is needed to build actionlint ${ACTIONLINT_VERSION} (https://go.dev/dl/), or put the binary at ${bin}"
    return 1
  }
  log "building actionlint ${ACTIONLINT_VERSION} into ${CACHE_DIR}"
  mkdir -p "${CACHE_DIR}"
  # A partial build never lands at the cached path: go install writes the binary last.
  GOBIN="${CACHE_DIR}" GOFLAGS=-mod=mod timeout 900 go install "github.com/rhysd/actionlint/cmd/actionlint@${ACTIONLINT_VERSION}" >&2
  printf '%s\n' "${bin}"
}

main() {
  local bin
  bin="$(actionlint_binary)"
  if [[ "${1:-}" == "--print-binary" ]]; then
    printf '%s\n' "${bin}"
    return 0
  fi
  local files=("$@")
  if [[ ${#files[@]} -eq 0 ]]; then
    shopt -s nullglob
    files=("${ROOT}"/.github/workflows/*.yml "${ROOT}"/.github/workflows/*.yaml)
    shopt -u nullglob
    [[ ${#files[@]} -gt 0 ]] || { log "no workflow under .github/workflows"; return 1; }
  fi
  command -v shellcheck >/dev/null 2>&1 || { log "shellcheck is needed (actionlint runs it on every run: script)"; return 1; }
  (cd "${ROOT}" && "${bin}" -shellcheck "$(command -v shellcheck)" -no-color "${files[@]}")
  printf 'actionlint %s: %d workflow(s) clean\n' "${ACTIONLINT_VERSION}" "${#files[@]}"
}

main "$@"
