#!/usr/bin/env bash
# restore-drill.sh - restore drill (B4): restores the latest dump under
# <prefix>/daily/ into a throwaway PostgreSQL container and checks it.
#
#  - the container: `docker run -d --rm --network none` of DRILL_IMAGE (default:
#    the image of BACKUP_DB_CONTAINER), its random superuser password passed
#    through a 0600 --env-file (never on a command line); it is removed
#    whatever happens (trap);
#  - bounded wait (DRILL_READY_TIMEOUT_SECONDS) until it accepts TCP
#    connections on its own loopback (the image's init-time server listens on
#    the socket only, so this waits for the final server);
#  - pg_restore --list, then pg_restore --exit-on-error into a fresh database;
#  - sanity: at least one user table; every DRILL_TABLES table has rows;
#  - with point-in-time recovery (PITR_ENABLED=true), `pitr.sh drill`: a marker row
#    written just before a noted time must be in the database recovered to that
#    time, and one written just after it must not;
#  - result JSON in BACKUP_STATE_DIR/drill.json:
#      {"time","key","ok","skipped","userTables","tablesChecked":[{"table","rows"}],
#       "durationSeconds","error","pointInTime":{"ok","target","durationSeconds","error"}|null}
#    then the status file is refreshed. Failure: non-zero exit, ok=false, alert.
#
# Without a database (BACKUP_DB_CONTAINER empty) the drill records
# "skipped":"no-database" and exits 0.
# Encrypted dumps (*.age) cannot be decrypted on the host (B2): the drill then
# records "skipped":"encrypted" and exits 0 - unless DRILL_AGE_IDENTITY_FILE
# names an age identity file (0600, root-owned). Setting it places the private
# key on the host; it is off by default.
#
# Settings: the env file described in backup.sh.
set -euo pipefail
shopt -s inherit_errexit

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${SCRIPT_DIR}/lib.sh"

ONEBOX_LOG_TAG="onebox-restore-drill"
readonly DRILL_DB="onebox_drill"
readonly DRILL_SUPERUSER="postgres"
readonly DRILL_LABEL="onebox.role=backup-drill"

STEP="start"
DRILL_CONTAINER=""
DRILL_KEY=""
DRILL_STARTED=""
DRILL_USER_TABLES="null"
DRILL_CHECKED=""
DRILL_PITR="null"
DRILL_RECORDED=false

# usage: write_drill_json OK SKIPPED ERROR   (OK: true|false|null)
write_drill_json() {
  local ok="$1" skipped="$2" error="$3" duration=0
  [[ -z "${DRILL_STARTED}" ]] || duration=$(($(now_epoch) - DRILL_STARTED))
  printf '{"time":"%s","key":%s,"ok":%s,"skipped":%s,"userTables":%s,"tablesChecked":[%s],"durationSeconds":%d,"error":%s,"pointInTime":%s}\n' \
    "$(now_iso)" "$(json_str_or_null "${DRILL_KEY}")" "${ok}" "$(json_str_or_null "${skipped}")" \
    "${DRILL_USER_TABLES}" "${DRILL_CHECKED}" "${duration}" "$(json_str_or_null "${error}")" "${DRILL_PITR}" |
    atomic_write "${BACKUP_STATE_DIR}/drill.json" 0644
  DRILL_RECORDED=true
}

remove_container() {
  if [[ -n "${DRILL_CONTAINER}" ]]; then
    if docker rm -f "${DRILL_CONTAINER}" >/dev/null 2>&1; then
      log "removed drill container ${DRILL_CONTAINER}"
    else
      warn "could not remove drill container ${DRILL_CONTAINER} (already gone?)"
    fi
    DRILL_CONTAINER=""
  fi
}

