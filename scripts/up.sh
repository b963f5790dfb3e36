#!/usr/bin/env bash
# Deploys one environment: installs the program's dependencies when missing,
# selects (or creates) the stack on the local file backend unless another
# backend is configured, then runs `pulumi up`.
#
#   scripts/up.sh [STACK] [-- extra pulumi up flags]
#
# STACK defaults to "prod". The state backend defaults to a local directory
# (file://$HOME/.onebox-state); set PULUMI_BACKEND_URL to use another one.
# Secrets in the stack config are encrypted with a passphrase: export
# PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE) first.
set -euo pipefail

die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

main() {
  local stack="prod"
  if [[ $# -gt 0 && "$1" != "--" ]]; then
    stack="$1"
    shift
  fi
  if [[ $# -gt 0 && "$1" == "--" ]]; then
    shift
  fi

  local root
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  cd "$root"

  command -v pulumi >/dev/null 2>&1 || die "the Pulumi CLI is not installed; see README.md (Prerequisites)"
  command -v node >/dev/null 2>&1 || die "Node.js 20 or newer is required"
  [[ -f "Pulumi.${stack}.yaml" ]] || die "no Pulumi.${stack}.yaml; copy Pulumi.prod.yaml and edit it (README: Create a stack)"

  if [[ ! -d node_modules ]]; then
    echo "installing dependencies (npm ci)"
    npm ci --no-audit --no-fund
  fi

  if [[ -z "${PULUMI_BACKEND_URL:-}" ]]; then
    local state_dir="${ONEBOX_STATE_DIR:-$HOME/.onebox-state}"
    mkdir -p "$state_dir"
    chmod 0700 "$state_dir"
    export PULUMI_BACKEND_URL="file://${state_dir}"
    echo "state backend: ${PULUMI_BACKEND_URL} (set PULUMI_BACKEND_URL to change)"
  fi
  if [[ -z "${PULUMI_CONFIG_PASSPHRASE:-}" && -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]]; then
    die "set PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE: it encrypts the stack's secrets in the state"
  fi

  pulumi stack select --create "$stack"
  pulumi up --stack "$stack" "$@"
}

main "$@"
