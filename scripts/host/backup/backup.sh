#!/usr/bin/env bash
# backup.sh - nightly backup of the onebox PostgreSQL database (and optional
# directories) to S3-compatible object storage.
#
# Steps: lock -> pg_dump -Fc inside the database container -> verify the dump
# with pg_restore --list (B1) -> optional age encryption with a public key (B2)
# -> upload with rclone to <prefix>/daily/ -> verify the object's size (B1) ->
# on the weekly day, server-side copy to <prefix>/weekly/ -> archive, upload and
# verify BACKUP_DIRS to <prefix>/files/ -> only then write LAST_SUCCESS
# atomically -> keep the newest BACKUP_LOCAL_KEEP dumps on the data volume ->
# with BACKUP_PRUNE=host, delete what is older than the retention under the
# prefix -> refresh the status file, ping the heartbeat.
# Any failing step: exit non-zero, LAST_SUCCESS untouched, the failing step on
# stderr, alert URL called (B3).
#
# Settings come from one env file sourced by bash: ${ONEBOX_BACKUP_ENV}, the
# stack's /etc/onebox/<app>-<env>/backup.env (its systemd units set it). Unset, the
# scripts take the only stack's file; with several stacks on the server they refuse.
# It must be a regular file owned by root with no group/other permission bits
# (0600); any other mode is refused before it is read.
#
# Variables (default in brackets):
#   BACKUP_S3_PROVIDER           aws|b2|r2|spaces|minio|other: the rclone profile
#                                (lib.sh rclone_provider) [aws; other with an endpoint]
#   BACKUP_S3_BUCKET             bucket name (required)
#   BACKUP_S3_REGION             [us-east-1]
#   BACKUP_S3_ENDPOINT           S3 endpoint URL; empty = AWS (required for any
#                                other provider) [empty]
#   BACKUP_S3_PREFIX             key prefix, e.g. myapp/prod; objects go under
#                                <prefix>/daily/, <prefix>/weekly/, <prefix>/files/ [empty]
#   BACKUP_S3_ACCESS_KEY_ID      access key (required)
#   BACKUP_S3_SECRET_ACCESS_KEY  secret key (required); given to rclone only
#                                through its environment, never on a command line
#   BACKUP_S3_FORCE_PATH_STYLE   true|false [true with an endpoint, false on AWS]
#   BACKUP_DB_CONTAINER          name of the running PostgreSQL container; empty =
#                                no database, BACKUP_DIRS only [empty]
#   BACKUP_DB_NAME               database to dump (required with a container)
#   BACKUP_DB_USER               role used inside the container [postgres]
#   BACKUP_AGE_RECIPIENT         age public key (age1...); when set, every object
#                                is encrypted with `age -r` before upload. The
#                                private key never belongs on the host (B2) [empty]
#   BACKUP_DIRS                  space-separated absolute directories archived as
#                                <prefix>/files/<name>-<ts>.tar.gz[.age], <name> being
#                                the directory's last path component (must be
#                                distinct) [empty]
#   BACKUP_WEEKLY_DAY            ISO weekday 1-7 (7 = Sunday) on which the dump is
#                                also copied (server-side) to <prefix>/weekly/;
#                                0 = no weekly copies [7]
#   BACKUP_PRUNE                 none: the bucket's lifecycle rules expire old
#                                objects; host: after each successful backup, delete
#                                under <prefix>/daily|weekly|files/ what is older than
#                                the retention (lib.sh prune_remote; the credentials
#                                must be allowed to delete there) [none]
#   BACKUP_RETENTION_DAYS        days daily dumps and file archives are kept [7]
#   BACKUP_WEEKLY_RETENTION_WEEKS  weeks weekly dumps are kept (0: weekly/ is left
#                                alone) [4]
#   BACKUP_LOCAL_KEEP            keep the newest N dumps (as uploaded) in
#                                BACKUP_LOCAL_DIR too; 0 = none [0]
#   BACKUP_LOCAL_DIR             directory of the local copies, on the data volume
#                                (required with BACKUP_LOCAL_KEEP) [empty]
#   BACKUP_STATE_DIR             LAST_SUCCESS, LAST_FAILURE (the last run failed;
#                                removed by a success), last-run.log, drill.json, lock,
#                                safety dumps [/var/lib/onebox/backup]
#   BACKUP_STATUS_FILE           public status JSON [/var/lib/onebox/status/backup.json];
#                                the marker backup.stale sits next to it
#   BACKUP_MAX_AGE_HOURS         age after which the last success is stale [26]
#   BACKUP_ALERT_URL             POSTed a short JSON body on any failure [empty]
#   BACKUP_HEARTBEAT_URL         GET after each successful backup [empty]
#   BACKUP_LOCK_WAIT_SECONDS     how long to wait for a running backup/restore/drill [1800]
#   BACKUP_RCLONE_RETRIES        rclone --retries [3]
#   BACKUP_RCLONE_LOW_LEVEL_RETRIES  rclone --low-level-retries [10]
#   DRILL_IMAGE                  PostgreSQL image for the restore drill
#                                [the image of BACKUP_DB_CONTAINER]
#   DRILL_TABLES                 space-separated tables (table or schema.table)
#                                that must exist with rows after the drill [empty]
#   DRILL_AGE_IDENTITY_FILE      age identity file for drilling encrypted dumps.
#                                Setting it PLACES THE PRIVATE KEY ON THE HOST,
#                                which B2 avoids; off by default [empty]
#   DRILL_READY_TIMEOUT_SECONDS  wait for the drill database to accept connections [120]
#   BACKUP_NOW                   tests only: the time the scripts start at (object
#                                names, weekly day, LAST_SUCCESS, status age);
#                                it then advances with the real clock [empty]
#
# LAST_SUCCESS holds one line: "<ISO-8601 UTC time> <object key>" (the dump's
# key; the first archive's key when there is no database).
# Object names: <db>-<UTC timestamp YYYYMMDDTHHMMSSZ>.dump[.age]. Old objects are
# expired by the bucket's lifecycle rules (the credentials of a bucket the
# program creates cannot delete), or by the host (BACKUP_PRUNE=host). A failing
# prune fails the run (alert, status "failed") after LAST_SUCCESS is written:
# the new dump is safe, but storage would grow unseen.
#
# `backup.sh --check-settings` only validates the settings file.
#
# Needs: bash, docker, rclone, flock, tar, gzip, curl (alerts), age (encryption).
set -euo pipefail
shopt -s inherit_errexit

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${SCRIPT_DIR}/lib.sh"

