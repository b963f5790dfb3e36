#!/usr/bin/env bash
# Builds the Pulumi engine binaries that the engine tests need from Go modules
# and caches them by version outside the repo. Prints the bin directory as the
# last line on stdout (everything else goes to stderr):
#
#   BIN=$(bash tests/engine/toolchain.sh)
#
# Cache: ${ONEBOX_CACHE_DIR:-$HOME/.cache/onebox}/engine/<key>/bin, where the
# key names every pinned version plus a hash of this script, the recipe files
# under tests/engine/toolchain/ and the Go version. A warm run only checks the
# files and prints the path. A cold build (about 25-35 min on 2 cores) runs in
# a temp dir beside the cache and is renamed into place only when complete and
# verified. Go's own caches stay at their defaults (go env GOCACHE, GOMODCACHE:
# ~/.cache/go-build and ~/go/pkg/mod); only Go modules are downloaded, through
# GOPROXY, and go.sum pins every one of them.
#
# Versions and why (probed on the module proxy on 2026-11-29):
# - pulumi CLI v3.276.0 (tests/engine/toolchain/cli): the newest version that
#   exists both on npm (@pulumi/pulumi ..., 3.269.0, 3.270.0, 3.276.0) and on
#   the proxy (pkg/v3 and sdk/v3 v3.276.0 are served; pkg v3.271-v3.273 and
#   v3.269 are refused). It is not older than the npm SDK the repo locks
#   (3.248.0), and it builds. Tags osusergo,grpcnotrace, version stamped.
# - pulumi-language-nodejs: NOT BUILT. The proxy refuses every version of
#   github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs/v3 (403 on
#   @v/list, @latest, v3.276.0 and commit queries), so a TypeScript program
#   run by `pulumi up` has no language host; the Node automation API with an
#   inline program (its own in-process language server) needs none.
# - pulumi-resource-command: NOT BUILT. The proxy refuses
#   github.com/pulumi/pulumi-command/provider at 7f3eb6f3b77c, v1.0.0 and
#   v1.2.2 (403), and v1.2.1 does not exist as a module version (404).
# - random and tls: the proxy refuses every version of
#   github.com/pulumi/pulumi-random/provider/v4 (v4.16.0..v4.21.2) and
#   github.com/pulumi/pulumi-tls/provider/v5 (v5.0.1..v5.6.1). What is served
#   is the bridge github.com/pulumi/pulumi-terraform-bridge/v3 v3.120.0 (the
#   newest listed), whose module ships Pulumi's own bridged random and tls
#   providers (pkg/pf/tests/internal/testprovider/cmd/pulumi-resource-random
#   and -tls, with committed schema.json and bridge-metadata.json). Those mains
#   are built here against the newest served upstream Terraform providers:
#   terraform-provider-random v1.3.2-0.20260824155315-e1092b0cfc07 (after
#   3.9.0) and terraform-provider-tls v1.2.1-0.20260819085117-d044ca7c6f52
#   (after 4.3.0), through shim modules of ours (tests/engine/toolchain/
#   providers/shims) that re-export the upstreams' internal/provider.New.
#   Resource tokens match @pulumi/random 4.21.2 and @pulumi/tls 5.6.1
#   (random:index/randomPassword:RandomPassword, tls:index/privateKey:...,
#   selfSignedCert, certRequest, locallySignedCert; not randomUuid4/7). The
#   plugins report the versions written in the bridge's code (random 4.8.2,
#   tls 4.0.4); no version variable exists to stamp there. On PATH or next to
#   `pulumi`, the CLI uses them whatever version the SDK asks for.
# - terraform-plugin-sdk/v2 => Pulumi's fork v2.0.0-20250923233607-7f1981c8674a
#   (the bridge's own replace). The fork implements terraform-plugin-go
#   v0.29's server interface only, so terraform-plugin-go is held at v0.29.0
#   and terraform-plugin-framework at v1.17.0 (the newest framework built on
#   plugin-go v0.29) by replaces; both upstream providers compile against them.
set -euo pipefail

