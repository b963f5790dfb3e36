#!/usr/bin/env bash
# Turns two render directories (scripts/ci/render-stacks.sh of a pull request's
# base and head) into the Markdown of the pull request comment: per stack, the
# unified diff of every host file, step script and steps.json, or "no change".
# The first line is a marker by which the workflow finds and updates its earlier
# comment instead of adding one per push. The output stays under GitHub's
# comment limit: a longer diff is cut, saying so.
#
#   bash scripts/ci/render-diff.sh BASE_OUT HEAD_OUT > comment.md
set -euo pipefail

MARKER="<!-- onebox-render-diff -->"
# GitHub refuses comments over 65536 characters; leave room for the headings.
MAX_DIFF_CHARS="${ONEBOX_MAX_DIFF_CHARS:-60000}"
# Markdown code fences and inline code, spelt with escapes so no quoting looks like a command.
FENCE="$(printf '\x60\x60\x60')"
TICK="$(printf '\x60')"

stacks_of() {
  local dir="$1" entry
  for entry in "${dir}"/*; do
    [[ -e "${entry}" ]] || continue
    entry="$(basename "${entry}")"
    printf '%s\n' "${entry%.error}"
  done
}

main() {
  [[ $# -eq 2 ]] || { echo "usage: render-diff.sh BASE_OUT HEAD_OUT" >&2; return 2; }
  local base="$1" head="$2"
  local stacks=()
  mapfile -t stacks < <({ stacks_of "${base}"; stacks_of "${head}"; } | sort -u)
  local budget="${MAX_DIFF_CHARS}" stack diff changed=0
  printf '%s\n## What the servers will receive\n\n' "${MARKER}"
  printf 'Rendered host files and step scripts (%snpm run render%s, secrets masked) of the base and the head of this pull request.\n\n' "${TICK}" "${TICK}"
  for stack in "${stacks[@]}"; do
    if [[ -f "${head}/${stack}.error" ]]; then
      printf '### %s: the configuration does not validate\n\n%s\n%s\n%s\n\n' "${stack}" "${FENCE}" "$(head -c 4000 "${head}/${stack}.error")" "${FENCE}"
      changed=$((changed + 1))
      continue
    fi
    if [[ ! -d "${head}/${stack}" ]]; then
      printf '### %s: removed\n\n' "${stack}"
      changed=$((changed + 1))
      continue
    fi
    local from="${base}/${stack}"
    [[ -d "${from}" ]] || from="$(mktemp -d)"
    local rc=0
    # Without file times: the comment changes only when the rendered files do.
    diff="$(diff -ruN "${from}" "${head}/${stack}" | sed -E 's/^((---|[+]{3}) [^\t]*)\t.*$/\1/'; exit "${PIPESTATUS[0]}")" || rc=$?
    ((rc <= 1)) || { echo "diff failed on ${stack}" >&2; return 1; }
    if ((rc == 1)); then
      diff="${diff//"${from}/"/a/}"
      diff="${diff//"${head}/${stack}/"/b/}"
      local files
      files="$(grep -c '^diff -ruN ' <<<"${diff}" || true)"
      printf '### %s: %s file(s) change\n\n' "${stack}" "${files}"
      if ((${#diff} > budget)); then
        printf '%sdiff\n%s\n%s\n\n*Diff cut at %d characters: render both commits with scripts/ci/render-stacks.sh and diff -ruN the results for all of it.*\n\n' "${FENCE}" "${diff:0:budget}" "${FENCE}" "${budget}"
        budget=0
      else
        printf '%sdiff\n%s\n%s\n\n' "${FENCE}" "${diff}" "${FENCE}"
        budget=$((budget - ${#diff}))
      fi
      changed=$((changed + 1))
    else
      printf '### %s: no change\n\n' "${stack}"
    fi
  done
  printf '%d of %d stack(s) change.\n' "${changed}" "${#stacks[@]}"
}

main "$@"
