#!/usr/bin/env bash
# Renders every stack file of a checkout (Pulumi.<stack>.yaml) with `npm run
# render` into OUT/<stack>/, for a review of what the servers will receive. An
# invalid configuration is not an error here: its problems land in
# OUT/<stack>.error, so a pull request that breaks a stack still gets a diff
# showing why. Secrets are masked by the renderer (and CI has none to read).
#
#   bash scripts/ci/render-stacks.sh TREE OUT
#
# TREE is a checkout with its npm dependencies installed. Cloudflare's ranges
# (stacks with host.originLockdown) come from ONEBOX_CLOUDFLARE_IPS, by default
# the fixture of the repository this script belongs to, so base and head of a
# pull request render against the same ranges.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CLOUDFLARE_IPS="${ONEBOX_CLOUDFLARE_IPS:-${ROOT}/tests/fixtures/cloudflare-ips.json}"

# A release directory is named by the hash of its contents, so any change renames
# it; one fixed name lets a diff show the changed lines instead of every file
# removed and added (the id itself still shows where the step scripts name it).
name_release() {
  local dir
  for dir in "$1"/*/srv/onebox/*/releases/*; do
    [[ -d "${dir}" ]] || continue
    mv -- "${dir}" "$(dirname "${dir}")/RELEASE"
  done
}

main() {
  [[ $# -eq 2 ]] || { echo "usage: render-stacks.sh TREE OUT" >&2; return 2; }
  local tree out
  tree="$(cd "$1" && pwd)"
  mkdir -p "$2"
  out="$(cd "$2" && pwd)"
  local file stack count=0
  shopt -s nullglob
  for file in "${tree}"/Pulumi.*.yaml; do
    stack="$(basename "${file}" .yaml)"
    stack="${stack#Pulumi.}"
    if (cd "${tree}" && timeout 300 npx --no-install tsx scripts/render.ts --stack-file "$(basename "${file}")" \
      --out "${out}/${stack}" --cloudflare-ips "${CLOUDFLARE_IPS}") >/dev/null 2>"${out}/${stack}.error"; then
      rm -f -- "${out}/${stack}.error"
      name_release "${out}/${stack}"
      printf 'rendered %s\n' "${stack}"
    else
      printf 'did not render %s (see %s)\n' "${stack}" "${out}/${stack}.error"
    fi
    count=$((count + 1))
  done
  printf '%d stack(s)\n' "${count}"
}

main "$@"
