#!/usr/bin/env bash
# Runs one scheduled job of a onebox stack: a one-off container of an app service,
# from the release `current` points at (after a rollback, the rolled-back image),
# with the service's env, secrets and networks (`docker compose run --no-deps`).
# Started by the job's systemd service (onebox-job-<app>_<job>.service), whose
# timer the jobs step installs.
#
# Usage: run-job.sh SETTINGS_FILE
#   SETTINGS_FILE  /etc/onebox/<app>-<env>/jobs/<job>.conf, root-owned 0600 (it may hold
#                  the alert URL): KEY=value lines, never sourced:
#     JOB, PROJECT, APP_DIR, SERVICE  the job, compose project, app directory, service
#     TIMEOUT, KILL_GRACE             seconds until SIGTERM, then until SIGKILL
#     LOCK, LOCK_WAIT                 the stack's lock file and how long to wait for it
#     ALERT_URL                       POSTed to (JSON) when a run fails; may be empty
#     ARG                             one per argument of the command, in order
#
# The run holds the stack's lock (R7), so no deploy switches the release, recreates
# its networks or upgrades its database under a running job: a deploy waits for the
# job, a job waits (at most LOCK_WAIT s) for a deploy. Failures (the lock not taken,
# no current release, a non-zero exit, the timeout, a stop) exit non-zero, so the
# unit is marked failed, and call ALERT_URL; the URL reaches curl on stdin, never in
# an argument list (R3). Output goes to the journal through the unit.
set -euo pipefail

readonly LOG_TAG="onebox-job"
readonly LOCK_FD=9

JOB="" PROJECT="" APP_DIR="" SERVICE="" TIMEOUT="" KILL_GRACE="" LOCK="" LOCK_WAIT="" ALERT_URL=""
ARGS=()
# Name of the job's container while one may exist (removed on exit, whatever happens).
CONTAINER=""

log() { printf '%s: %s\n' "${LOG_TAG}" "$*"; }
warn() { printf '%s: warning: %s\n' "${LOG_TAG}" "$*" >&2; }

json_escape() {
  local s="$1"
  s="${s//\\/\\\\}"
  s="${s//\"/\\\"}"
  s="${s//[$'\x01'-$'\x1f'$'\x7f']/ }"
  printf '%s' "${s}"
}

curl_cfg_quote() {
  local s="$1"
  s="${s//\\/\\\\}"
  s="${s//\"/\\\"}"
  printf '"%s"' "${s}"
}

# send_alert STEP EXIT_CODE MESSAGE: never fails the caller; bounded time.
send_alert() {
  local step="$1" code="$2" message="$3" body
  [[ -n "${ALERT_URL}" ]] || return 0
  if ! command -v curl >/dev/null 2>&1; then
    warn "curl is not installed: cannot send the alert"
    return 0
  fi
  body="$(printf '{"event":"onebox-job-failed","job":"%s","project":"%s","host":"%s","step":"%s","exitCode":%d,"time":"%s","message":"%s"}' \
    "$(json_escape "${JOB}")" "$(json_escape "${PROJECT}")" "$(json_escape "${HOSTNAME:-unknown}")" \
    "$(json_escape "${step}")" "${code}" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(json_escape "${message}")")"
  if printf 'url = %s\nheader = "Content-Type: application/json"\ndata-binary = %s\n' \
    "$(curl_cfg_quote "${ALERT_URL}")" "$(curl_cfg_quote "${body}")" |
    curl -fsS -o /dev/null --connect-timeout 5 --max-time 15 --retry 2 --retry-max-time 40 -X POST -K -; then
    log "alert sent"
  else
    warn "could not deliver the alert (ignored)"
  fi
  return 0
}

# fail STEP EXIT_CODE MESSAGE: report, alert and exit with EXIT_CODE (at least 1).
fail() {
  local step="$1" code="$2" message="$3"
  ((code != 0)) || code=1
  printf '%s: error: job %s failed (%s): %s\n' "${LOG_TAG}" "${JOB:-?}" "${step}" "${message}" >&2
  remove_container
  # The alert may take a while; nobody needs to wait for it.
  release_lock
  send_alert "${step}" "${code}" "${message}"
  exit "${code}"
}

remove_container() {
  [[ -n "${CONTAINER}" ]] || return 0
  docker rm --force -- "${CONTAINER}" >/dev/null 2>&1 || true
  CONTAINER=""
}

release_lock() {
  if [[ -e "/proc/self/fd/${LOCK_FD}" ]]; then
    exec 9>&-
  fi
}

