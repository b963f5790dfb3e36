#!/usr/bin/env bash
# lib.sh - shared helpers for the onebox backup scripts (backup.sh, restore.sh,
# restore-drill.sh, backup-status.sh). Sourced, never executed. All scripts are
# installed together in one directory, so they source this file relative to
# their own location.
#
# Rules kept by every helper here:
#  - no secret on any command line (R3): S3 credentials reach rclone through
#    RCLONE_CONFIG_ONEBOX_* variables exported only inside the subshell that
#    execs rclone; alert/heartbeat URLs (which often embed a token) reach curl
#    through a config read from stdin (`curl -K -`);
#  - bounded waits: every network call has a timeout, every loop a limit;
#  - log lines go to stdout (info) or stderr (warnings, errors): systemd puts
#    both in the journal. When ONEBOX_RUN_LOG is set they are also appended to
#    that file (the "last run" log in BACKUP_STATE_DIR).
# shellcheck shell=bash

# --------------------------------------------------------------------------
# logging
# --------------------------------------------------------------------------
ONEBOX_LOG_TAG="${ONEBOX_LOG_TAG:-onebox-backup}"
ONEBOX_RUN_LOG="${ONEBOX_RUN_LOG:-}"

_log_line() {
  local level="$1"; shift
  local line
  line="$(date -u +%Y-%m-%dT%H:%M:%SZ) [${ONEBOX_LOG_TAG}] ${level}: $*"
  if [[ "${level}" == "INFO" ]]; then
    printf '%s\n' "${line}"
  else
    printf '%s\n' "${line}" >&2
  fi
  if [[ -n "${ONEBOX_RUN_LOG}" ]]; then
    printf '%s\n' "${line}" >>"${ONEBOX_RUN_LOG}" 2>/dev/null || true
  fi
}
log() { _log_line INFO "$@"; }
warn() { _log_line WARN "$@"; }
err() { _log_line ERROR "$@"; }
die() { err "$@"; exit 1; }

