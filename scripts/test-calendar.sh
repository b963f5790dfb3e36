#!/usr/bin/env bash
# Runs test suites as if on other dates, to show that no result depends on the
# day a test runs (issue: CI failed on every Sunday).
#
#   bash scripts/test-calendar.sh                       # every suite, every date below
#   bash scripts/test-calendar.sh --suite scripts --date 2026-12-06T12:00:00Z
#   bash scripts/test-calendar.sh --ci                  # the subset CI runs (whole output on stdout)
#
# How a date is faked, per suite:
#  - unit: the whole suite runs under libfaketime (`faketime -f @<date>`, the
#    clock then advances). Every process in it is node, which honours it.
#  - scripts (backup scripts against real PostgreSQL, s3rver and rclone):
#    libfaketime cannot be used — rclone is statically linked and ignores it
#    while s3rver honours it, so every request fails as RequestTimeTooSkewed.
#    The suite instead passes ONEBOX_TEST_NOW, which becomes BACKUP_NOW, the
#    clock every backup script takes (object names, weekly day, LAST_SUCCESS,
#    status age, drill records). S3 traffic keeps the real clock on both sides.
#
# Dates: the seven weekdays of one week, a new year's first seconds, the last
# seconds of a leap day, and the last seconds before a 90-day rotation period
# boundary (components/secrets/rotation.ts; 2026-12-03 starts period 231).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

ALL_DATES=(
  2026-11-30T10:00:00Z # Monday
  2026-12-01T10:00:00Z # Tuesday
  2026-12-02T10:00:00Z # Wednesday
  2026-12-03T10:00:00Z # Thursday
  2026-12-04T10:00:00Z # Friday
  2026-12-05T10:00:00Z # Saturday
  2026-12-06T10:00:00Z # Sunday
  2027-01-01T00:00:30Z # a year's first seconds
  2028-02-29T23:59:50Z # a leap day's last seconds
  2026-12-02T23:59:50Z # just before the 90-day rotation boundary of 2026-12-03
)

usage() {
  sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

log() {
  printf '[calendar] %s\n' "$*" >&2
}

# usage: run_suite SUITE DATE
run_suite() {
  local suite="$1" when="$2" fake
  # faketime takes "@YYYY-MM-DD HH:MM:SS" (start there, then tick) in TZ.
  fake="@${when:0:10} ${when:11:8}"
  case "${suite}" in
    unit)
      (cd "${ROOT}" && TZ=UTC faketime -f "${fake}" npm test --silent)
      ;;
    scripts)
      (cd "${ROOT}" && ONEBOX_TEST_NOW="${when}" npm run test:scripts --silent)
      ;;
    *)
      log "unknown suite: ${suite} (unit or scripts)"
      return 2
      ;;
  esac
}

main() {
  local suites=() dates=() results=() failed=0 ci=0
  # In CI each run's output is printed as well, so the test counts are read from it.
  PRINT=0
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --suite) suites+=("${2:?--suite needs unit or scripts}"); shift 2 ;;
      --date) dates+=("${2:?--date needs an ISO-8601 UTC instant}"); shift 2 ;;
      --ci) ci=1; PRINT=1; shift ;;
      -h | --help) usage ;;
      *) log "unknown argument: $1"; usage ;;
    esac
  done
  if ((ci)); then
    # The backup scripts on a Sunday and a Monday (the original failure), the
    # unit suite just before a rotation boundary (its clock crosses it).
    suites=(scripts); dates=(2026-12-06T10:00:00Z 2026-11-30T10:00:00Z)
    run_pairs
    suites=(unit); dates=(2026-12-02T23:59:50Z)
  fi
  [[ ${#suites[@]} -gt 0 ]] || suites=(unit scripts)
  [[ ${#dates[@]} -gt 0 ]] || dates=("${ALL_DATES[@]}")
  run_pairs
  printf '%s\n' "${results[@]}" >&2
  return "${failed}"
}

# usage: run_logged SUITE DATE LOG: the run's output into LOG (and on stdout with --ci).
run_logged() {
  local suite="$1" when="$2" logfile="$3"
  if ((PRINT)); then
    run_suite "${suite}" "${when}" 2>&1 | tee "${logfile}"
  else
    run_suite "${suite}" "${when}" >"${logfile}" 2>&1
  fi
}

# Runs every (suite, date) pair of the caller's lists; appends to results.
run_pairs() {
  local suite when
  # Each run's log (CALENDAR_LOG_DIR: a test of this script keeps its logs apart).
  local logs="${CALENDAR_LOG_DIR:-${ROOT}/.scratch}"
  mkdir -p "${logs}"
  for when in "${dates[@]}"; do
    if [[ ! "${when}" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$ ]]; then
      log "--date ${when}: use YYYY-MM-DDTHH:MM:SSZ"
      exit 2
    fi
  done
  for suite in "${suites[@]}"; do
    for when in "${dates[@]}"; do
      log "${suite} as if at ${when} ($(date -u -d "${when}" +%A))"
      if run_logged "${suite}" "${when}" "${logs}/calendar-${suite}-${when}.log"; then
        results+=("PASS ${suite} ${when}")
      else
        results+=("FAIL ${suite} ${when} (log: ${logs}/calendar-${suite}-${when}.log)")
        failed=1
      fi
      log "${results[-1]}"
    done
  done
}

main "$@"