# read_settings FILE: KEY=value lines; unknown keys refused.
read_settings() {
  local file="$1" line key value owner
  [[ -f "${file}" ]] || { printf '%s: error: no settings file %s\n' "${LOG_TAG}" "${file}" >&2; exit 2; }
  owner="$(stat -c '%u %a' -- "${file}")"
  [[ "${owner}" == "0 600" || "${owner}" == "0 400" ]] || {
    printf '%s: error: %s must be root-owned and 0600 (it is %s)\n' "${LOG_TAG}" "${file}" "${owner}" >&2
    exit 2
  }
  while IFS= read -r line || [[ -n "${line}" ]]; do
    [[ -z "${line}" || "${line}" == \#* ]] && continue
    key="${line%%=*}"
    value="${line#*=}"
    case "${key}" in
      JOB) JOB="${value}" ;;
      PROJECT) PROJECT="${value}" ;;
      APP_DIR) APP_DIR="${value}" ;;
      SERVICE) SERVICE="${value}" ;;
      TIMEOUT) TIMEOUT="${value}" ;;
      KILL_GRACE) KILL_GRACE="${value}" ;;
      LOCK) LOCK="${value}" ;;
      LOCK_WAIT) LOCK_WAIT="${value}" ;;
      ALERT_URL) ALERT_URL="${value}" ;;
      ARG) ARGS+=("${value}") ;;
      *) printf '%s: error: %s: unknown key %s\n' "${LOG_TAG}" "${file}" "${key}" >&2; exit 2 ;;
    esac
  done <"${file}"
  local problems=()
  [[ "${JOB}" =~ ^[a-z][a-z0-9-]*$ ]] || problems+=("JOB")
  [[ "${PROJECT}" =~ ^[a-z0-9][a-z0-9_-]*$ ]] || problems+=("PROJECT")
  [[ "${APP_DIR}" =~ ^/[A-Za-z0-9._/-]+$ ]] || problems+=("APP_DIR")
  [[ "${SERVICE}" =~ ^[a-z][a-z0-9-]*$ ]] || problems+=("SERVICE")
  [[ "${TIMEOUT}" =~ ^[1-9][0-9]*$ ]] || problems+=("TIMEOUT")
  [[ "${KILL_GRACE}" =~ ^[1-9][0-9]*$ ]] || problems+=("KILL_GRACE")
  [[ "${LOCK}" =~ ^/[A-Za-z0-9._/-]+$ ]] || problems+=("LOCK")
  [[ "${LOCK_WAIT}" =~ ^[0-9]+$ ]] || problems+=("LOCK_WAIT")
  [[ -z "${ALERT_URL}" || "${ALERT_URL}" =~ ^https?:// ]] || problems+=("ALERT_URL")
  ((${#ARGS[@]} > 0)) || problems+=("ARG")
  if ((${#problems[@]} > 0)); then
    printf '%s: error: %s: missing or invalid %s\n' "${LOG_TAG}" "${file}" "${problems[*]}" >&2
    exit 2
  fi
}

# take_lock: the stack's lock on fd 9 until release_lock or exit.
take_lock() {
  local holder
  mkdir -p -- "$(dirname -- "${LOCK}")"
  exec 9>>"${LOCK}"
  if ! flock --nonblock "${LOCK_FD}"; then
    holder="$(head -c 300 -- "${LOCK}" 2>/dev/null || true)"
    log "waiting (at most ${LOCK_WAIT} s) for the lock ${LOCK}, held by ${holder:-an unknown process}"
    if ! flock --wait "${LOCK_WAIT}" "${LOCK_FD}"; then
      holder="$(head -c 300 -- "${LOCK}" 2>/dev/null || true)"
      fail lock 1 "the stack's lock ${LOCK} was still held after ${LOCK_WAIT} s by ${holder:-an unknown process}; the job did not run"
    fi
  fi
  printf 'onebox job %s (pid %s, since %s)\n' "${JOB}" "$$" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"${LOCK}"
}

# A container of a run that was killed before its exit trap ran: under the lock no other run has one.
remove_stale_containers() {
  local id
  while read -r id; do
    [[ -n "${id}" ]] || continue
    docker rm --force -- "${id}" >/dev/null 2>&1 && log "removed a container left by an interrupted run (${id:0:12})"
  done < <(docker ps --all --quiet --filter "label=onebox.job=${PROJECT}.${JOB}" 2>/dev/null || true)
}

main() {
  [[ $# -eq 1 ]] || { printf 'usage: run-job.sh SETTINGS_FILE\n' >&2; exit 2; }
  read_settings "$1"
  command -v docker >/dev/null 2>&1 || fail setup 1 "docker is not installed"
  trap 'remove_container' EXIT
  # systemctl stop, or the unit's own TimeoutStartSec: the container goes too, and it counts as a failure.
  trap 'fail stopped 143 "stopped by a signal (systemctl stop or the unit timeout)"' TERM INT HUP

  take_lock
  local release rc=0 started
  if ! release="$(realpath -e -- "${APP_DIR}/current" 2>/dev/null)" || [[ ! -f "${release}/compose.yaml" ]]; then
    fail release 1 "no current release under ${APP_DIR} (has a deploy succeeded?)"
  fi
  remove_stale_containers
  CONTAINER="${PROJECT}-job-${JOB}-$(date -u +%Y%m%d%H%M%S)-$$"
  log "job ${JOB}: running ${SERVICE} of release $(basename -- "${release}") (timeout ${TIMEOUT} s): ${ARGS[*]}"
  started="$(date +%s)"
  # fd 9 (the lock) is not handed to compose: a stray child must not hold the stack's lock.
  timeout --kill-after="${KILL_GRACE}" "${TIMEOUT}" \
    docker compose --ansi never --project-name "${PROJECT}" --project-directory "${release}" --file "${release}/compose.yaml" \
    run --rm --no-deps -T --name "${CONTAINER}" --label "onebox.job=${PROJECT}.${JOB}" "${SERVICE}" "${ARGS[@]}" 9>&- </dev/null || rc=$?
  remove_container
  if ((rc == 124 || (rc == 137 && $(date +%s) - started >= TIMEOUT))); then
    fail timeout "${rc}" "did not finish within ${TIMEOUT} s; the container was stopped"
  fi
  if ((rc != 0)); then
    fail run "${rc}" "the command exited with status ${rc}"
  fi
  release_lock
  log "job ${JOB}: done in $(($(date +%s) - started)) s"
}

main "$@"
