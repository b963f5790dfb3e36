#!/usr/bin/env bash
# restore.sh - download a database dump from the backup bucket, verify it and
# restore it into a scratch database or into the live database; or put a
# backed-up volume (a BACKUP_DIRS directory) back from its archive.
#
# usage: restore.sh [--key OBJECT_KEY|latest | --file PATH | --to-time TIME] [--into-scratch DBNAME | --into-live] [--yes]
#        restore.sh --volume NAME [--key OBJECT_KEY|latest | --file PATH] [--yes]
#
#   --key KEY            object to restore: "latest" (default: the newest dump
#                        under <prefix>/daily/), a key relative to the prefix
#                        ("weekly/app-20240602T030000Z.dump") or a full key
#   --file PATH          restore a dump file on this host instead, e.g. a local
#                        copy in BACKUP_LOCAL_DIR (backups.local); no download
#   --to-time TIME       point-in-time recovery (backups.pointInTime): the
#                        database as it was at TIME (ISO 8601 with its zone,
#                        e.g. 2026-11-29T14:05:03Z), recovered by pitr.sh from
#                        the base backup before TIME and the archived WAL in a
#                        throwaway server, then restored as a dump would be
#   --into-scratch NAME  create database NAME in the running container
#                        (BACKUP_DB_CONTAINER) and restore into it. NAME may not
#                        be the live database; an existing NAME is dropped and
#                        recreated only with --yes
#   --into-live          restore over the live database BACKUP_DB_NAME. Takes a
#                        safety dump first (BACKUP_STATE_DIR/safety-<ts>.dump,
#                        0600), requires --yes, then runs
#                        pg_restore --clean --if-exists --no-owner in one
#                        transaction (a failing restore leaves the database as
#                        it was). Stop the application first.
#   --volume NAME        the volume archived as files/NAME-<ts>.tar.gz[.age]
#                        (the BACKUP_DIRS entry named NAME): "latest" is its
#                        newest archive. With --yes its directory's contents
#                        are moved aside to .NAME.before-restore-<ts> next to
#                        it and the archive's put in their place (owners and
#                        modes as archived); the directory itself stays, so
#                        the containers that mount it see the restored files.
#                        Stop the services that write it first
#   --yes                confirm the destructive parts
#   without --into-*     only download and verify the dump (pg_restore --list)
#                        or, with --volume, the archive (tar -t)
#
# Encrypted dumps (*.age): the age identity (private key, AGE-SECRET-KEY-1...)
# is read from STDIN - never a command-line argument. It is kept only in a 0600
# file in a private temporary directory that is removed on exit (B2):
#   restore.sh --into-scratch drill_check < /path/on/your/laptop/backup-key.txt
#   ssh host sudo restore.sh --into-scratch x < backup-key.txt
#
# Settings: the env file described in backup.sh.
set -euo pipefail
shopt -s inherit_errexit

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${SCRIPT_DIR}/lib.sh"

ONEBOX_LOG_TAG="onebox-restore"