ONEBOX_LOG_TAG="onebox-backup"
STEP="start"
BACKUP_DIR_KEY=""

on_exit() {
  local rc=$?
  trap - EXIT
  cleanup_private_tmp
  if ((rc != 0)); then
    err "backup FAILED at step '${STEP}' (exit ${rc}); LAST_SUCCESS was not changed"
    # B5: the public status turns 503 until a backup succeeds again.
    printf '%s %s\n' "$(now_iso)" "${STEP}" | atomic_write "${BACKUP_STATE_DIR}/LAST_FAILURE" 0600 ||
      warn "could not record the failure in ${BACKUP_STATE_DIR}/LAST_FAILURE"
    send_alert backup "${STEP}" "${rc}" "backup failed at step ${STEP}"
    if [[ "${STEP}" != "status" ]]; then
      write_status >/dev/null 2>&1 || warn "could not refresh the status file"
    fi
  fi
  exit "${rc}"
}

# usage: encrypt_if_configured FILE -> prints the file to upload
encrypt_if_configured() {
  local file="$1"
  if [[ -z "${BACKUP_AGE_RECIPIENT}" ]]; then
    printf '%s' "${file}"
    return 0
  fi
  age -r "${BACKUP_AGE_RECIPIENT}" -o "${file}.age" "${file}"
  is_age_file "${file}.age" || { err "age output ${file}.age has no age header"; return 1; }
  printf '%s' "${file}.age"
}

backup_dir() {
  local dir="$1" ts="$2" name archive rc=0 upload key
  name="$(archive_name "${dir}")"
  STEP="files:${dir}"
  [[ -d "${dir}" ]] || { err "BACKUP_DIRS entry ${dir} is not a directory"; return 1; }
  archive="${ONEBOX_TMP}/${name}-${ts}.tar.gz"
  log "archiving ${dir}"
  tar -C "${dir}" -czf "${archive}" . || rc=$?
  if ((rc == 1)); then
    warn "some files in ${dir} changed while they were archived (tar exit 1); the archive is still usable"
  elif ((rc != 0)); then
    err "tar failed on ${dir} (exit ${rc})"
    return 1
  fi
  tar -tzf "${archive}" >/dev/null || { err "archive of ${dir} does not read back"; return 1; }
  upload="$(encrypt_if_configured "${archive}")"
  key="$(s3_key files "$(basename "${upload}")")"
  log "uploading ${key} ($(file_size "${upload}") bytes)"
  upload_file "${upload}" "${key}"
  verify_remote_size "${upload}" "${key}"
  BACKUP_DIR_KEY="${key}"
}