# --------------------------------------------------------------------------
# small utilities
# --------------------------------------------------------------------------
require_cmds() {
  local c missing=()
  for c in "$@"; do
    command -v "${c}" >/dev/null 2>&1 || missing+=("${c}")
  done
  if ((${#missing[@]} > 0)); then
    die "required command(s) not installed: ${missing[*]}"
  fi
}

# JSON string escaping (no surrounding quotes) for the small JSON documents
# these scripts write: backslash, double quote and control characters.
json_escape() {
  local s="$1"
  s="${s//\\/\\\\}"
  s="${s//\"/\\\"}"
  s="${s//$'\n'/\\n}"
  s="${s//$'\r'/\\r}"
  s="${s//$'\t'/\\t}"
  # any other control character becomes a space
  s="${s//[$'\x01'-$'\x1f'$'\x7f']/ }"
  printf '%s' "${s}"
}

# "value" as a JSON string, or null when empty.
json_str_or_null() {
  if [[ -n "$1" ]]; then
    printf '"%s"' "$(json_escape "$1")"
  else
    printf 'null'
  fi
}

# Escape a value for a double-quoted curl config parameter.
curl_cfg_quote() {
  local s="$1"
  s="${s//\\/\\\\}"
  s="${s//\"/\\\"}"
  printf '"%s"' "${s}"
}

# The clock. Every calendar decision reads it: object names, the weekly day,
# LAST_SUCCESS, the status age and the drill record. BACKUP_NOW (an ISO-8601
# instant, or any `date -d` string) sets what time the scripts believe it is
# when they start; from there it advances with the real clock, so durations and
# deadlines stay true. Unset on servers (the real clock); tests set it so that
# no result depends on the date a test runs on. Log line prefixes always show
# the real time.
ONEBOX_CLOCK_OFFSET=0
if [[ -n "${BACKUP_NOW:-}" ]]; then
  if ! _onebox_clock_start="$(date -u -d "${BACKUP_NOW}" +%s 2>/dev/null)"; then
    printf 'BACKUP_NOW=%s is not a date\n' "${BACKUP_NOW}" >&2
    exit 2
  fi
  ONEBOX_CLOCK_OFFSET=$((_onebox_clock_start - $(date -u +%s)))
fi
now_epoch() { printf '%s\n' "$(($(date -u +%s) + ONEBOX_CLOCK_OFFSET))"; }
# usage: backup_clock FORMAT (a `date` format, UTC)
backup_clock() { date -u -d "@$(now_epoch)" "+$1"; }
now_iso() { backup_clock '%Y-%m-%dT%H:%M:%SZ'; }

# Write stdin atomically to PATH with MODE (temp file in the same directory + mv).
atomic_write() {
  local path="$1" mode="$2" dir tmp
  dir="$(dirname "${path}")"
  tmp="$(mktemp "${dir}/.$(basename "${path}").XXXXXX")"
  if ! cat >"${tmp}" || ! chmod "${mode}" "${tmp}" || ! mv -f "${tmp}" "${path}"; then
    rm -f "${tmp}"
    return 1
  fi
}

file_size() { stat -c %s "$1"; }

# --------------------------------------------------------------------------
# private temporary directory (0700), removed by cleanup_private_tmp
# --------------------------------------------------------------------------
ONEBOX_TMP=""
make_private_tmp() {
  local base="${TMPDIR:-/tmp}"
  ONEBOX_TMP="$(umask 077 && mktemp -d "${base}/onebox-backup.XXXXXXXX")"
  chmod 0700 "${ONEBOX_TMP}"
}
cleanup_private_tmp() {
  if [[ -n "${ONEBOX_TMP}" && -d "${ONEBOX_TMP}" ]]; then
    rm -rf -- "${ONEBOX_TMP}" || true
  fi
  ONEBOX_TMP=""
}

# --------------------------------------------------------------------------
# settings
# --------------------------------------------------------------------------
ONEBOX_BACKUP_ENV_FILE=""

# Refuse a file that is not a regular file owned by root (or by the user
# running the script), or that has any group/other permission bit (H10).
# usage: check_private_file PATH WHAT
check_private_file() {
  local f="$1" what="$2" mode owner
  [[ -e "${f}" ]] || die "${what} ${f} does not exist"
  [[ -f "${f}" && ! -L "${f}" ]] || die "${what} ${f} is not a regular file"
  mode="$(stat -c %a "${f}")"
  owner="$(stat -c %u "${f}")"
  if [[ "${owner}" != "0" && "${owner}" != "$(id -u)" ]]; then
    die "${what} ${f} is owned by uid ${owner}; it must be owned by root"
  fi
  if (((8#${mode} & 8#077) != 0)); then
    die "${what} ${f} has mode ${mode}; it holds secrets and must not be accessible by group or others: chmod 600 ${f}"
  fi
}

# The settings file when ONEBOX_BACKUP_ENV does not name one: the only stack's
# ${ONEBOX_ETC_DIR:-/etc/onebox}/<app>-<env>/backup.env, or the single-stack layout's
# backup.env. With several stacks on the server the caller must say which (the units do).
find_backup_env() {
  local etc="${ONEBOX_ETC_DIR:-/etc/onebox}" f
  local -a found=()
  for f in "${etc}"/*/backup.env "${etc}/backup.env"; do
    # A directory that is a link was left by a move into the per-stack layout: the same stack.
    [[ -e "${f}" && ! -L "$(dirname -- "${f}")" ]] && found+=("${f}")
  done
  case "${#found[@]}" in
    0) printf '%s\n' "${etc}/<app>-<env>/backup.env" ;;
    1) printf '%s\n' "${found[0]}" ;;
    *) die "this server holds the backups of several stacks (${found[*]}); name one: ONEBOX_BACKUP_ENV=<file> $0 ..." ;;
  esac
}

# Load and validate the settings. Sourcing happens without `set -a`, so the
# values stay shell variables and are not exported to child processes.
load_env() {
  ONEBOX_BACKUP_ENV_FILE="${ONEBOX_BACKUP_ENV:-}"
  [[ -n "${ONEBOX_BACKUP_ENV_FILE}" ]] || ONEBOX_BACKUP_ENV_FILE="$(find_backup_env)"
  if [[ ! -e "${ONEBOX_BACKUP_ENV_FILE}" ]]; then
    die "settings file ${ONEBOX_BACKUP_ENV_FILE} does not exist (set ONEBOX_BACKUP_ENV to use another path)"
  fi
  check_private_file "${ONEBOX_BACKUP_ENV_FILE}" "settings file"
  # shellcheck disable=SC1090
  source "${ONEBOX_BACKUP_ENV_FILE}"

  BACKUP_S3_BUCKET="${BACKUP_S3_BUCKET:-}"
  BACKUP_S3_PROVIDER="${BACKUP_S3_PROVIDER:-}"
  BACKUP_S3_REGION="${BACKUP_S3_REGION:-us-east-1}"
  BACKUP_S3_ENDPOINT="${BACKUP_S3_ENDPOINT:-}"
  BACKUP_S3_PREFIX="${BACKUP_S3_PREFIX:-}"
  BACKUP_S3_ACCESS_KEY_ID="${BACKUP_S3_ACCESS_KEY_ID:-}"
  BACKUP_S3_SECRET_ACCESS_KEY="${BACKUP_S3_SECRET_ACCESS_KEY:-}"
  if [[ -n "${BACKUP_S3_ENDPOINT}" ]]; then
    BACKUP_S3_PROVIDER="${BACKUP_S3_PROVIDER:-other}"
    BACKUP_S3_FORCE_PATH_STYLE="${BACKUP_S3_FORCE_PATH_STYLE:-true}"
  else
    BACKUP_S3_PROVIDER="${BACKUP_S3_PROVIDER:-aws}"
    BACKUP_S3_FORCE_PATH_STYLE="${BACKUP_S3_FORCE_PATH_STYLE:-false}"
  fi
  BACKUP_DB_CONTAINER="${BACKUP_DB_CONTAINER:-}"
  BACKUP_DB_NAME="${BACKUP_DB_NAME:-}"
  BACKUP_DB_USER="${BACKUP_DB_USER:-postgres}"
  BACKUP_AGE_RECIPIENT="${BACKUP_AGE_RECIPIENT:-}"
  BACKUP_DIRS="${BACKUP_DIRS:-}"
  BACKUP_WEEKLY_DAY="${BACKUP_WEEKLY_DAY:-7}"
  BACKUP_PRUNE="${BACKUP_PRUNE:-none}"
  BACKUP_RETENTION_DAYS="${BACKUP_RETENTION_DAYS:-7}"
  BACKUP_WEEKLY_RETENTION_WEEKS="${BACKUP_WEEKLY_RETENTION_WEEKS:-4}"
  BACKUP_LOCAL_KEEP="${BACKUP_LOCAL_KEEP:-0}"
  BACKUP_LOCAL_DIR="${BACKUP_LOCAL_DIR:-}"
  BACKUP_STATE_DIR="${BACKUP_STATE_DIR:-/var/lib/onebox/backup}"
  BACKUP_STATUS_FILE="${BACKUP_STATUS_FILE:-/var/lib/onebox/status/backup.json}"
  BACKUP_MAX_AGE_HOURS="${BACKUP_MAX_AGE_HOURS:-26}"
  BACKUP_ALERT_URL="${BACKUP_ALERT_URL:-}"
  BACKUP_HEARTBEAT_URL="${BACKUP_HEARTBEAT_URL:-}"
  BACKUP_LOCK_WAIT_SECONDS="${BACKUP_LOCK_WAIT_SECONDS:-1800}"
  BACKUP_RCLONE_RETRIES="${BACKUP_RCLONE_RETRIES:-3}"
  BACKUP_RCLONE_LOW_LEVEL_RETRIES="${BACKUP_RCLONE_LOW_LEVEL_RETRIES:-10}"
  DRILL_IMAGE="${DRILL_IMAGE:-}"
  DRILL_TABLES="${DRILL_TABLES:-}"
  DRILL_AGE_IDENTITY_FILE="${DRILL_AGE_IDENTITY_FILE:-}"
  DRILL_READY_TIMEOUT_SECONDS="${DRILL_READY_TIMEOUT_SECONDS:-120}"

  # Whatever the env file or the caller exported, the settings (credentials,
  # URLs with tokens) are not handed down to docker, curl, age or tar.
  export -n BACKUP_S3_BUCKET BACKUP_S3_PROVIDER BACKUP_PRUNE BACKUP_RETENTION_DAYS \
    BACKUP_WEEKLY_RETENTION_WEEKS BACKUP_LOCAL_KEEP BACKUP_LOCAL_DIR BACKUP_S3_REGION BACKUP_S3_ENDPOINT BACKUP_S3_PREFIX \
    BACKUP_S3_ACCESS_KEY_ID BACKUP_S3_SECRET_ACCESS_KEY BACKUP_S3_FORCE_PATH_STYLE \
    BACKUP_DB_CONTAINER BACKUP_DB_NAME BACKUP_DB_USER BACKUP_AGE_RECIPIENT BACKUP_DIRS \
    BACKUP_WEEKLY_DAY BACKUP_STATE_DIR BACKUP_STATUS_FILE BACKUP_MAX_AGE_HOURS \
    BACKUP_ALERT_URL BACKUP_HEARTBEAT_URL BACKUP_LOCK_WAIT_SECONDS BACKUP_RCLONE_RETRIES \
    BACKUP_RCLONE_LOW_LEVEL_RETRIES DRILL_IMAGE DRILL_TABLES DRILL_AGE_IDENTITY_FILE \
    DRILL_READY_TIMEOUT_SECONDS

  validate_env
}

# a non-negative decimal integer without leading zeros (bash would read 08 as octal)
_is_uint() { [[ "$1" =~ ^(0|[1-9][0-9]{0,8})$ ]]; }

# Archive name of a BACKUP_DIRS entry: its last path component, limited to
# A-Z a-z 0-9 . _ -  (/srv/app/uploads -> uploads).
archive_name() {
  local n="${1%/}"
  n="${n##*/}"
  n="$(printf '%s' "${n}" | tr -c 'A-Za-z0-9._-' '_')"
  printf '%s' "${n:-root}"
}

# Split a space-separated setting into the array named by $1 (no globbing).
split_words() {
  local -n _out="$1"
  read -r -a _out <<<"$2" || true
}

validate_env() {
  local problems=() d words=()
  [[ "${BACKUP_S3_BUCKET}" =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] \
    || problems+=("BACKUP_S3_BUCKET must be an S3 bucket name (3-63 of a-z 0-9 . -), got '${BACKUP_S3_BUCKET}'")
  [[ "${BACKUP_S3_PROVIDER}" =~ ^(aws|b2|r2|spaces|minio|other)$ ]] \
    || problems+=("BACKUP_S3_PROVIDER must be one of aws b2 r2 spaces minio other")
  [[ "${BACKUP_S3_REGION}" =~ ^[a-z0-9-]+$ ]] \
    || problems+=("BACKUP_S3_REGION must look like us-east-1 (a-z 0-9 -)")
  [[ "${BACKUP_S3_PROVIDER}" == "aws" || -n "${BACKUP_S3_ENDPOINT}" ]] \
    || problems+=("BACKUP_S3_ENDPOINT is required with BACKUP_S3_PROVIDER=${BACKUP_S3_PROVIDER}")
  [[ -z "${BACKUP_S3_ENDPOINT}" || "${BACKUP_S3_ENDPOINT}" =~ ^https?://[^[:space:]]+$ ]] \
    || problems+=("BACKUP_S3_ENDPOINT must be empty (AWS) or an http(s):// URL")
  [[ "${BACKUP_S3_PREFIX}" =~ ^[A-Za-z0-9._/-]*$ && "${BACKUP_S3_PREFIX}" != *..* ]] \
    || problems+=("BACKUP_S3_PREFIX may contain only A-Z a-z 0-9 . _ - / and no '..'")
  [[ -n "${BACKUP_S3_ACCESS_KEY_ID}" ]] || problems+=("BACKUP_S3_ACCESS_KEY_ID is not set")
  [[ -n "${BACKUP_S3_SECRET_ACCESS_KEY}" ]] || problems+=("BACKUP_S3_SECRET_ACCESS_KEY is not set")
  [[ "${BACKUP_S3_FORCE_PATH_STYLE}" == "true" || "${BACKUP_S3_FORCE_PATH_STYLE}" == "false" ]] \
    || problems+=("BACKUP_S3_FORCE_PATH_STYLE must be true or false")
  if [[ -n "${BACKUP_DB_CONTAINER}" ]]; then
    [[ "${BACKUP_DB_CONTAINER}" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] \
      || problems+=("BACKUP_DB_CONTAINER must name the running PostgreSQL container")
    [[ "${BACKUP_DB_NAME}" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]*$ ]] \
      || problems+=("BACKUP_DB_NAME must be a database name (A-Z a-z 0-9 _ . -)")
  elif [[ -z "${BACKUP_DIRS// /}" ]]; then
    problems+=("nothing to back up: set BACKUP_DB_CONTAINER (and BACKUP_DB_NAME) and/or BACKUP_DIRS")
  fi
  [[ "${BACKUP_DB_USER}" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]*$ ]] \
    || problems+=("BACKUP_DB_USER must be a role name (A-Z a-z 0-9 _ . -)")
  [[ -z "${BACKUP_AGE_RECIPIENT}" || "${BACKUP_AGE_RECIPIENT}" =~ ^age1[0-9a-z]{20,}$ ]] \
    || problems+=("BACKUP_AGE_RECIPIENT must be an age public key (age1...); never put the private key (AGE-SECRET-KEY-...) on the host")
  split_words words "${BACKUP_DIRS}"
  local -A seen=()
  for d in "${words[@]}"; do
    [[ "${d}" == /* && "${d}" != *..* ]] || problems+=("BACKUP_DIRS entry '${d}' must be an absolute path")
    d="$(archive_name "${d}")"
    [[ -z "${seen[${d}]:-}" ]] || problems+=("BACKUP_DIRS: two directories are named '${d}'; their archives would collide")
    seen["${d}"]=1
  done
  [[ "${BACKUP_WEEKLY_DAY}" =~ ^[0-7]$ ]] \
    || problems+=("BACKUP_WEEKLY_DAY must be 1-7 (ISO weekday, 7 = Sunday) or 0 for no weekly copies")
  [[ "${BACKUP_PRUNE}" == "none" || "${BACKUP_PRUNE}" == "host" ]] \
    || problems+=("BACKUP_PRUNE must be none (the bucket's lifecycle rules expire old dumps) or host")
  if [[ "${BACKUP_PRUNE}" == "host" && -z "${BACKUP_S3_PREFIX//\//}" ]]; then
    # Pruning deletes; it is confined to the stack's own prefix, so there must be one.
    problems+=("BACKUP_PRUNE=host needs a BACKUP_S3_PREFIX: the prune deletes only under the stack's prefix")
  fi
  { _is_uint "${BACKUP_RETENTION_DAYS}" && ((BACKUP_RETENTION_DAYS > 0)); } \
    || problems+=("BACKUP_RETENTION_DAYS must be a positive integer")
  _is_uint "${BACKUP_WEEKLY_RETENTION_WEEKS}" \
    || problems+=("BACKUP_WEEKLY_RETENTION_WEEKS must be a non-negative integer")
  _is_uint "${BACKUP_LOCAL_KEEP}" || problems+=("BACKUP_LOCAL_KEEP must be a non-negative integer")
  if [[ "${BACKUP_LOCAL_KEEP}" != "0" ]]; then
    [[ "${BACKUP_LOCAL_DIR}" == /* && "${BACKUP_LOCAL_DIR}" != *..* ]] \
      || problems+=("BACKUP_LOCAL_DIR must be an absolute path when BACKUP_LOCAL_KEEP is set")
    [[ -n "${BACKUP_DB_CONTAINER}" ]] || problems+=("BACKUP_LOCAL_KEEP keeps database dumps: set BACKUP_DB_CONTAINER")
  fi
  [[ "${BACKUP_STATE_DIR}" == /* ]] || problems+=("BACKUP_STATE_DIR must be an absolute path")
  [[ "${BACKUP_STATUS_FILE}" == /* ]] || problems+=("BACKUP_STATUS_FILE must be an absolute path")
  { _is_uint "${BACKUP_MAX_AGE_HOURS}" && ((BACKUP_MAX_AGE_HOURS > 0)); } \
    || problems+=("BACKUP_MAX_AGE_HOURS must be a positive integer")
  [[ -z "${BACKUP_ALERT_URL}" || "${BACKUP_ALERT_URL}" =~ ^https?:// ]] \
    || problems+=("BACKUP_ALERT_URL must be an http(s):// URL")
  [[ -z "${BACKUP_HEARTBEAT_URL}" || "${BACKUP_HEARTBEAT_URL}" =~ ^https?:// ]] \
    || problems+=("BACKUP_HEARTBEAT_URL must be an http(s):// URL")
  _is_uint "${BACKUP_LOCK_WAIT_SECONDS}" || problems+=("BACKUP_LOCK_WAIT_SECONDS must be a non-negative integer")
  _is_uint "${BACKUP_RCLONE_RETRIES}" || problems+=("BACKUP_RCLONE_RETRIES must be a non-negative integer")
  _is_uint "${BACKUP_RCLONE_LOW_LEVEL_RETRIES}" || problems+=("BACKUP_RCLONE_LOW_LEVEL_RETRIES must be a non-negative integer")
  split_words words "${DRILL_TABLES}"
  for d in "${words[@]}"; do
    [[ "${d}" =~ ^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$ ]] \
      || problems+=("DRILL_TABLES entry '${d}' must be table or schema.table")
  done
  [[ -z "${DRILL_AGE_IDENTITY_FILE}" || "${DRILL_AGE_IDENTITY_FILE}" == /* ]] \
    || problems+=("DRILL_AGE_IDENTITY_FILE must be an absolute path")
  { _is_uint "${DRILL_READY_TIMEOUT_SECONDS}" && ((DRILL_READY_TIMEOUT_SECONDS > 0)); } \
    || problems+=("DRILL_READY_TIMEOUT_SECONDS must be a positive integer")

  if ((${#problems[@]} > 0)); then
    for d in "${problems[@]}"; do
      err "settings (${ONEBOX_BACKUP_ENV_FILE}): ${d}"
    done
    die "invalid settings: ${#problems[@]} problem(s)"
  fi

  # Normalise the prefix: no leading/trailing slashes, no doubled slashes.
  BACKUP_S3_PREFIX="$(printf '%s' "${BACKUP_S3_PREFIX}" | tr -s '/')"
  BACKUP_S3_PREFIX="${BACKUP_S3_PREFIX#/}"
  BACKUP_S3_PREFIX="${BACKUP_S3_PREFIX%/}"
}

ensure_state_dir() {
  mkdir -p "${BACKUP_STATE_DIR}"
  chmod 0700 "${BACKUP_STATE_DIR}"
}

# --------------------------------------------------------------------------
# locking: backup, restore and drill never overlap
# --------------------------------------------------------------------------
ONEBOX_LOCK_FD=""
acquire_lock() {
  local lockfile="${BACKUP_STATE_DIR}/.lock"
  [[ -e "${lockfile}" ]] || (umask 077 && : >>"${lockfile}")
  exec {ONEBOX_LOCK_FD}>>"${lockfile}"
  if ! flock -w "${BACKUP_LOCK_WAIT_SECONDS}" "${ONEBOX_LOCK_FD}"; then
    err "another backup/restore/drill run still holds ${lockfile} after ${BACKUP_LOCK_WAIT_SECONDS}s"
    return 1
  fi
}

# --------------------------------------------------------------------------
# object store through rclone (remote "onebox" defined only in the environment)
# --------------------------------------------------------------------------
s3_key() {
  # usage: s3_key SUBDIR NAME -> <prefix>/<subdir>/<name>
  if [[ -n "${BACKUP_S3_PREFIX}" ]]; then
    printf '%s/%s/%s' "${BACKUP_S3_PREFIX}" "$1" "$2"
  else
    printf '%s/%s' "$1" "$2"
  fi
}

remote_of() { printf 'onebox:%s/%s' "${BACKUP_S3_BUCKET}" "$1"; }

# rclone's provider profile of a BACKUP_S3_PROVIDER preset. The profile decides
# rclone's quirks for the service: listing version and URL encoding, whether
# multipart ETags are MD5 sums (they are not on R2 and B2, so rclone must not
# check them), which ACL header it may send. rclone 1.60 (Debian 12) has no B2
# profile for the S3 API: "Other" is the one whose quirks match it.
rclone_provider() {
  case "$1" in
    aws) printf 'AWS' ;;
    r2) printf 'Cloudflare' ;;
    spaces) printf 'DigitalOcean' ;;
    minio) printf 'Minio' ;;
    *) printf 'Other' ;;
  esac
}

rclone_run() {
  (
    export RCLONE_CONFIG=/dev/null
    export RCLONE_CONFIG_ONEBOX_TYPE=s3
    RCLONE_CONFIG_ONEBOX_PROVIDER="$(rclone_provider "${BACKUP_S3_PROVIDER}")"
    export RCLONE_CONFIG_ONEBOX_PROVIDER
    if [[ -n "${BACKUP_S3_ENDPOINT}" ]]; then
      export RCLONE_CONFIG_ONEBOX_ENDPOINT="${BACKUP_S3_ENDPOINT}"
    fi
    export RCLONE_CONFIG_ONEBOX_ENV_AUTH=false
    export RCLONE_CONFIG_ONEBOX_ACCESS_KEY_ID="${BACKUP_S3_ACCESS_KEY_ID}"
    export RCLONE_CONFIG_ONEBOX_SECRET_ACCESS_KEY="${BACKUP_S3_SECRET_ACCESS_KEY}"
    export RCLONE_CONFIG_ONEBOX_REGION="${BACKUP_S3_REGION}"
    export RCLONE_CONFIG_ONEBOX_FORCE_PATH_STYLE="${BACKUP_S3_FORCE_PATH_STYLE}"
    # The backup credentials may only put/get/list under the prefix (S6):
    # never try to create the bucket.
    export RCLONE_CONFIG_ONEBOX_NO_CHECK_BUCKET=true
    exec rclone \
      --retries "${BACKUP_RCLONE_RETRIES}" \
      --low-level-retries "${BACKUP_RCLONE_LOW_LEVEL_RETRIES}" \
      --contimeout 30s --timeout 5m \
      "$@"
  )
}

# Size in bytes of an object, or nothing when it does not exist.
remote_size() {
  local key="$1" out
  out="$(rclone_run lsjson --files-only "$(remote_of "${key}")")" || return 1
  if [[ "${out}" =~ \"Size\":([0-9]+) ]]; then
    printf '%s' "${BASH_REMATCH[1]}"
  fi
}

# B1: the object exists and has exactly the size of the local file.
verify_remote_size() {
  local local_file="$1" key="$2" want got
  want="$(file_size "${local_file}")"
  got="$(remote_size "${key}")" || { err "could not list ${key} after upload"; return 1; }
  if [[ -z "${got}" ]]; then
    err "uploaded object ${key} is not in the bucket"
    return 1
  fi
  if [[ "${got}" != "${want}" ]]; then
    err "uploaded object ${key} has ${got} bytes, local file has ${want}"
    return 1
  fi
  log "verified ${key}: ${got} bytes in the bucket"
}

upload_file() {
  local local_file="$1" key="$2"
  # --no-check-dest: the credentials may list only under the prefix, so a
  # HEAD on a not-yet-existing key can answer 403 instead of 404 (S6).
  rclone_run copyto --no-check-dest "${local_file}" "$(remote_of "${key}")"
}

download_file() {
  local key="$1" local_file="$2"
  rclone_run copyto "$(remote_of "${key}")" "${local_file}"
}

# Key of the newest database dump under <prefix>/daily/ (names carry a sortable
# UTC timestamp), or nothing when there is none.
latest_dump_key() {
  local names name best="" best_ts="" ts base
  names="$(rclone_run lsf --files-only "$(remote_of "$(s3_key daily '')")")" || return 1
  while IFS= read -r name; do
    [[ -n "${name}" ]] || continue
    base="${name%.age}"
    base="${base%.dump}"
    [[ "${name}" == "${base}.dump" || "${name}" == "${base}.dump.age" ]] || continue
    ts="${base##*-}"
    [[ "${ts}" =~ ^[0-9]{8}T[0-9]{6}Z$ ]] || continue
    if [[ -z "${best}" || "${ts}" > "${best_ts}" || ("${ts}" == "${best_ts}" && "${name}" > "${best}") ]]; then
      best="${name}"
      best_ts="${ts}"
    fi
  done <<<"${names}"
  if [[ -n "${best}" ]]; then
    s3_key daily "${best}"
  fi
}

# Key of the newest archive of the BACKUP_DIRS entry named NAME (archive_name)
# under <prefix>/files/, or nothing when there is none.
latest_archive_key() {
  local want="$1" names name parts base ts ext best="" best_ts=""
  names="$(rclone_run lsf --files-only "$(remote_of "$(s3_key files '')")")" || return 1
  while IFS= read -r name; do
    [[ -n "${name}" ]] || continue
    parts="$(backup_name_parts "${name}")" || continue
    read -r base ts ext <<<"${parts}"
    [[ "${base}" == "${want}" && ("${ext}" == "tar.gz" || "${ext}" == "tar.gz.age") ]] || continue
    if [[ -z "${best}" || "${ts}" > "${best_ts}" ]]; then
      best="${name}"
      best_ts="${ts}"
    fi
  done <<<"${names}"
  if [[ -n "${best}" ]]; then
    s3_key files "${best}"
  fi
}

# The BACKUP_DIRS entry whose archives are named NAME; fails when there is none.
volume_dir() {
  local want="$1" d words=()
  split_words words "${BACKUP_DIRS}"
  for d in "${words[@]}"; do
    if [[ "$(archive_name "${d}")" == "${want}" ]]; then
      printf '%s' "${d%/}"
      return 0
    fi
  done
  return 1
}

# Expand a user-given key: "latest", a key relative to the prefix
# ("daily/x.dump") or a full key ("<prefix>/daily/x.dump").
resolve_key() {
  local key="$1"
  if [[ "${key}" == "latest" ]]; then
    latest_dump_key
    return
  fi
  key="${key#/}"
  if [[ -n "${BACKUP_S3_PREFIX}" && "${key}" != "${BACKUP_S3_PREFIX}/"* ]]; then
    key="${BACKUP_S3_PREFIX}/${key}"
  fi
  printf '%s' "${key}"
}

# --------------------------------------------------------------------------
# retention: names, the host-side prune, local copies
# --------------------------------------------------------------------------
# Objects this job writes are named <base>-<UTC stamp YYYYMMDDTHHMMSSZ>.<ext>,
# ext being dump, dump.age, tar.gz or tar.gz.age. Prints "<base> <stamp> <ext>"
# for such a name and fails for any other.
backup_name_parts() {
  local re='^([A-Za-z0-9_.-]+)-([0-9]{8}T[0-9]{6}Z)\.(dump|dump\.age|tar\.gz|tar\.gz\.age)$'
  [[ "$1" =~ ${re} ]] || return 1
  printf '%s %s %s' "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}" "${BASH_REMATCH[3]}"
}

# Epoch seconds of a name's stamp (20261125T033000Z).
stamp_epoch() {
  local t="$1"
  date -u -d "${t:0:4}-${t:4:2}-${t:6:2}T${t:9:2}:${t:11:2}:${t:13:2}Z" +%s
}

# The most objects one prune deletes: a bound, not a quota (at one run a day
# and the default retention there are never more than a handful).
PRUNE_MAX_DELETES=1000
PRUNED_COUNT=0

# usage: prune_subdir SUBDIR MAX_AGE_SECONDS
# Deletes from <prefix>/<subdir>/ - and only there: the listing is not
# recursive, so nothing below it, beside it or outside the prefix is seen -
# the objects named by this job whose stamp lies more than MAX_AGE_SECONDS
# before now. The newest object of each <base> is kept whatever its age: a run
# of failing backups must never prune the last good dump away. Objects with any
# other name are left alone.
prune_subdir() {
  local subdir="$1" max_age="$2" names name parts base stamp epoch cutoff deleted=0 kept=0
  local -A newest=()
  local -a doomed=()
  cutoff=$(($(now_epoch) - max_age))
  if ! names="$(rclone_run lsf --files-only "$(remote_of "$(s3_key "${subdir}" '')")")"; then
    err "could not list $(s3_key "${subdir}" '') for the prune"
    return 1
  fi
  while IFS= read -r name; do
    parts="$(backup_name_parts "${name}")" || continue
    read -r base stamp _ <<<"${parts}"
    if [[ -z "${newest[${base}]:-}" || "${stamp}" > "${newest[${base}]}" ]]; then
      newest["${base}"]="${stamp}"
    fi
  done <<<"${names}"
  while IFS= read -r name; do
    parts="$(backup_name_parts "${name}")" || continue
    read -r base stamp _ <<<"${parts}"
    epoch="$(stamp_epoch "${stamp}")" || continue
    if [[ "${stamp}" == "${newest[${base}]}" ]] || ((epoch >= cutoff)); then
      kept=$((kept + 1))
    else
      doomed+=("${name}")
    fi
  done <<<"${names}"
  for name in "${doomed[@]}"; do
    if ((PRUNED_COUNT >= PRUNE_MAX_DELETES)); then
      warn "prune stopped after ${PRUNE_MAX_DELETES} deletions; the rest waits for the next run"
      break
    fi
    rclone_run deletefile "$(remote_of "$(s3_key "${subdir}" "${name}")")" \
      || { err "could not delete $(s3_key "${subdir}" "${name}")"; return 1; }
    deleted=$((deleted + 1))
    PRUNED_COUNT=$((PRUNED_COUNT + 1))
  done
  log "prune ${subdir}/: deleted ${deleted}, kept ${kept} (older than $((max_age / 86400)) day(s) goes)"
}

# Retention enforced by the host, for a bucket without our lifecycle rules
# (BACKUP_PRUNE=host): daily dumps and file archives by BACKUP_RETENTION_DAYS,
# weekly dumps by BACKUP_WEEKLY_RETENTION_WEEKS (0: no weekly copies are made
# and weekly/ is left alone), each separately.
prune_remote() {
  PRUNED_COUNT=0
  prune_subdir daily $((BACKUP_RETENTION_DAYS * 86400)) || return 1
  if ((BACKUP_WEEKLY_RETENTION_WEEKS > 0)); then
    prune_subdir weekly $((BACKUP_WEEKLY_RETENTION_WEEKS * 7 * 86400)) || return 1
  fi
  prune_subdir files $((BACKUP_RETENTION_DAYS * 86400)) || return 1
}

# usage: keep_local_copy FILE
# Copies FILE (a dump as uploaded) into BACKUP_LOCAL_DIR (0700, files 0600),
# then removes all but the newest BACKUP_LOCAL_KEEP dumps there.
keep_local_copy() {
  local file="$1" name tmp dest line n=0 parts base stamp ext
  local -a listing=()
  name="$(basename "${file}")"
  mkdir -p "${BACKUP_LOCAL_DIR}"
  chmod 0700 "${BACKUP_LOCAL_DIR}"
  dest="${BACKUP_LOCAL_DIR}/${name}"
  tmp="$(mktemp "${BACKUP_LOCAL_DIR}/.${name}.XXXXXX")"
  if ! cp -- "${file}" "${tmp}" || ! chmod 0600 "${tmp}" || ! mv -f -- "${tmp}" "${dest}"; then
    rm -f -- "${tmp}"
    err "could not write the local copy ${dest}"
    return 1
  fi
  if [[ "$(file_size "${dest}")" != "$(file_size "${file}")" ]]; then
    err "the local copy ${dest} does not have the size of the dump"
    return 1
  fi
  log "local copy ${dest}"
  for line in "${BACKUP_LOCAL_DIR}"/*; do
    [[ -f "${line}" ]] || continue
    parts="$(backup_name_parts "$(basename "${line}")")" || continue
    read -r base stamp ext <<<"${parts}"
    [[ "${ext}" == dump* ]] || continue
    listing+=("${stamp} $(basename "${line}")")
  done
  while IFS= read -r line; do
    [[ -n "${line}" ]] || continue
    n=$((n + 1))
    if ((n > BACKUP_LOCAL_KEEP)); then
      rm -f -- "${BACKUP_LOCAL_DIR}/${line#* }"
      log "removed the local copy ${line#* } (keeping ${BACKUP_LOCAL_KEEP})"
    fi
  done < <(printf '%s\n' "${listing[@]}" | sort -r)
}

# --------------------------------------------------------------------------
# dump checks (B1)
# --------------------------------------------------------------------------
DUMP_TABLE_COUNT=0
# usage: verify_dump_archive FILE CONTAINER
# Runs pg_restore --list inside CONTAINER (same PostgreSQL version as the
# dump) on FILE given through stdin. Passes for an archive that lists at least
# one TABLE entry, or for a valid archive of an empty database.
verify_dump_archive() {
  local file="$1" container="$2" magic listing
  [[ -s "${file}" ]] || { err "dump file is empty"; return 1; }
  magic="$(head -c 5 "${file}")"
  [[ "${magic}" == "PGDMP" ]] || { err "dump file is not a PostgreSQL custom-format archive"; return 1; }
  if ! listing="$(docker exec -i "${container}" pg_restore --list <"${file}")"; then
    err "pg_restore --list rejected the dump"
    return 1
  fi
  if ! grep -q '^;[[:space:]]*Format: CUSTOM' <<<"${listing}"; then
    err "pg_restore --list did not describe a custom-format archive"
    return 1
  fi
  DUMP_TABLE_COUNT="$(grep -E '^[0-9]+; [0-9]+ [0-9]+ TABLE ' <<<"${listing}" | grep -cv ' TABLE DATA ' || true)"
  if ((DUMP_TABLE_COUNT == 0)); then
    warn "the dump is a valid archive but contains no table (empty database?)"
  else
    log "dump verified with pg_restore --list: ${DUMP_TABLE_COUNT} table(s)"
  fi
}

is_age_file() {
  local header
  header="$(head -c 21 "$1")"
  [[ "${header}" == "age-encryption.org/v1" ]]
}

# --------------------------------------------------------------------------
# alert and heartbeat (never fail the caller; bounded time)
# --------------------------------------------------------------------------
# usage: send_alert JOB STEP EXIT_CODE MESSAGE
send_alert() {
  local job="$1" step="$2" code="$3" message="$4" body
  [[ -n "${BACKUP_ALERT_URL:-}" ]] || return 0
  if ! command -v curl >/dev/null 2>&1; then
    warn "curl is not installed: cannot send the alert"
    return 0
  fi
  body="$(printf '{"event":"onebox-%s-failed","job":"%s","host":"%s","step":"%s","exitCode":%d,"time":"%s","message":"%s"}' \
    "$(json_escape "${job}")" "$(json_escape "${job}")" "$(json_escape "${HOSTNAME:-unknown}")" \
    "$(json_escape "${step}")" "${code}" "$(now_iso)" "$(json_escape "${message}")")"
  if printf 'url = %s\nheader = "Content-Type: application/json"\ndata-binary = %s\n' \
    "$(curl_cfg_quote "${BACKUP_ALERT_URL}")" "$(curl_cfg_quote "${body}")" |
    curl -fsS -o /dev/null --connect-timeout 5 --max-time 15 --retry 2 --retry-max-time 40 -X POST -K -; then
    log "alert sent"
  else
    warn "could not deliver the alert (ignored)"
  fi
  return 0
}

send_heartbeat() {
  [[ -n "${BACKUP_HEARTBEAT_URL:-}" ]] || return 0
  if ! command -v curl >/dev/null 2>&1; then
    warn "curl is not installed: cannot ping the heartbeat URL"
    return 0
  fi
  if printf 'url = %s\n' "$(curl_cfg_quote "${BACKUP_HEARTBEAT_URL}")" |
    curl -fsS -o /dev/null --connect-timeout 5 --max-time 15 --retry 2 --retry-max-time 40 -K -; then
    log "heartbeat sent"
  else
    warn "could not reach the heartbeat URL (ignored)"
  fi
  return 0
}

# --------------------------------------------------------------------------
# status file (served publicly: no bucket name, no credential, no URL)
# --------------------------------------------------------------------------
# Writes BACKUP_STATUS_FILE (0644) and creates/removes the backup.stale marker
# next to it (the proxy answers 503 while it exists). Sets ONEBOX_STATUS to the
# status word. The status is "ok" only when every one of these holds (B5), else the
# first that fails, with its reason:
#   never         no backup has succeeded yet;
#   stale         the last success is older than BACKUP_MAX_AGE_HOURS;
#   failed        the last backup run failed (LAST_FAILURE, cleared by a success);
#   drill-failed  the last restore drill failed (drill.json "ok":false).
ONEBOX_STATUS=""
# usage: failure_json TIME STEP -> {"at":..,"step":..} or null
failure_json() {
  if [[ -z "$1" && -z "$2" ]]; then
    printf 'null'
  else
    printf '{"at":%s,"step":%s}' "$(json_str_or_null "$1")" "$(json_str_or_null "$2")"
  fi
}

write_status() {
  local last_file="${BACKUP_STATE_DIR}/LAST_SUCCESS" drill_file="${BACKUP_STATE_DIR}/drill.json"
  local failure_file="${BACKUP_STATE_DIR}/LAST_FAILURE"
  local status="never" last_time="" last_key="" age="null" max_age drill="null" line="" epoch now
  local status_dir marker reason="no backup has succeeded yet" failed_at="" failed_step=""
  max_age=$((BACKUP_MAX_AGE_HOURS * 3600))
  now="$(now_epoch)"

  if [[ -f "${last_file}" ]]; then
    IFS= read -r line <"${last_file}" || true
    last_time="${line%% *}"
    last_key=""
    [[ "${line}" == *" "* ]] && last_key="${line#* }"
    if [[ "${last_time}" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$ ]] &&
      epoch="$(date -u -d "${last_time}" +%s 2>/dev/null)"; then
      age=$((now - epoch))
      ((age >= 0)) || age=0
      if ((age <= max_age)); then
        status="ok"
        reason=""
      else
        status="stale"
        reason="the last successful backup is older than ${BACKUP_MAX_AGE_HOURS} hours"
      fi
    else
      warn "${last_file} is unreadable (${line:0:40}); reporting stale"
      status="stale"
      reason="the record of the last successful backup is unreadable"
      last_time=""
      last_key=""
    fi
  fi

  # "<ISO time> <step>", written by a failing backup.sh, removed by a successful one.
  if [[ -f "${failure_file}" ]]; then
    IFS= read -r line <"${failure_file}" || true
    failed_at="${line%% *}"
    failed_step=""
    [[ "${line}" == *" "* ]] && failed_step="${line#* }"
    [[ "${failed_at}" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$ ]] || failed_at=""
    failed_step="${failed_step//[^A-Za-z0-9_.:\/-]/}"
    if [[ "${status}" == "ok" ]]; then
      status="failed"
      reason="the last backup run failed${failed_at:+ at ${failed_at}}${failed_step:+ (step ${failed_step})}"
    fi
  fi

  # Point-in-time recovery (PITR_SPOOL_DIR set): a WAL segment that has waited in the
  # spool longer than PITR_MAX_LAG_SECONDS means archiving to the bucket is failing, and
  # every commit since is at risk (B5).
  local lag_limit="${PITR_MAX_LAG_SECONDS:-300}" oldest=""
  [[ "${lag_limit}" =~ ^[0-9]+$ ]] || lag_limit=300
  if [[ "${status}" == "ok" && -n "${PITR_SPOOL_DIR:-}" && -d "${PITR_SPOOL_DIR:-}" ]]; then
    oldest="$(find "${PITR_SPOOL_DIR}" -maxdepth 1 -type f -name '[0-9A-F]*' -printf '%T@\n' 2>/dev/null | sort -n | head -n 1)"
    oldest="${oldest%.*}"
    if [[ "${oldest}" =~ ^[0-9]+$ ]] && ((now - oldest > lag_limit)); then
      status="failed"
      reason="WAL archiving is behind: a segment has waited more than ${lag_limit} seconds to reach the bucket (point-in-time recovery)"
    fi
  fi

  if [[ -f "${drill_file}" ]]; then
    drill="$(head -c 4096 "${drill_file}")"
    if [[ ! "${drill}" =~ ^\{[^$'\n']*\}$ ]]; then
      warn "${drill_file} is not a one-line JSON object; leaving it out of the status"
      drill="null"
    fi
  fi
  # A drill that was skipped (no database, encrypted dump) has "ok":null: not a failure.
  if [[ "${status}" == "ok" && "${drill}" =~ \"ok\":false ]]; then
    status="drill-failed"
    reason="the last restore drill failed"
  fi

  status_dir="$(dirname "${BACKUP_STATUS_FILE}")"
  marker="${status_dir}/backup.stale"
  mkdir -p "${status_dir}"
  chmod 0755 "${status_dir}"
  printf '{"status":"%s","reason":%s,"lastSuccess":%s,"ageSeconds":%s,"maxAgeSeconds":%d,"lastKey":%s,"lastFailure":%s,"checkedAt":"%s","drill":%s}\n' \
    "${status}" "$(json_str_or_null "${reason}")" "$(json_str_or_null "${last_time}")" "${age}" "${max_age}" \
    "$(json_str_or_null "${last_key}")" "$(failure_json "${failed_at}" "${failed_step}")" "$(now_iso)" "${drill}" |
    atomic_write "${BACKUP_STATUS_FILE}" 0644
  if [[ "${status}" == "ok" ]]; then
    rm -f "${marker}"
  else
    : >"${marker}"
    chmod 0644 "${marker}"
  fi
  # shellcheck disable=SC2034  # read by the scripts that source this file
  ONEBOX_STATUS="${status}"
}