usage() {
  sed -n '6,39p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

on_exit() {
  local rc=$?
  trap - EXIT
  cleanup_private_tmp
  ((rc == 0)) || err "restore FAILED (exit ${rc})"
  exit "${rc}"
}

# psql in the database container; prints tuples only.
db_query() {
  local db="$1" sql="$2"
  docker exec "${BACKUP_DB_CONTAINER}" psql -X -w -U "${BACKUP_DB_USER}" -d "${db}" \
    -v ON_ERROR_STOP=1 -tA -c "${sql}"
}

count_user_tables() {
  db_query "$1" "SELECT count(*) FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')"
}

# Read the age identity from stdin into a 0600 file and decrypt FILE.age.
decrypt_with_stdin_identity() {
  local encrypted="$1" out="$2" identity="${ONEBOX_TMP}/identity"
  if [[ -t 0 ]]; then
    printf 'Paste the age identity (AGE-SECRET-KEY-1...), then press Ctrl-D:\n' >&2
  fi
  (umask 077 && head -c 65536 >"${identity}")
  if [[ ! -s "${identity}" ]]; then
    err "the dump is encrypted: give the age identity on stdin (restore.sh ... < key.txt)"
    return 1
  fi
  if ! age -d -i "${identity}" -o "${out}" "${encrypted}"; then
    rm -f "${identity}"
    err "age could not decrypt the dump with the identity given on stdin"
    return 1
  fi
  rm -f "${identity}"
  log "dump decrypted"
}

# fetch_object PATH_OR_KEY HOW: brings one backup object into ${ONEBOX_TMP} (HOW: download
# from the bucket, copy a local file, or move a file this run made) and decrypts it when its
# name ends in .age (the identity on stdin). Sets FETCHED to the plain file.
FETCHED=""
fetch_object() {
  local resolved="$1" how="$2" name downloaded
  name="$(basename -- "${resolved}")"
  downloaded="${ONEBOX_TMP}/${name}"
  case "${how}" in
    move) mv -- "${resolved}" "${downloaded}" ;;
    copy)
      log "reading the local file ${resolved}"
      cp -- "${resolved}" "${downloaded}"
      ;;
    *)
      log "downloading ${resolved}"
      download_file "${resolved}" "${downloaded}"
      ;;
  esac
  [[ -s "${downloaded}" ]] || die "${resolved} was not downloaded (missing object?)"
  FETCHED="${downloaded}"
  if [[ "${name}" == *.age ]]; then
    require_cmds age
    is_age_file "${downloaded}" || die "${resolved} ends in .age but is not an age file"
    FETCHED="${downloaded%.age}"
    decrypt_with_stdin_identity "${downloaded}" "${FETCHED}"
  fi
}