main() {
  if [[ "${1:-}" == "--check-settings" ]]; then
    # Validates the settings file and stops: what the program's tests run on
    # every configuration its schema accepts.
    load_env
    log "settings are valid (${ONEBOX_BACKUP_ENV_FILE})"
    return 0
  fi
  load_env
  ensure_state_dir
  trap on_exit EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM

  STEP="prerequisites"
  require_cmds rclone flock tar gzip
  [[ -z "${BACKUP_DB_CONTAINER}" ]] || require_cmds docker
  [[ -z "${BACKUP_AGE_RECIPIENT}" ]] || require_cmds age

  STEP="lock"
  acquire_lock
  ONEBOX_RUN_LOG="${BACKUP_STATE_DIR}/last-run.log"
  : >"${ONEBOX_RUN_LOG}"
  chmod 0600 "${ONEBOX_RUN_LOG}"

  local started ts weekday dump upload="" key="" weekly_key dir dirs=()
  started="$(now_epoch)"
  ts="$(backup_clock '%Y%m%dT%H%M%SZ')"
  weekday="$(backup_clock '%u')"
  make_private_tmp
  if [[ -n "${BACKUP_DB_CONTAINER}" ]]; then
    log "backup of database ${BACKUP_DB_NAME} in container ${BACKUP_DB_CONTAINER} started"
    STEP="dump"
    dump="${ONEBOX_TMP}/${BACKUP_DB_NAME}-${ts}.dump"
    docker exec "${BACKUP_DB_CONTAINER}" pg_dump -Fc -w -U "${BACKUP_DB_USER}" "${BACKUP_DB_NAME}" >"${dump}"
    log "pg_dump wrote $(file_size "${dump}") bytes"

    STEP="verify-dump"
    verify_dump_archive "${dump}" "${BACKUP_DB_CONTAINER}"

    STEP="encrypt"
    upload="$(encrypt_if_configured "${dump}")"
    [[ -z "${BACKUP_AGE_RECIPIENT}" ]] || log "dump encrypted for ${BACKUP_AGE_RECIPIENT}"

    STEP="upload"
    key="$(s3_key daily "$(basename "${upload}")")"
    log "uploading ${key} ($(file_size "${upload}") bytes)"
    upload_file "${upload}" "${key}"

    STEP="verify-upload"
    verify_remote_size "${upload}" "${key}"

    if [[ "${weekday}" == "${BACKUP_WEEKLY_DAY}" ]]; then
      STEP="weekly-copy"
      weekly_key="$(s3_key weekly "$(basename "${upload}")")"
      log "weekly day ${weekday}: server-side copy to ${weekly_key}"
      rclone_run copyto --no-check-dest "$(remote_of "${key}")" "$(remote_of "${weekly_key}")"
      verify_remote_size "${upload}" "${weekly_key}"
    fi
  else
    log "backup started; no database configured (BACKUP_DB_CONTAINER empty): directories only"
  fi

  split_words dirs "${BACKUP_DIRS}"
  for dir in "${dirs[@]}"; do
    backup_dir "${dir}" "${ts}"
    [[ -n "${key}" ]] || key="${BACKUP_DIR_KEY}"
  done

  STEP="record-success"
  printf '%s %s\n' "$(now_iso)" "${key}" | atomic_write "${BACKUP_STATE_DIR}/LAST_SUCCESS" 0600
  rm -f -- "${BACKUP_STATE_DIR}/LAST_FAILURE"

  if [[ -n "${upload}" && "${BACKUP_LOCAL_KEEP}" != "0" ]]; then
    STEP="local-copy"
    keep_local_copy "${upload}"
  fi
  cleanup_private_tmp

  if [[ "${BACKUP_PRUNE}" == "host" ]]; then
    STEP="prune"
    prune_remote
  fi

  STEP="status"
  write_status
  log "backup finished in $(($(now_epoch) - started))s: ${key} (status ${ONEBOX_STATUS})"

  send_heartbeat
}

main "$@"
