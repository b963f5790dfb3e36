#!/usr/bin/env bash
# ShellCheck on every shell script of the repository: each tracked (or new,
# not ignored) file named *.sh or starting with a bash/sh shebang.
#
#   bash scripts/lint-shell.sh          # check them all
#   bash scripts/lint-shell.sh --list   # print the files it checks
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

list_scripts() {
  local file first
  while IFS= read -r -d '' file; do
    [[ -f "${ROOT}/${file}" ]] || continue
    if [[ "${file}" == *.sh ]]; then
      printf '%s\n' "${file}"
      continue
    fi
    first=""
    IFS= read -r first <"${ROOT}/${file}" || true
    if [[ "${first}" =~ ^#!.*[/[:space:]](ba)?sh([[:space:]]|$) ]]; then
      printf '%s\n' "${file}"
    fi
  done < <(git -C "${ROOT}" ls-files -z --cached --others --exclude-standard)
}

main() {
  local files=()
  mapfile -t files < <(list_scripts | sort -u)
  if [[ "${1:-}" == "--list" ]]; then
    printf '%s\n' "${files[@]}"
    return 0
  fi
  [[ ${#files[@]} -gt 0 ]] || { echo "no shell scripts found" >&2; return 1; }
  (cd "${ROOT}" && shellcheck -x "${files[@]}")
  printf 'shellcheck: %d scripts clean\n' "${#files[@]}"
}

main "$@"