readonly CLI_VERSION="v3.276.0"
readonly BRIDGE_VERSION="v3.120.0"
readonly TF_RANDOM_COMMIT="e1092b0cfc07"
readonly TF_TLS_COMMIT="d044ca7c6f52"
readonly RANDOM_PLUGIN_VERSION="4.8.2"
readonly TLS_PLUGIN_VERSION="4.0.4"

readonly VERSION_PKG="github.com/pulumi/pulumi/sdk/v3/go/common/version"
readonly CLI_PKG="github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
readonly TESTPROVIDER_CMDS="github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tests/internal/testprovider/cmd"
readonly BINARIES=(pulumi pulumi-resource-random pulumi-resource-tls)

WORK_DIR=""

cleanup() {
  if [[ -n "$WORK_DIR" ]]; then
    rm -rf -- "$WORK_DIR"
  fi
}

log() {
  printf 'toolchain: %s\n' "$*" >&2
}

die() {
  log "error: $*"
  exit 1
}

find_go() {
  if command -v go >/dev/null 2>&1; then
    command -v go
  elif [[ -x /usr/local/go/bin/go ]]; then
    printf '%s\n' /usr/local/go/bin/go
  else
    die "no go command on PATH or at /usr/local/go/bin/go"
  fi
}

# Short hash of everything that decides what gets built.
recipe_hash() {
  local script_dir=$1 go_version=$2
  {
    printf '%s\n' "$go_version"
    cat "$script_dir/toolchain.sh"
    (cd "$script_dir/toolchain" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum --)
  } | sha256sum | cut -c1-12
}

all_present() {
  local bin=$1 name
  for name in "${BINARIES[@]}"; do
    [[ -x "$bin/$name" ]] || return 1
  done
}

go_build() {
  local go=$1 dir=$2
  shift 2
  (cd "$dir" && CGO_ENABLED=0 GOOS=linux GOARCH=amd64 "$go" build -mod=readonly -buildvcs=false -trimpath "$@")
}

# Starts a plugin with no arguments, waits (bounded) for the port it prints,
# then stops it.
check_plugin_starts() {
  local exe=$1 out=$2 pid port="" i
  "$exe" >"$out.stdout" 2>"$out.stderr" &
  pid=$!
  for ((i = 0; i < 150; i++)); do
    if [[ -s "$out.stdout" ]]; then
      port=$(head -n 1 "$out.stdout")
      break
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if [[ ! "$port" =~ ^[0-9]+$ ]]; then
    cat "$out.stderr" >&2 || true
    die "$(basename "$exe") printed no port within 30s"
  fi
  log "$(basename "$exe") started and listened on port $port"
}

# The CLI against a local file backend, offline: login, stack init, a secret
# config value (passphrase secrets provider), stack ls, stack rm.
check_file_backend() {
  local pulumi=$1 dir=$2
  mkdir -p "$dir/state" "$dir/home" "$dir/project"
  printf 'name: toolchain-check\nruntime: nodejs\n' >"$dir/project/Pulumi.yaml"
  (
    cd "$dir/project"
    export PULUMI_HOME="$dir/home"
    export PULUMI_BACKEND_URL="file://$dir/state"
    export PULUMI_CONFIG_PASSPHRASE="x"
    export PULUMI_SKIP_UPDATE_CHECK="true"
    export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION="true"
    timeout 60 "$pulumi" login --non-interactive >&2
    timeout 60 "$pulumi" stack init check --non-interactive >&2
    timeout 60 "$pulumi" config set --secret token s3cret --non-interactive >&2
    [[ "$(timeout 60 "$pulumi" config get token --non-interactive)" == "s3cret" ]] ||
      die "secret config did not round-trip"
    timeout 60 "$pulumi" stack ls --non-interactive >&2
    timeout 60 "$pulumi" stack rm check --yes --non-interactive >&2
  )
  log "file backend check passed (login, stack init, secret config, stack ls, stack rm)"
}