# Check that every member of the tar.gz ARCHIVE is a relative path without a
# ".." component; prints the number of members.
check_archive_members() {
  local archive="$1" listing member count=0
  listing="$(tar -tzf "${archive}")" || { err "${archive} does not read back as a tar.gz archive"; return 1; }
  while IFS= read -r member; do
    [[ -n "${member}" ]] || continue
    if [[ "${member}" == /* || "/${member}/" == */../* ]]; then
      err "the archive holds a member outside its directory: ${member}"
      return 1
    fi
    count=$((count + 1))
  done <<<"${listing}"
  printf '%s' "${count}"
}

# usage: restore_volume NAME KEY FILE YES
restore_volume() {
  local volume="$1" key="$2" file="$3" yes="$4" dir resolved name archive members
  local stamp parent base staging safety
  dir="$(volume_dir "${volume}")" \
    || die "no backed-up volume is named ${volume} (BACKUP_DIRS: ${BACKUP_DIRS:-none})"
  [[ -d "${dir}" && ! -L "${dir}" ]] \
    || die "${dir} is not a directory: deploy the stack first (the deploy creates each volume's directory)"
  require_cmds tar gzip
  [[ -n "${file}" ]] || require_cmds rclone

  ensure_state_dir
  trap on_exit EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  acquire_lock
  make_private_tmp

  if [[ -n "${file}" ]]; then
    [[ "${file}" == /* && -f "${file}" && ! -L "${file}" ]] || die "--file ${file} is not a regular file (give an absolute path)"
    resolved="${file}"
  elif [[ "${key}" == "latest" ]]; then
    resolved="$(latest_archive_key "${volume}")"
    [[ -n "${resolved}" ]] || die "no archive of volume ${volume} under $(s3_key files '')"
  else
    resolved="$(resolve_key "${key}")"
  fi
  name="$(basename "${resolved}")"
  [[ "$(backup_name_parts "${name}" 2>/dev/null)" =~ ^${volume}\ [0-9TZ]+\ tar\.gz(\.age)?$ ]] \
    || die "${resolved} is not an archive of volume ${volume} (${volume}-<UTC stamp>.tar.gz[.age])"
  fetch_object "${resolved}" "$([[ -n "${file}" ]] && echo copy || echo download)"
  archive="${FETCHED}"
  members="$(check_archive_members "${archive}")"
  if [[ "${yes}" != "true" ]]; then
    log "verified ${resolved}: ${members} member(s); nothing restored (add --yes to put it back into ${dir})"
    return 0
  fi

  # Staging and safety directories beside the volume: same file system, so the moves
  # are renames, and neither is mounted into a container nor archived.
  stamp="$(backup_clock %Y%m%dT%H%M%SZ)"
  parent="$(dirname "${dir}")"
  base="$(basename "${dir}")"
  staging="${parent}/.${base}.restore-${stamp}"
  safety="${parent}/.${base}.before-restore-${stamp}"
  mkdir -m 0700 -- "${staging}" "${safety}"
  log "extracting ${resolved} (${members} member(s))"
  tar -xzf "${archive}" -C "${staging}" --same-owner --same-permissions --numeric-owner \
    || { rm -rf -- "${staging}"; rmdir -- "${safety}"; die "tar could not extract ${resolved}; ${dir} is unchanged"; }
  log "moving the current contents of ${dir} to ${safety}"
  find "${dir}" -mindepth 1 -maxdepth 1 -exec mv -t "${safety}" -- {} +
  find "${staging}" -mindepth 1 -maxdepth 1 -exec mv -t "${dir}" -- {} +
  rmdir -- "${staging}"
  log "restore summary: ${resolved} -> ${dir}: ${members} member(s); the previous contents are in ${safety} (remove it once the restore is checked)"
}

main() {
  local key="latest" mode="verify" scratch="" yes=false file="" to_time="" volume=""
  while (($# > 0)); do
    case "$1" in
      --key)
        (($# >= 2)) || die "--key needs a value"
        key="$2"; shift 2 ;;
      --file)
        (($# >= 2)) || die "--file needs a path"
        file="$2"; shift 2 ;;
      --to-time)
        (($# >= 2)) || die "--to-time needs a time (e.g. 2026-11-29T14:05:03Z)"
        to_time="$2"; shift 2 ;;
      --into-scratch)
        (($# >= 2)) || die "--into-scratch needs a database name"
        [[ "${mode}" == "verify" ]] || die "choose one of --into-scratch and --into-live"
        mode="scratch"; scratch="$2"; shift 2 ;;
      --into-live)
        [[ "${mode}" == "verify" ]] || die "choose one of --into-scratch and --into-live"
        mode="live"; shift ;;
      --volume)
        (($# >= 2)) || die "--volume needs a volume name"
        volume="$2"; shift 2 ;;
      --yes) yes=true; shift ;;
      -h | --help) usage; exit 0 ;;
      *) usage >&2; die "unknown argument: $1" ;;
    esac
  done

  load_env
  if [[ -n "${volume}" ]]; then
    [[ "${mode}" == "verify" && -z "${to_time}" ]] \
      || die "--volume restores a directory: --into-scratch, --into-live and --to-time are for the database"
    [[ "${volume}" =~ ^[A-Za-z0-9._-]+$ ]] || die "--volume takes a volume name (A-Z a-z 0-9 . _ -)"
    restore_volume "${volume}" "${key}" "${file}" "${yes}"
    return 0
  fi
  [[ -n "${BACKUP_DB_CONTAINER}" ]] || die "no database is configured (BACKUP_DB_CONTAINER is empty): nothing to restore"
  require_cmds docker rclone flock
  if [[ "${mode}" == "scratch" ]]; then
    [[ "${scratch}" =~ ^[a-z_][a-z0-9_]{0,62}$ ]] \
      || die "scratch database name must match [a-z_][a-z0-9_]* (max 63 chars)"
    case "${scratch}" in
      "${BACKUP_DB_NAME}") die "the scratch database may not be the live database ${BACKUP_DB_NAME}; use --into-live" ;;
      postgres | template0 | template1) die "refusing to restore into ${scratch}" ;;
    esac
  fi
  if [[ "${mode}" == "live" && "${yes}" != "true" ]]; then
    die "--into-live replaces the contents of database ${BACKUP_DB_NAME}: add --yes to confirm"
  fi

  ensure_state_dir
  trap on_exit EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  acquire_lock
  make_private_tmp

  local started resolved name dump target tables
  started="$(now_epoch)"
  if [[ -n "${to_time}" ]]; then
    [[ -z "${file}" && "${key}" == "latest" ]] || die "choose one of --key, --file and --to-time"
    mkdir -p "${ONEBOX_TMP}/recovered"
    resolved="${ONEBOX_TMP}/recovered/${BACKUP_DB_NAME}-pitr.dump"
    log "recovering ${BACKUP_DB_NAME} as of ${to_time} (point in time)"
    "${SCRIPT_DIR}/pitr.sh" recover-dump --to-time "${to_time}" --out "${resolved}"
  elif [[ -n "${file}" ]]; then
    [[ "${file}" == /* && -f "${file}" && ! -L "${file}" ]] || die "--file ${file} is not a regular file (give an absolute path)"
    resolved="${file}"
  else
    resolved="$(resolve_key "${key}")"
    [[ -n "${resolved}" ]] || die "no dump found under $(s3_key daily '')"
  fi
  name="$(basename "${resolved}")"
  case "${name}" in
    *.dump | *.dump.age) ;;
    *) die "${resolved} is not a database dump (*.dump or *.dump.age)" ;;
  esac
  if [[ -n "${to_time}" ]]; then
    fetch_object "${resolved}" move
  elif [[ -n "${file}" ]]; then
    fetch_object "${resolved}" copy
  else
    fetch_object "${resolved}" download
  fi
  dump="${FETCHED}"

  verify_dump_archive "${dump}" "${BACKUP_DB_CONTAINER}"

  case "${mode}" in
    verify)
      log "verified ${resolved}: ${DUMP_TABLE_COUNT} table(s); nothing restored (use --into-scratch NAME or --into-live --yes)"
      return 0
      ;;
    scratch)
      target="${scratch}"
      if [[ "$(db_query postgres "SELECT 1 FROM pg_database WHERE datname = '${scratch}'")" == "1" ]]; then
        [[ "${yes}" == "true" ]] || die "database ${scratch} already exists: add --yes to drop and recreate it"
        log "dropping existing scratch database ${scratch}"
        docker exec "${BACKUP_DB_CONTAINER}" dropdb -w -U "${BACKUP_DB_USER}" "${scratch}"
      fi
      docker exec "${BACKUP_DB_CONTAINER}" createdb -w -U "${BACKUP_DB_USER}" "${scratch}"
      log "restoring into scratch database ${scratch}"
      docker exec -i "${BACKUP_DB_CONTAINER}" pg_restore -w -U "${BACKUP_DB_USER}" -d "${scratch}" \
        --no-owner --single-transaction <"${dump}"
      ;;
    live)
      target="${BACKUP_DB_NAME}"
      local safety
      safety="${BACKUP_STATE_DIR}/safety-$(backup_clock %Y%m%dT%H%M%SZ).dump"
      log "taking a safety dump of ${BACKUP_DB_NAME} to ${safety}"
      (umask 077 && docker exec "${BACKUP_DB_CONTAINER}" pg_dump -Fc -w -U "${BACKUP_DB_USER}" "${BACKUP_DB_NAME}" >"${safety}")
      chmod 0600 "${safety}"
      verify_dump_archive "${safety}" "${BACKUP_DB_CONTAINER}"
      log "restoring ${resolved} over the live database ${BACKUP_DB_NAME} (one transaction)"
      docker exec -i "${BACKUP_DB_CONTAINER}" pg_restore -w -U "${BACKUP_DB_USER}" -d "${BACKUP_DB_NAME}" \
        --clean --if-exists --no-owner --single-transaction <"${dump}"
      ;;
  esac

  tables="$(count_user_tables "${target}")"
  log "restore summary: ${resolved} -> database ${target}: ${tables} table(s) present, archive listed ${DUMP_TABLE_COUNT}, took $(($(now_epoch) - started))s"
}

main "$@"