on_exit() {
  local rc=$?
  trap - EXIT
  remove_container
  cleanup_private_tmp
  if ((rc != 0)); then
    err "restore drill FAILED at step '${STEP}' (exit ${rc})"
    if [[ "${DRILL_RECORDED}" != "true" ]]; then
      write_drill_json false "" "failed at step ${STEP}" || warn "could not write drill.json"
    fi
    write_status >/dev/null 2>&1 || warn "could not refresh the status file"
    send_alert restore-drill "${STEP}" "${rc}" "restore drill failed at step ${STEP}"
  fi
  exit "${rc}"
}

# psql in the drill container over its socket; prints tuples only.
drill_query() {
  docker exec "${DRILL_CONTAINER}" psql -X -w -U "${DRILL_SUPERUSER}" -d "${DRILL_DB}" \
    -v ON_ERROR_STOP=1 -tA -c "$1"
}

drill_ready() {
  docker exec "${DRILL_CONTAINER}" pg_isready -q -h 127.0.0.1 -U "${DRILL_SUPERUSER}" >/dev/null 2>&1 &&
    drill_query 'SELECT 1' >/dev/null 2>&1
}

# "schema.table" or "table" -> "schema"."table" (names already validated)
quote_table() {
  local t="$1"
  if [[ "${t}" == *.* ]]; then
    printf '"%s"."%s"' "${t%%.*}" "${t#*.}"
  else
    printf '"%s"' "${t}"
  fi
}

