#!/usr/bin/env bash
# Renders every committed stack file, and every example's (examples/<NNN-name>/
# Pulumi.<stack>.yaml, with stand-ins for the secrets its README sets:
# scripts/examples.ts), twice and checks, with the real tools:
#   - the two renders are byte-identical (deterministic output);
#   - the compose file passes `docker compose config -q` (compose v2) and the
#     Caddyfile passes `caddy validate`, inside the Debian 13 tools image
#     (tests/host/fixture/images/tools; no daemon needed by either validator),
#     with the stack's own Caddy build (proxy/caddy, from the current-Caddy test
#     image) in place of Debian's older one: the render uses options (trusted
#     proxies, rate limits) that only it knows;
#   - every rendered step script passes ShellCheck.
# Prints one line per check; exits non-zero on the first failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS_IMAGE="${ONEBOX_TOOLS_IMAGE:-onebox-test/tools:latest}"
CADDY_IMAGE="${ONEBOX_CADDY_IMAGE:-onebox-test/caddy:current}"
# Stands in for Cloudflare's published ranges (stacks with origin lockdown need them to render).
CLOUDFLARE_IPS="${ROOT}/tests/fixtures/cloudflare-ips.json"
WORK=""

log() {
  printf '[render] %s\n' "$*"
}

check_stack() {
  local stack="$1" work="$2" name="${3:-}"
  [[ -n "${name}" ]] || name="$(basename "${stack}" .yaml)"
  local a="${work}/${name}-a" b="${work}/${name}-b"
  (cd "${ROOT}" && npx --no-install tsx scripts/render.ts --stack-file "${stack}" --out "${a}" --cloudflare-ips "${CLOUDFLARE_IPS}" >/dev/null)
  (cd "${ROOT}" && npx --no-install tsx scripts/render.ts --stack-file "${stack}" --out "${b}" --cloudflare-ips "${CLOUDFLARE_IPS}" >/dev/null)
  diff -r "${a}" "${b}" >/dev/null || {
    log "FAIL ${name}: two renders differ"
    diff -r "${a}" "${b}" | head -n 20
    return 1
  }
  log "ok   ${name}: two renders are byte-identical"

  shellcheck -s bash "${a}"/*.stdin.sh
  log "ok   ${name}: rendered step scripts pass ShellCheck"

  docker run --rm --network none -v "${a}:/work:ro" -v "${work}/caddy:/usr/local/bin/caddy:ro" \
    -e COMPOSE=/usr/libexec/docker/cli-plugins/docker-compose "${TOOLS_IMAGE}" bash /work/validate.sh
  log "ok   ${name}: compose config and caddy validate accept the output"
}

main() {
  command -v shellcheck >/dev/null 2>&1 || { log "shellcheck is missing"; exit 1; }
  docker image inspect "${TOOLS_IMAGE}" >/dev/null 2>&1 || { log "${TOOLS_IMAGE} is missing: run tests/host/fixture/stack-images.sh"; exit 1; }
  docker image inspect "${CADDY_IMAGE}" >/dev/null 2>&1 || { log "${CADDY_IMAGE} is missing: run tests/host/fixture/caddy-image.sh"; exit 1; }
  WORK="$(mktemp -d)"
  trap 'rm -rf -- "${WORK}"' EXIT
  # The stack's Caddy build (a static binary), first on the tools image's PATH.
  local cid
  cid="$(docker create "${CADDY_IMAGE}")"
  docker cp "${cid}:/usr/bin/caddy" "${WORK}/caddy" >/dev/null
  docker rm "${cid}" >/dev/null
  docker run --rm --network none -v "${WORK}/caddy:/usr/local/bin/caddy:ro" --entrypoint caddy "${TOOLS_IMAGE}" list-modules \
    | grep -qx 'http.handlers.onebox_rate_limit' || { log "${CADDY_IMAGE}'s caddy lacks the onebox rate-limit module"; exit 1; }
  local stack count=0
  for stack in "${ROOT}"/Pulumi.*.yaml; do
    check_stack "$(basename "${stack}")" "${WORK}"
    count=$((count + 1))
  done
  ((count > 0)) || { log "no Pulumi.<stack>.yaml found"; exit 1; }
  # The examples, as a user's stack file looks once the README's secrets are set.
  local examples=0
  (cd "${ROOT}" && npx --no-install tsx scripts/examples.ts --out "${WORK}/examples" >/dev/null)
  for stack in "${WORK}"/examples/*/Pulumi.*.yaml; do
    check_stack "${stack}" "${WORK}" "$(basename "$(dirname "${stack}")")-$(basename "${stack}" .yaml)"
    examples=$((examples + 1))
  done
  ((examples >= 5)) || { log "expected the five examples, found ${examples} stack file(s)"; exit 1; }
  count=$((count + examples))
  shellcheck -x "${ROOT}"/scripts/*.sh "${ROOT}"/scripts/host/*/*.sh "${ROOT}"/tests/host/fixture/*.sh "${ROOT}"/tests/render/*.sh "${ROOT}"/.ci/run
  log "ok   ShellCheck on every committed script"
  log "${count} stack file(s) validated"
}

main "$@"
