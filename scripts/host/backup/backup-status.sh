#!/usr/bin/env bash
# backup-status.sh - computes the public backup status (B3, B5) from
# BACKUP_STATE_DIR/LAST_SUCCESS, LAST_FAILURE and drill.json and writes it
# atomically to BACKUP_STATUS_FILE (mode 0644; the reverse proxy serves it, so
# it holds no bucket name, credential or URL):
#
#   {"status":"ok"|"never"|"stale"|"failed"|"drill-failed","reason":"<why not ok>"|null,
#    "lastSuccess":"<ISO time>"|null,"ageSeconds":N|null,"maxAgeSeconds":N,
#    "lastKey":"<key>"|null,"lastFailure":{"at","step"}|null,
#    "checkedAt":"<ISO time>","drill":{...}|null}
#
# "ok" means a recent success, no failed run since, and no failed last drill.
# It also creates <dir of BACKUP_STATUS_FILE>/backup.stale when the status is
# not "ok" and removes it when it is; the proxy answers 503 while that marker
# exists. Run on a timer every few minutes (staleness grows with time) and after
# each backup and drill. Settings: see backup.sh (same env file).
# Exit status: 0 whatever the backup status is; non-zero only when the status
# could not be computed or written.
set -euo pipefail
shopt -s inherit_errexit

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${SCRIPT_DIR}/lib.sh"

ONEBOX_LOG_TAG="onebox-backup-status"

main() {
  load_env
  ensure_state_dir
  write_status
  log "backup status: ${ONEBOX_STATUS} (${BACKUP_STATUS_FILE})"
}

main "$@"