main() {
  load_env
  ensure_state_dir
  trap on_exit EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM

  STEP="prerequisites"
  require_cmds docker rclone flock
  STEP="lock"
  acquire_lock
  ONEBOX_RUN_LOG="${BACKUP_STATE_DIR}/last-drill.log"
  : >"${ONEBOX_RUN_LOG}"
  chmod 0600 "${ONEBOX_RUN_LOG}"
  make_private_tmp
  DRILL_STARTED="$(now_epoch)"
  if [[ -z "${BACKUP_DB_CONTAINER}" ]]; then
    log "no database is configured (BACKUP_DB_CONTAINER is empty): drill skipped"
    write_drill_json null no-database ""
    write_status
    return 0
  fi

  STEP="find-latest"
  DRILL_KEY="$(latest_dump_key)"
  [[ -n "${DRILL_KEY}" ]] || { err "no dump under $(s3_key daily '')"; return 1; }
  log "restore drill of ${DRILL_KEY}"

  STEP="download"
  local name downloaded dump image envfile password
  name="$(basename "${DRILL_KEY}")"
  downloaded="${ONEBOX_TMP}/${name}"
  download_file "${DRILL_KEY}" "${downloaded}"
  [[ -s "${downloaded}" ]] || { err "${DRILL_KEY} was not downloaded"; return 1; }

  dump="${downloaded}"
  if [[ "${name}" == *.age ]]; then
    if [[ -z "${DRILL_AGE_IDENTITY_FILE}" ]]; then
      log "latest dump is encrypted and the private key is not on this host (B2): drill skipped"
      write_drill_json null encrypted ""
      write_status
      return 0
    fi
    STEP="decrypt"
    require_cmds age
    check_private_file "${DRILL_AGE_IDENTITY_FILE}" "DRILL_AGE_IDENTITY_FILE"
    dump="${downloaded%.age}"
    age -d -i "${DRILL_AGE_IDENTITY_FILE}" -o "${dump}" "${downloaded}"
    log "dump decrypted with ${DRILL_AGE_IDENTITY_FILE}"
  fi

  STEP="image"
  image="${DRILL_IMAGE}"
  if [[ -z "${image}" ]]; then
    image="$(docker inspect --format '{{.Config.Image}}' "${BACKUP_DB_CONTAINER}")"
  fi
  [[ -n "${image}" ]] || { err "could not determine the drill image"; return 1; }

  STEP="remove-stale"
  # We hold the lock, so any drill container still around was left by a run
  # that was killed before its trap could remove it.
  local stale
  for stale in $(docker ps -aq --filter "label=${DRILL_LABEL}"); do
    warn "removing drill container ${stale} left by an earlier run"
    docker rm -f "${stale}" >/dev/null
  done

  STEP="start-container"
  envfile="${ONEBOX_TMP}/drill.env"
  password="$(head -c 48 /dev/urandom | base64 -w0 | tr -dc 'A-Za-z0-9')"
  (umask 077 && printf 'POSTGRES_PASSWORD=%s\nPOSTGRES_DB=%s\nPOSTGRES_USER=%s\n' \
    "${password}" "${DRILL_DB}" "${DRILL_SUPERUSER}" >"${envfile}")
  password=""
  DRILL_CONTAINER="onebox-drill-$(backup_clock %Y%m%d%H%M%S)-${RANDOM}"
  log "starting ${image} as ${DRILL_CONTAINER} (no network)"
  docker run -d --rm --name "${DRILL_CONTAINER}" --network none \
    --label "${DRILL_LABEL}" --env-file "${envfile}" "${image}" >/dev/null
  rm -f "${envfile}"

  STEP="wait-ready"
  local deadline tries=0
  deadline=$(($(now_epoch) + DRILL_READY_TIMEOUT_SECONDS))
  until drill_ready; do
    tries=$((tries + 1))
    if (($(now_epoch) >= deadline || tries > DRILL_READY_TIMEOUT_SECONDS * 2)); then
      err "drill database not ready after ${DRILL_READY_TIMEOUT_SECONDS}s"
      return 1
    fi
    sleep 1
  done
  log "drill database ready"

  STEP="verify-dump"
  verify_dump_archive "${dump}" "${DRILL_CONTAINER}"

  STEP="restore"
  docker exec -i "${DRILL_CONTAINER}" pg_restore -w -U "${DRILL_SUPERUSER}" -d "${DRILL_DB}" \
    --no-owner --no-privileges --exit-on-error <"${dump}"
  log "dump restored into the drill database"

  STEP="sanity"
  local t rows failures=0 tables=()
  DRILL_USER_TABLES="$(drill_query "SELECT count(*) FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')")"
  [[ "${DRILL_USER_TABLES}" =~ ^[0-9]+$ ]] || { DRILL_USER_TABLES="null"; err "could not count user tables"; return 1; }
  log "user tables restored: ${DRILL_USER_TABLES}"
  if ((DRILL_USER_TABLES == 0)); then
    err "the restored database has no user table"
    failures=$((failures + 1))
  fi
  split_words tables "${DRILL_TABLES}"
  for t in "${tables[@]}"; do
    if rows="$(drill_query "SELECT count(*) FROM $(quote_table "${t}")" 2>/dev/null)" && [[ "${rows}" =~ ^[0-9]+$ ]]; then
      log "table ${t}: ${rows} row(s)"
      ((rows > 0)) || { err "table ${t} is empty"; failures=$((failures + 1)); }
    else
      err "table ${t} is missing from the restored database"
      rows="null"
      failures=$((failures + 1))
    fi
    [[ -z "${DRILL_CHECKED}" ]] || DRILL_CHECKED+=","
    DRILL_CHECKED+="{\"table\":\"$(json_escape "${t}")\",\"rows\":${rows}}"
  done
  if ((failures > 0)); then
    write_drill_json false "" "sanity checks failed: ${failures} problem(s)"
    return 1
  fi

  remove_container
  if [[ "${PITR_ENABLED:-false}" == "true" ]]; then
    STEP="point-in-time"
    local pitr_out pitr_rc=0
    pitr_out="$("${SCRIPT_DIR}/pitr.sh" drill)" || pitr_rc=$?
    pitr_out="$(tail -n 1 <<<"${pitr_out}")"
    if [[ "${pitr_out}" =~ ^\{[^$'\n']*\}$ ]]; then
      DRILL_PITR="${pitr_out}"
    fi
    if ((pitr_rc != 0)); then
      write_drill_json false "" "the point-in-time recovery drill failed"
      return 1
    fi
  fi

  STEP="record"
  write_drill_json true "" ""
  write_status
  log "restore drill passed in $(($(now_epoch) - DRILL_STARTED))s (${DRILL_KEY})"
}

main "$@"
