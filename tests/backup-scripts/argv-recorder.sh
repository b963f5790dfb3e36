#!/usr/bin/env bash
# argv-recorder.sh - test helper for tests/backup-scripts/backup.test.ts.
# Installed under the name of a real tool (rclone, curl, age) in a directory
# placed first on PATH: appends "<tool> <argv...>" to ARGV_LOG, then execs the
# real tool found further down PATH. Lets the tests assert that no secret ever
# appears on a command line (R3), and logs "env-leak: NAME" when a secret
# setting is in the tool's environment. Behaviour of the tool is unchanged.
set -euo pipefail

main() {
  local name self_dir dir
  name="$(basename "$0")"
  self_dir="$(cd "$(dirname "$0")" && pwd)"
  if [[ -n "${ARGV_LOG:-}" ]]; then
    printf '%s %s\n' "${name}" "$*" >>"${ARGV_LOG}"
    # Settings holding secrets must not be in a child's environment; the
    # rclone remote's variables only in rclone's.
    local var
    while IFS= read -r var; do
      case "${var}" in
        BACKUP_S3_SECRET_ACCESS_KEY | BACKUP_S3_ACCESS_KEY_ID | BACKUP_ALERT_URL | BACKUP_HEARTBEAT_URL)
          printf 'env-leak: %s in the environment of %s\n' "${var}" "${name}" >>"${ARGV_LOG}" ;;
        RCLONE_CONFIG_ONEBOX_*)
          [[ "${name}" == "rclone" ]] || printf 'env-leak: %s in the environment of %s\n' "${var}" "${name}" >>"${ARGV_LOG}" ;;
      esac
    done < <(compgen -e)
  fi
  local -a path_dirs
  IFS=: read -r -a path_dirs <<<"${PATH}"
  for dir in "${path_dirs[@]}"; do
    [[ -n "${dir}" && "${dir}" != "${self_dir}" ]] || continue
    if [[ -x "${dir}/${name}" && ! -d "${dir}/${name}" ]]; then
      exec "${dir}/${name}" "$@"
    fi
  done
  printf 'argv-recorder: %s not found on PATH\n' "${name}" >&2
  exit 127
}

main "$@"
