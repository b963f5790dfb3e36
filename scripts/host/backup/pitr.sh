#!/usr/bin/env bash
# pitr.sh - point-in-time recovery with pgBackRest (backups.pointInTime).
#
# usage: pitr.sh stanza | push | backup [full|diff] | info
#        pitr.sh recover-dump --to-time TIME --out FILE   (used by restore.sh)
#        pitr.sh drill                                    (used by restore-drill.sh)
#
# PostgreSQL's archive_command copies every finished WAL segment into the spool
# (PITR_SPOOL_DIR, on the data volume). The database container has no route out
# (H13), so pgBackRest runs here, in short-lived containers of the database's own
# image (DRILL_IMAGE, which must contain pgbackrest) on the host's network, as
# the image's postgres user (PITR_UID), with a read-only root filesystem, no
# capability and its settings mounted read-only from PITR_CONF (0400: the
# bucket credentials never appear in a command line or an environment, R3/H11).
#
#   stanza   create (or check) the repository stanza; idempotent
#   push     hand every spooled segment, oldest first, to `pgbackrest
#            archive-push`, removing each once it is in the bucket (run by the
#            onebox-pitr-push path unit as soon as a segment appears, and
#            every minute by its timer to retry a failed push)
#   backup   base backup: full on BACKUP_WEEKLY_DAY (or when none exists),
#            differential otherwise; pgBackRest then expires what is beyond
#            repo1-retention-full, with the WAL only those backups needed
#   info     pgBackRest's view of the repository
#   recover-dump --to-time TIME --out FILE
#            restore the newest base backup before TIME into a scratch data
#            directory, replay the archived WAL up to TIME in a throwaway
#            container (no listening port), and write a pg_dump -Fc of
#            BACKUP_DB_NAME to FILE. The caller holds the backup lock.
#   drill    the weekly drill's check: a marker row, the time, a second marker,
#            recovery to that time, exactly the first marker must be there
#            (database onebox_pitr_drill; JSON result on stdout)
#
# Settings: the env file described in backup.sh, plus PITR_* (rendered by the
# program): PITR_CONF, PITR_CA_FILE, PITR_DATA_DIR, PITR_DATA_TARGET,
# PITR_SPOOL_DIR, PITR_SOCKET_DIR, PITR_SCRATCH_DIR, PITR_UID.
set -euo pipefail
shopt -s inherit_errexit

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${SCRIPT_DIR}/lib.sh"

ONEBOX_LOG_TAG="onebox-pitr"
readonly STANZA="onebox"
readonly PITR_LABEL="onebox.role=pitr"
# Bounds: segments handed over in one push run; seconds a recovery may take.
readonly PUSH_MAX_SEGMENTS=10000
PITR_RECOVERY_TIMEOUT_SECONDS="${PITR_RECOVERY_TIMEOUT_SECONDS:-3600}"

PITR_CONTAINER=""
PITR_SCRATCH=""