build_all() {
  local go=$1 recipe=$2 stage=$3
  local bin="$stage/bin" started
  mkdir -p "$bin"

  started=$SECONDS
  log "building pulumi $CLI_VERSION"
  go_build "$go" "$recipe/cli" -tags osusergo,grpcnotrace \
    -ldflags "-s -w -X $VERSION_PKG.Version=$CLI_VERSION" \
    -o "$bin/pulumi" "$CLI_PKG" >&2
  log "pulumi built in $((SECONDS - started))s"

  started=$SECONDS
  log "building pulumi-resource-random and pulumi-resource-tls (bridge $BRIDGE_VERSION)"
  go_build "$go" "$recipe/providers" -ldflags "-s -w" -o "$bin/" \
    "$TESTPROVIDER_CMDS/pulumi-resource-random" \
    "$TESTPROVIDER_CMDS/pulumi-resource-tls" >&2
  log "providers built in $((SECONDS - started))s"
}

verify_all() {
  local bin=$1 scratch=$2 version
  mkdir -p "$scratch"
  version=$("$bin/pulumi" version)
  [[ "$version" == "$CLI_VERSION" ]] || die "pulumi version printed '$version', not $CLI_VERSION"
  log "pulumi version: $version"
  check_plugin_starts "$bin/pulumi-resource-random" "$scratch/random"
  check_plugin_starts "$bin/pulumi-resource-tls" "$scratch/tls"
  check_file_backend "$bin/pulumi" "$scratch/backend"
}

write_manifest() {
  local stage=$1 key=$2 go_version=$3
  {
    printf 'key %s\n' "$key"
    printf 'go %s\n' "$go_version"
    printf 'pulumi %s\n' "$CLI_VERSION"
    printf 'pulumi-resource-random %s (bridge %s, terraform-provider-random %s)\n' \
      "$RANDOM_PLUGIN_VERSION" "$BRIDGE_VERSION" "$TF_RANDOM_COMMIT"
    printf 'pulumi-resource-tls %s (bridge %s, terraform-provider-tls %s)\n' \
      "$TLS_PLUGIN_VERSION" "$BRIDGE_VERSION" "$TF_TLS_COMMIT"
    printf 'pulumi-language-nodejs not built (module refused by the proxy)\n'
    printf 'pulumi-resource-command not built (module refused by the proxy)\n'
    (cd "$stage/bin" && sha256sum -- "${BINARIES[@]}")
  } >"$stage/MANIFEST"
}

main() {
  local script_dir go go_version hash key cache_root final started
  script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  go=$(find_go)
  go_version=$("$go" env GOVERSION)
  hash=$(recipe_hash "$script_dir" "$go_version")
  key="${CLI_VERSION#v}-cmdnone-random${RANDOM_PLUGIN_VERSION}tf${TF_RANDOM_COMMIT}-tls${TLS_PLUGIN_VERSION}tf${TF_TLS_COMMIT}-${hash}"
  cache_root="${ONEBOX_CACHE_DIR:-$HOME/.cache/onebox}/engine"
  final="$cache_root/$key"

  if all_present "$final/bin"; then
    log "cached: $final"
    printf '%s\n' "$final/bin"
    return 0
  fi
  if [[ -e "$final" ]]; then
    log "removing incomplete cache entry $final"
    rm -rf -- "$final"
  fi

  mkdir -p "$cache_root"
  # Leftovers of builds killed more than a day ago.
  find "$cache_root" -mindepth 1 -maxdepth 1 -name '.build.*' -mmin +1440 -exec rm -rf -- {} + || true
  trap cleanup EXIT
  WORK_DIR=$(mktemp -d "$cache_root/.build.XXXXXX")
  local work="$WORK_DIR"
  log "cold build of $key in $work ($go_version; GOCACHE=$("$go" env GOCACHE), GOMODCACHE=$("$go" env GOMODCACHE))"

  started=$SECONDS
  build_all "$go" "$script_dir/toolchain" "$work/stage"
  log "build finished in $((SECONDS - started))s"
  verify_all "$work/stage/bin" "$work/scratch"
  write_manifest "$work/stage" "$key" "$go_version"

  # The rename is atomic: a killed build leaves only the .build.* temp dir.
  if ! mv -T -- "$work/stage" "$final" 2>/dev/null; then
    all_present "$final/bin" || die "could not move the build into $final"
    log "another run filled $final first; keeping it"
  fi
  log "cached: $final"
  printf '%s\n' "$final/bin"
}

main "$@"