load_pitr_env() {
  load_env
  PITR_ENABLED="${PITR_ENABLED:-false}"
  PITR_CONF="${PITR_CONF:-$(dirname -- "${ONEBOX_BACKUP_ENV_FILE}")/pgbackrest.conf}"
  PITR_CA_FILE="${PITR_CA_FILE:-}"
  PITR_DATA_DIR="${PITR_DATA_DIR:-}"
  PITR_DATA_TARGET="${PITR_DATA_TARGET:-/var/lib/postgresql/data}"
  PITR_SPOOL_DIR="${PITR_SPOOL_DIR:-}"
  PITR_SOCKET_DIR="${PITR_SOCKET_DIR:-}"
  PITR_SCRATCH_DIR="${PITR_SCRATCH_DIR:-}"
  PITR_UID="${PITR_UID:-999:999}"
  [[ "${PITR_ENABLED}" == "true" ]] || die "point-in-time recovery is off (backups.pointInTime)"
  [[ -n "${BACKUP_DB_CONTAINER}" ]] || die "no database is configured (BACKUP_DB_CONTAINER is empty)"
  local v
  for v in PITR_DATA_DIR PITR_SPOOL_DIR PITR_SOCKET_DIR PITR_SCRATCH_DIR; do
    [[ "${!v}" == /* ]] || die "settings (${ONEBOX_BACKUP_ENV_FILE}): ${v} must be an absolute path"
  done
  [[ "${PITR_UID}" =~ ^[0-9]+:[0-9]+$ ]] || die "settings: PITR_UID must be uid:gid"
  [[ -f "${PITR_CONF}" ]] || die "${PITR_CONF} does not exist (written by the backup step)"
  PITR_IMAGE="${DRILL_IMAGE:-}"
  if [[ -z "${PITR_IMAGE}" ]]; then
    PITR_IMAGE="$(docker inspect --format '{{.Config.Image}}' "${BACKUP_DB_CONTAINER}")"
  fi
}

# usage: pgbr [docker run options ...] -- PGBACKREST_ARGS ...
# Runs pgbackrest in a throwaway container of the database image.
pgbr() {
  local -a opts=()
  while (($# > 0)) && [[ "$1" != "--" ]]; do
    opts+=("$1"); shift
  done
  shift
  opts+=(-v "${PITR_CONF}:/etc/pgbackrest/pgbackrest.conf:ro")
  [[ -z "${PITR_CA_FILE}" ]] || opts+=(-v "${PITR_CA_FILE}:/etc/pgbackrest/ca.pem:ro")
  docker run --rm --network host --user "${PITR_UID}" --read-only --tmpfs /tmp:mode=1777 \
    --cap-drop ALL --security-opt no-new-privileges:true --label "${PITR_LABEL}" \
    --entrypoint pgbackrest "${opts[@]}" "${PITR_IMAGE}" --stanza="${STANZA}" "$@"
}

# The live cluster's data directory (read-only) and socket, as pgBackRest sees them.
live_mounts() {
  printf '%s\n' -v "${PITR_DATA_DIR}:${PITR_DATA_TARGET}:ro" -v "${PITR_SOCKET_DIR}:/var/run/postgresql"
}

cmd_stanza() {
  local -a m
  mapfile -t m < <(live_mounts)
  if ! pgbr "${m[@]}" -- stanza-create; then
    # After a PostgreSQL major upgrade (deploy.sh) the cluster is a new one: the stanza
    # follows it, keeping the old backups and WAL until retention expires them.
    warn "stanza-create refused; trying stanza-upgrade (a new PostgreSQL cluster after a major upgrade?)"
    pgbr "${m[@]}" -- stanza-upgrade
  fi
  log "stanza ${STANZA} is ready"
}

cmd_push() {
  local lockfile="${PITR_SPOOL_DIR}/.push.lock" fd seg n=0 failed=0
  [[ -d "${PITR_SPOOL_DIR}" ]] || die "the WAL spool ${PITR_SPOOL_DIR} does not exist"
  # One pusher at a time; the next trigger finds what this one left.
  exec {fd}>>"${lockfile}"
  flock -n "${fd}" || { log "another push is running"; return 0; }
  local -a m segments=()
  mapfile -t m < <(live_mounts)
  shopt -s nullglob
  # WAL segments, history and backup-label files; never the .part files being written.
  for seg in "${PITR_SPOOL_DIR}"/[0-9A-F]*; do
    segments+=("$(basename "${seg}")")
  done
  shopt -u nullglob
  ((${#segments[@]} > 0)) || return 0
  # Oldest first (names sort in WAL order); a failure stops the batch so the order holds.
  local list
  list="$(printf '%s\n' "${segments[@]}" | sort | head -n "${PUSH_MAX_SEGMENTS}")"
  while IFS= read -r seg; do
    [[ "${seg}" =~ ^[0-9A-F]{8}[0-9A-F.a-z]*$ ]] || continue
    if pgbr "${m[@]}" -v "${PITR_SPOOL_DIR}:/var/spool/pgbackrest" -- archive-push "/var/spool/pgbackrest/${seg}" >/dev/null; then
      rm -f -- "${PITR_SPOOL_DIR:?}/${seg}"
      n=$((n + 1))
    else
      err "archive-push of ${seg} failed; it stays in the spool for the next run"
      failed=1
      break
    fi
  done <<<"${list}"
  log "pushed ${n} WAL file(s)"
  return "${failed}"
}

cmd_backup() {
  local type="${1:-}"
  if [[ -z "${type}" ]]; then
    if [[ "$(backup_clock %u)" == "${BACKUP_WEEKLY_DAY}" ]]; then type="full"; else type="diff"; fi
  fi
  [[ "${type}" == full || "${type}" == diff ]] || die "backup type must be full or diff"
  ensure_state_dir
  acquire_lock
  local -a m
  mapfile -t m < <(live_mounts)
  cmd_stanza >/dev/null
  # pgBackRest makes a differential a full one when no full backup exists yet.
  log "pgBackRest ${type} backup"
  pgbr "${m[@]}" -- backup --type="${type}"
  log "base backup done; repository: $(pgbr -- info --output=text | grep -c 'backup:' || true) backup(s)"
}

cleanup_recovery() {
  if [[ -n "${PITR_CONTAINER}" ]]; then
    docker rm -f "${PITR_CONTAINER}" >/dev/null 2>&1 || warn "could not remove ${PITR_CONTAINER}"
    PITR_CONTAINER=""
  fi
  if [[ -n "${PITR_SCRATCH}" && -d "${PITR_SCRATCH}" ]]; then
    rm -rf -- "${PITR_SCRATCH}"
    PITR_SCRATCH=""
  fi
}

# "2026-11-29T14:05:03.123Z" and the like -> "2026-11-29 14:05:03.123000+00".
normalise_time() {
  local t="$1" out
  [[ "${t}" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}[T\ ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?(Z|[+-][0-9]{2}(:?[0-9]{2})?)$ ]] \
    || die "--to-time ${t}: give an ISO-8601 time with its zone, e.g. 2026-11-29T14:05:03Z"
  out="$(date -u -d "${t}" '+%Y-%m-%d %H:%M:%S.%6N+00' 2>/dev/null)" || die "--to-time ${t} is not a valid time"
  printf '%s' "${out}"
}

# usage: recover_to TARGET   (normalised time)
# Restores the newest base backup before TARGET into a fresh scratch directory and
# replays the archived WAL up to TARGET in a throwaway server (PITR_CONTAINER), which
# is left running, promoted, for the caller to read; cleanup_recovery removes both.
recover_to() {
  local target="$1"
  PITR_SCRATCH="${PITR_SCRATCH_DIR}/$(backup_clock %Y%m%dT%H%M%SZ)-${RANDOM}"
  mkdir -p "${PITR_SCRATCH}"
  chown "${PITR_UID}" "${PITR_SCRATCH}"
  chmod 0700 "${PITR_SCRATCH}"

  log "restoring the base backup before ${target} into ${PITR_SCRATCH}"
  pgbr -v "${PITR_SCRATCH}:${PITR_DATA_TARGET}" -- restore --type=time --target="${target}" \
    --target-action=promote >&2

  PITR_CONTAINER="onebox-pitr-$(backup_clock %Y%m%d%H%M%S)-${RANDOM}"
  # Host network for archive-get from the bucket; no TCP listener at all (socket only).
  local -a conf_mounts=(-v "${PITR_CONF}:/etc/pgbackrest/pgbackrest.conf:ro")
  [[ -z "${PITR_CA_FILE}" ]] || conf_mounts+=(-v "${PITR_CA_FILE}:/etc/pgbackrest/ca.pem:ro")
  docker run -d --name "${PITR_CONTAINER}" --network host --user "${PITR_UID}" --label "${PITR_LABEL}" \
    --cap-drop ALL --security-opt no-new-privileges:true --tmpfs /tmp:mode=1777 --tmpfs /var/run/postgresql:mode=1777 \
    -v "${PITR_SCRATCH}:${PITR_DATA_TARGET}" "${conf_mounts[@]}" "${PITR_IMAGE}" \
    postgres -c listen_addresses= -c archive_mode=off >/dev/null
  local deadline state=""
  deadline=$(($(now_epoch) + PITR_RECOVERY_TIMEOUT_SECONDS))
  while (($(now_epoch) < deadline)); do
    if [[ "$(docker inspect -f '{{.State.Running}}' "${PITR_CONTAINER}" 2>/dev/null)" != "true" ]]; then
      docker logs --tail 30 "${PITR_CONTAINER}" >&2 || true
      err "the recovering server stopped (a target outside the archive's reach?)"
      return 1
    fi
    state="$(recovered_query postgres 'SELECT pg_is_in_recovery()' 2>/dev/null || true)"
    [[ "${state}" == "f" ]] && break
    sleep 2
  done
  [[ "${state}" == "f" ]] || { err "recovery to ${target} did not finish within ${PITR_RECOVERY_TIMEOUT_SECONDS}s"; return 1; }
  log "recovered to ${target}"
}

# usage: recovered_query DB SQL   (tuples only, in the recovered server)
recovered_query() {
  docker exec "${PITR_CONTAINER}" psql -X -w -U "${BACKUP_DB_USER}" -d "$1" -v ON_ERROR_STOP=1 -tA -c "$2"
}

# psql in the live database container.
live_query() {
  docker exec "${BACKUP_DB_CONTAINER}" psql -X -w -U "${BACKUP_DB_USER}" -d "$1" -v ON_ERROR_STOP=1 -tA -c "$2"
}

cmd_recover_dump() {
  local to_time="" out=""
  while (($# > 0)); do
    case "$1" in
      --to-time) (($# >= 2)) || die "--to-time needs a value"; to_time="$2"; shift 2 ;;
      --out) (($# >= 2)) || die "--out needs a path"; out="$2"; shift 2 ;;
      *) die "recover-dump: unknown argument $1" ;;
    esac
  done
  [[ -n "${to_time}" && "${out}" == /* ]] || die "usage: pitr.sh recover-dump --to-time TIME --out /path"
  local target
  target="$(normalise_time "${to_time}")"
  trap cleanup_recovery EXIT
  recover_to "${target}"
  (umask 077 && docker exec "${PITR_CONTAINER}" pg_dump -Fc -w -U "${BACKUP_DB_USER}" "${BACKUP_DB_NAME}" >"${out}")
  log "dumped ${BACKUP_DB_NAME} as of ${target} ($(file_size "${out}") bytes)"
  cleanup_recovery
  trap - EXIT
}

# The drill's own database in the live cluster: markers never touch the app's schema.
readonly DRILL_MARKER_DB="onebox_pitr_drill"

# usage: pitr.sh drill   (the caller, restore-drill.sh, holds the backup lock)
# Writes a marker row, notes the time, writes a second marker, waits until the WAL
# holding both is in the bucket, recovers to the noted time in a throwaway server and
# checks that exactly the first marker is there. Prints one JSON object on stdout:
#   {"ok":true|false,"target":"...","durationSeconds":N,"error":null|"..."}
cmd_drill() {
  local started before after target segment found error="" deadline
  started="$(now_epoch)"
  trap cleanup_recovery EXIT
  before="before-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  after="after-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  if [[ "$(live_query postgres "SELECT 1 FROM pg_database WHERE datname = '${DRILL_MARKER_DB}'")" != "1" ]]; then
    docker exec "${BACKUP_DB_CONTAINER}" createdb -w -U "${BACKUP_DB_USER}" "${DRILL_MARKER_DB}"
  fi
  live_query "${DRILL_MARKER_DB}" "CREATE TABLE IF NOT EXISTS marker (id bigserial PRIMARY KEY, token text NOT NULL, written timestamptz NOT NULL DEFAULT clock_timestamp())" >/dev/null
  live_query "${DRILL_MARKER_DB}" "INSERT INTO marker (token) VALUES ('${before}')" >/dev/null
  target="$(live_query postgres "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")"
  live_query "${DRILL_MARKER_DB}" "INSERT INTO marker (token) VALUES ('${after}')" >/dev/null
  # Old markers go (the recovered copy is checked for these two tokens only).
  live_query "${DRILL_MARKER_DB}" "DELETE FROM marker WHERE written < now() - interval '30 days'" >/dev/null
  segment="$(live_query postgres 'SELECT pg_walfile_name(pg_switch_wal())')"
  log "drill: markers written around ${target}; waiting for WAL ${segment} to reach the bucket"
  deadline=$(($(now_epoch) + 600))
  until [[ "$(live_query postgres "SELECT coalesce(last_archived_wal >= '${segment}', false) FROM pg_stat_archiver")" == "t" ]] \
    && ! compgen -G "${PITR_SPOOL_DIR}/[0-9A-F]*" >/dev/null; do
    "${SCRIPT_DIR}/pitr.sh" push >/dev/null 2>&1 || true
    (($(now_epoch) < deadline)) || { error="WAL ${segment} did not reach the bucket within 600s"; break; }
    sleep 2
  done
  if [[ -z "${error}" ]]; then
    if recover_to "${target}"; then
      found="$(recovered_query "${DRILL_MARKER_DB}" "SELECT string_agg(token, ' ' ORDER BY id) FROM marker WHERE token IN ('${before}', '${after}')" || true)"
      if [[ "${found}" != "${before}" ]]; then
        error="the database recovered to ${target} holds markers [${found}], expected only the one written before it"
      fi
    else
      error="recovery to ${target} failed"
    fi
  fi
  cleanup_recovery
  trap - EXIT
  if [[ -n "${error}" ]]; then
    err "point-in-time drill: ${error}"
    printf '{"ok":false,"target":"%s","durationSeconds":%d,"error":%s}\n' "$(json_escape "${target}")" $(($(now_epoch) - started)) "$(json_str_or_null "${error}")"
    return 1
  fi
  log "point-in-time drill passed: recovered to ${target}, the marker before it is there, the one after it is not"
  printf '{"ok":true,"target":"%s","durationSeconds":%d,"error":null}\n' "$(json_escape "${target}")" $(($(now_epoch) - started))
}

main() {
  local cmd="${1:-}"
  (($# > 0)) && shift
  case "${cmd}" in
    stanza | push | backup | info | recover-dump | drill) ;;
    *) sed -n '4,6p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
  load_pitr_env
  require_cmds docker flock
  case "${cmd}" in
    stanza) cmd_stanza ;;
    push) cmd_push ;;
    backup) cmd_backup "$@" ;;
    info) pgbr -- info ;;
    recover-dump) cmd_recover_dump "$@" ;;
    drill) cmd_drill ;;
  esac
}

main "$@"
