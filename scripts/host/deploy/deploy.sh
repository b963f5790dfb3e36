#!/usr/bin/env bash
# Deploys one onebox release behind a health gate; the previous release keeps
# (or resumes) serving when the new one fails.
#
# Usage: deploy.sh RELEASE_DIR
#   RELEASE_DIR  /srv/onebox/<app>/releases/<id>: compose.yaml, release.manifest
#                and, when the stack has a proxy of its own, Caddyfile.
#
# Activating a release:
#   1. check the env files exist and `docker compose config` accepts the file;
#      deploy.preflight: every required env key of every service is set (a secret
#      file's key by a non-empty file); a missing key fails here, before anything
#      changes, naming the key and its service;
#   2. pull the images (registry mode, bounded retries);
#   3. install the Caddyfile as the live proxy config (validated by the running
#      proxy first), so the proxy container itself is not recreated;
#   4. start PostgreSQL and set the role's password from the password file
#      (initdb applies it only once; this makes rotation work), then make a
#      running PgBouncer (database.pooler) re-read its auth file. When the data
#      directory holds an older major version than the release runs, upgrade it
#      first (see "PostgreSQL major upgrades" below); a newer major on old data
#      is never started;
#   4b. deploy.release, once per release (see "Release hooks" below): with
#      deploy.backupBeforeRelease a pg_dump verified by pg_restore --list first, then
#      the release command in a one-off container of the new image;
#   5. canary: every app service whose running container compose would replace
#      is first started once more beside it (`compose run`, which gives it no
#      service alias, so the proxy never routes to it) and must become healthy;
#      otherwise the running release is left untouched and serving;
#   6. `docker compose up --wait --remove-orphans`, then reload the proxy. A
#      network that exists without the bridge name the file gives it (a stack
#      deployed before the names) is recreated first: compose would keep it as it
#      is, outside the firewall rule for internal bridges (H13). The containers on
#      it stop and are removed for that one deploy (see recreate_stale_networks);
#   7. request every route through the proxy (`curl --resolve host:443:127.0.0.1`),
#      then the deploy.smoke checks (status, body), each a bounded number of times.
#      With proxy.kind traefik-external the proxy is the existing Traefik: the
#      container on proxy.externalNetwork (PROXY_NETWORK) that publishes port 443
#      (else 127.0.0.1:443), its certificate verified when this host trusts it; an
#      answer counts only with the stack's headers middleware on it (a 404 of
#      Traefik itself means no router of this stack matched, yet or at all).
# Success: `current` points at the release and old releases are pruned.
# Failure: which service failed and why (state, health probe output, last log
# lines), then the previous release is activated again and the exit status is 1.
#
# PostgreSQL major upgrades (database.version 16 -> 17): a new major cannot read
# the old data directory, so the upgrade is a dump and restore, with the serving
# release's containers:
#   a. the app services stop (writes end; the proxy keeps answering);
#   b. pg_dumpall of the old cluster (the safety dump, 0600) and a fingerprint
#      (databases, roles, the exact row count of every table);
#   c. the old server stops and its data directory is moved aside, whole,
#      beside the safety dump (<data dir>-upgrades/<run>/, 0700);
#   d. the new major initialises an empty data directory and the dump is
#      restored into it (psql, ON_ERROR_STOP), then fingerprinted again: any
#      difference fails the upgrade;
#   e. the usual health gate follows.
# Any failure from (c) on puts the old data directory back and brings the
# previous release up on it: the old major, on the data it left. The safety dump
# and the old directory stay until an operator removes them. Downgrades and
# upgrades without a running previous release are refused (restore a dump instead).
#
# Release hooks (deploy.* in the stack configuration; each failure names its hook):
#   deploy.release runs once per release: the release id is a hash of the release's
#   files, and a marker <app dir>/release-hooks/<id>.done is written when its command
#   succeeds. Activating that release again (a re-run of the step, a rollback to it,
#   this script run by hand) skips the command; a failed or timed-out command writes
#   no marker and runs again on the next attempt. A rollback never runs a release
#   command. The command sees ONEBOX_RELEASE (the id). Dumps of backupBeforeRelease
#   go to <database data dir>-release-dumps/ (0600 in 0700; the newest KEEP_RELEASES
#   are kept); nothing restores them by itself (the old release may have written since).
#
# Manual rollback: run it with an earlier release directory (`ls -t releases/`);
# the next `pulumi up` that changes the configuration deploys the configured one.
#
# Concurrency (R7): the whole run holds the stack's host-wide lock
# (/run/lock/onebox/<app>-<env>.lock, the same one the secrets, deploy and backup steps
# hold). A second run waits at most ONEBOX_LOCK_WAIT_SECONDS (default 900), printing
# who holds it, then fails without touching anything. Canary containers and
# temporary files carry per-run names.
set -euo pipefail

readonly LOG_TAG="onebox-deploy"
readonly PULL_ATTEMPTS=3
readonly PULL_RETRY_DELAY=5
readonly CHECK_INTERVAL=3
readonly LOG_TAIL=30
# ONEBOX_LOCK_DIR relocates the lock for tests only; on hosts the default is the steps' directory.
readonly LOCK_DIR="${ONEBOX_LOCK_DIR:-/run/lock/onebox}"
readonly LOCK_FD=9

log() { printf '%s: %s\n' "${LOG_TAG}" "$*"; }
warn() { printf '%s: warning: %s\n' "${LOG_TAG}" "$*" >&2; }
die() {
  printf '%s: error: %s\n' "${LOG_TAG}" "$*" >&2
  exit 1
}

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

# The release directory this run was asked to activate (named in the lock holder line).
RELEASE_ARG=""
# Settings of the release being activated (read from its release.manifest).
PROJECT=""
PROXY=""
PROXY_SERVICE=""
PROXY_DIR=""
TLS_MODE=""
IMAGE_SOURCE=""
HEALTH_TIMEOUT=""
KEEP_RELEASES=""
DATABASE_SERVICE=""
DATABASE_USER=""
DATABASE_MAJOR=""
DATABASE_DATA_DIR=""
ENV_FILES=()
CHECKS=()
# traefik-external: the existing Traefik's network, and where route and smoke checks
# connect (set by find_traefik; the stack's own Caddy is always 127.0.0.1:443).
PROXY_NETWORK=""
ROUTE_IP="127.0.0.1"
ROUTE_PORT="443"
TRAEFIK_NAME=""
# The release directory compose commands act on, and what went wrong in it.
ACTIVE_DIR=""
FAILURE=""
PROXY_CHANGED=0
WORK=""
# Name of a canary container while one exists (removed on exit, whatever happens).
CANARY=""
# Unique per run: canary names (and the label that finds a crashed run's leftovers).
RUN_ID=""
# 1 when a release is serving already (there is something for the canaries to protect).
HAS_PREVIOUS=0
# Release hooks (manifest): preflight keys ("service KEY"), the release command, the
# dump before it, smoke checks ("host path status attempts any|contains|matches [pattern]").
PREFLIGHTS=()
SECRETS_DIR=""
RELEASE_SERVICE=""
RELEASE_COMMAND=""
RELEASE_TIMEOUT=""
DATABASE_NAME=""
DUMP_VERIFY_LIB=""
SMOKES=()
# The release this run deploys, the app directory, and the release container while one runs.
RELEASE_ID=""
APP_DIR=""
RELEASE_CONTAINER=""
# 1 when the failure came before this run changed anything (no rollback needed).
UNCHANGED_FAILURE=0

# read_manifest FILE: KEY=value lines; never sourced, unknown keys refused.
read_manifest() {
  local file="$1" line key value
  [[ -f "${file}" ]] || die "no release manifest at ${file}"
  PROJECT="" PROXY="" PROXY_SERVICE="" PROXY_DIR="" TLS_MODE="" IMAGE_SOURCE="" PUBLISHES=""
  HEALTH_TIMEOUT="" KEEP_RELEASES="" DATABASE_SERVICE="" DATABASE_USER="" DATABASE_MAJOR="" DATABASE_DATA_DIR="" REGISTRY_CONFIG=""
  POOLER_SERVICE=""
  ENV_FILES=()
  CHECKS=()
  PROXY_NETWORK="" ROUTE_IP="127.0.0.1" ROUTE_PORT="443" TRAEFIK_NAME=""
  PREFLIGHTS=() SECRETS_DIR="" RELEASE_SERVICE="" RELEASE_COMMAND="" RELEASE_TIMEOUT="" DATABASE_NAME="" DUMP_VERIFY_LIB=""
  SMOKES=()
  while IFS= read -r line || [[ -n "${line}" ]]; do
    [[ -z "${line}" || "${line}" == \#* ]] && continue
    key="${line%%=*}"
    value="${line#*=}"
    case "${key}" in
      PROJECT) PROJECT="${value}" ;;
      PROXY) PROXY="${value}" ;;
      PROXY_SERVICE) PROXY_SERVICE="${value}" ;;
      PROXY_DIR) PROXY_DIR="${value}" ;;
      PUBLISHES) PUBLISHES="${value}" ;;
      TLS_MODE) TLS_MODE="${value}" ;;
      IMAGE_SOURCE) IMAGE_SOURCE="${value}" ;;
      HEALTH_TIMEOUT) HEALTH_TIMEOUT="${value}" ;;
      KEEP_RELEASES) KEEP_RELEASES="${value}" ;;
      DATABASE_SERVICE) DATABASE_SERVICE="${value}" ;;
      DATABASE_USER) DATABASE_USER="${value}" ;;
      DATABASE_MAJOR) DATABASE_MAJOR="${value}" ;;
      DATABASE_DATA_DIR) DATABASE_DATA_DIR="${value}" ;;
      REGISTRY_CONFIG) REGISTRY_CONFIG="${value}" ;;
      POOLER_SERVICE) POOLER_SERVICE="${value}" ;;
      ENV_FILE) ENV_FILES+=("${value}") ;;
      CHECK) CHECKS+=("${value}") ;;
      PROXY_NETWORK) PROXY_NETWORK="${value}" ;;
      PREFLIGHT) PREFLIGHTS+=("${value}") ;;
      SECRETS_DIR) SECRETS_DIR="${value}" ;;
      RELEASE_SERVICE) RELEASE_SERVICE="${value}" ;;
      RELEASE_COMMAND) RELEASE_COMMAND="${value}" ;;
      RELEASE_TIMEOUT) RELEASE_TIMEOUT="${value}" ;;
      DATABASE_NAME) DATABASE_NAME="${value}" ;;
      DUMP_VERIFY_LIB) DUMP_VERIFY_LIB="${value}" ;;
      SMOKE) SMOKES+=("${value}") ;;
      *) die "${file}: unknown key ${key}" ;;
    esac
  done <"${file}"
  [[ "${PROJECT}" =~ ^[a-z0-9][a-z0-9_-]*$ ]] || die "${file}: PROJECT is missing or invalid"
  [[ "${HEALTH_TIMEOUT}" =~ ^[0-9]+$ ]] || die "${file}: HEALTH_TIMEOUT must be a number of seconds"
  [[ "${PUBLISHES}" =~ ^([1-9][0-9]*( [1-9][0-9]*)*)?$ ]] || die "${file}: PUBLISHES must list port numbers"
  [[ "${KEEP_RELEASES}" =~ ^[0-9]+$ ]] || die "${file}: KEEP_RELEASES must be a number"
  if [[ -n "${DATABASE_SERVICE}" ]]; then
    [[ "${DATABASE_MAJOR}" =~ ^[1-9][0-9]?$ ]] || die "${file}: DATABASE_MAJOR must be a PostgreSQL major version"
    [[ "${DATABASE_DATA_DIR}" == /* && "${DATABASE_DATA_DIR}" != */ ]] || die "${file}: DATABASE_DATA_DIR must be an absolute path"
  fi
  [[ -z "${PROXY_NETWORK}" || "${PROXY_NETWORK}" =~ ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$ ]] || die "${file}: PROXY_NETWORK is invalid"
  [[ -z "${REGISTRY_CONFIG}" || "${REGISTRY_CONFIG}" =~ ^/[A-Za-z0-9._/-]+$ ]] || die "${file}: REGISTRY_CONFIG must be an absolute path"
  if [[ -n "${RELEASE_SERVICE}" ]]; then
    [[ "${RELEASE_SERVICE}" =~ ^[a-z][a-z0-9-]*$ ]] || die "${file}: RELEASE_SERVICE is invalid"
    [[ "${RELEASE_TIMEOUT}" =~ ^[1-9][0-9]*$ ]] || die "${file}: RELEASE_TIMEOUT must be a number of seconds"
    [[ "${RELEASE_COMMAND}" == \[* ]] || die "${file}: RELEASE_COMMAND must be a JSON array"
  fi
  ((${#PREFLIGHTS[@]} == 0)) || [[ "${SECRETS_DIR}" == /* ]] || die "${file}: SECRETS_DIR must be an absolute path"
  [[ -z "${DUMP_VERIFY_LIB}" || ("${DUMP_VERIFY_LIB}" == /* && -n "${DATABASE_NAME}") ]] || die "${file}: DUMP_VERIFY_LIB needs an absolute path and DATABASE_NAME"
}

# Plain output (no colours or terminal control codes): it ends up in Pulumi's log.
compose() {
  docker compose --ansi never --project-name "${PROJECT}" --project-directory "${ACTIVE_DIR}" \
    --file "${ACTIVE_DIR}/compose.yaml" "$@"
}

check_env_files() {
  local f
  for f in "${ENV_FILES[@]}"; do
    if [[ ! -f "${f}" ]]; then
      FAILURE="env file ${f} is missing (the secrets step writes it)"
      return 1
    fi
  done
}

# The registries the active release's images come from (Docker Hub for a name without
# a registry host), space-separated: a refused pull names them, as the engine's own
# "unauthorized" does not.
image_registries() {
  local ref first
  sed -n "s/^[[:space:]]*image:[[:space:]]*[\"']\{0,1\}\([^\"' ]*\).*\$/\1/p" "${ACTIVE_DIR}/compose.yaml" 2>/dev/null \
    | while IFS= read -r ref; do
      first="${ref%%/*}"
      if [[ "${ref}" == */* && ("${first}" == *.* || "${first}" == *:* || "${first}" == localhost) ]]; then
        printf '%s\n' "${first}"
      else
        printf 'docker.io\n'
      fi
    done | sort -u | tr '\n' ' ' | sed 's/ $//'
}

# Pulls with the stack's own registry logins (REGISTRY_CONFIG, a DOCKER_CONFIG directory
# the secrets step writes, root-only) when it has any; the error names the registry.
pull_images() {
  local attempt
  local -a env=()
  if [[ -n "${REGISTRY_CONFIG}" ]]; then
    if [[ ! -f "${REGISTRY_CONFIG}/config.json" ]]; then
      FAILURE="registry logins ${REGISTRY_CONFIG}/config.json are missing (the secrets step writes them)"
      return 1
    fi
    env=(env "DOCKER_CONFIG=${REGISTRY_CONFIG}")
  fi
  for ((attempt = 1; attempt <= PULL_ATTEMPTS; attempt++)); do
    if "${env[@]}" docker compose --ansi never --project-name "${PROJECT}" --project-directory "${ACTIVE_DIR}" \
      --file "${ACTIVE_DIR}/compose.yaml" pull --quiet 2>"${WORK}/pull.log"; then
      return 0
    fi
    warn "pulling images failed (attempt ${attempt} of ${PULL_ATTEMPTS}): $(tail -n 3 "${WORK}/pull.log")"
    if ((attempt < PULL_ATTEMPTS)); then
      sleep "${PULL_RETRY_DELAY}"
    fi
  done
  FAILURE="could not pull the images from $(image_registries) after ${PULL_ATTEMPTS} attempts: $(tail -n 3 "${WORK}/pull.log")"
  return 1
}

proxy_running() {
  [[ -n "$(compose ps --status running --quiet "${PROXY_SERVICE}" 2>/dev/null)" ]]
}

# install_proxy_config DIR: the release's Caddyfile becomes the live one. The
# proxy mounts the live directory, so this never recreates the proxy container.
install_proxy_config() {
  local dir="$1"
  PROXY_CHANGED=0
  [[ -n "${PROXY_SERVICE}" ]] || return 0
  if [[ ! -f "${dir}/Caddyfile" ]]; then
    FAILURE="${dir}/Caddyfile is missing"
    return 1
  fi
  mkdir -p -- "${PROXY_DIR}" || return 1
  if cmp -s -- "${dir}/Caddyfile" "${PROXY_DIR}/Caddyfile"; then
    return 0
  fi
  local next="Caddyfile.next-${RUN_ID}"
  install -m 0644 -- "${dir}/Caddyfile" "${PROXY_DIR}/${next}" || return 1
  if proxy_running; then
    if ! compose exec -T "${PROXY_SERVICE}" caddy validate --config "/etc/caddy/${next}" \
      --adapter caddyfile >"${WORK}/validate.log" 2>&1; then
      rm -f -- "${PROXY_DIR:?}/${next}"
      FAILURE="the proxy rejects the new Caddyfile: $(grep -v '"level":"info"' "${WORK}/validate.log" | tail -n 5)"
      return 1
    fi
  fi
  mv -f -T -- "${PROXY_DIR}/${next}" "${PROXY_DIR}/Caddyfile" || return 1
  PROXY_CHANGED=1
}

reload_proxy() {
  [[ -n "${PROXY_SERVICE}" && "${PROXY_CHANGED}" == 1 ]] || return 0
  if ! compose exec -T "${PROXY_SERVICE}" caddy reload --config /etc/caddy/Caddyfile \
    --adapter caddyfile >"${WORK}/reload.log" 2>&1; then
    FAILURE="the proxy did not reload its configuration: $(tail -n 5 "${WORK}/reload.log")"
    return 1
  fi
  log "proxy configuration reloaded"
}

# The password file is applied by initdb on the first start only; setting it on
# every deploy makes a rotated password take effect before the apps restart.
#
# R8: PostgreSQL logs a failing statement verbatim (log_min_error_statement), so the
# statement carries the password's SCRAM-SHA-256 verifier (computed by the program,
# the secrets step's postgres-password.scram), never the password: PostgreSQL stores a
# verifier as it is, and the password reaches neither its log nor pg_stat_activity nor
# pg_stat_statements, whatever fails. The verifier is not a password (it cannot log in)
# but helps an offline guess, so the session also turns statement logging off for
# itself. psql reads the file inside the container: it appears in no argument list.
sync_database_password() {
  local sql
  # shellcheck disable=SC2016 # backquotes and :'pw' are psql syntax, not shell
  sql='SET log_min_error_statement = panic;
SET log_statement = none;
\set pw `cat /run/secrets/postgres-password.scram`
ALTER ROLE :"role" PASSWORD :'"'"'pw'"'"';'
  if ! compose exec -T "${DATABASE_SERVICE}" psql -v ON_ERROR_STOP=1 -q -X \
    -U "${DATABASE_USER}" -d postgres -v role="${DATABASE_USER}" <<<"${sql}" >"${WORK}/psql.log" 2>&1; then
    FAILURE="could not set the password of role ${DATABASE_USER}: $(tail -n 5 "${WORK}/psql.log")"
    return 1
  fi
}

# PgBouncer (database.pooler) reads its auth file, the role's SCRAM verifier, at start and
# on SIGHUP: once PostgreSQL has the current password, a running pooler re-reads it, so a
# rotated password is accepted through the pooler too. A pooler that was not running (the
# pooler was just enabled, or compose recreated it for a changed ini) is started here and
# reads the file as it starts. Either way it serves before the release command and the
# canaries, which connect through it when their service uses the pooler.
start_pooler() {
  local before id
  [[ -n "${POOLER_SERVICE}" ]] || return 0
  before="$(compose ps --quiet --status running "${POOLER_SERVICE}" 2>/dev/null | head -n 1)"
  if ! compose up --detach --wait --wait-timeout "${HEALTH_TIMEOUT}" "${POOLER_SERVICE}"; then
    FAILURE="${POOLER_SERVICE} did not become healthy within ${HEALTH_TIMEOUT} s"
    return 1
  fi
  id="$(compose ps --quiet --status running "${POOLER_SERVICE}" 2>/dev/null | head -n 1)"
  # A container started (or recreated) just now read the current file as it started.
  [[ -n "${id}" && "${id}" == "${before}" ]] || return 0
  if ! docker kill --signal HUP "${id}" >/dev/null 2>"${WORK}/pooler.log"; then
    FAILURE="could not make ${POOLER_SERVICE} re-read its auth file: $(tail -n 3 "${WORK}/pooler.log")"
    return 1
  fi
  log "${POOLER_SERVICE} re-read its auth file"
}

# --------------------------------------------------------------------------
# PostgreSQL major upgrades (see the header)
# --------------------------------------------------------------------------
# The release directory that was serving when this run started, if any.
PREVIOUS_DIR=""
# Set while this run has moved an old data directory aside (cleared once the
# upgraded release is live): where it is, and its major version.
UPGRADE_DIR=""
UPGRADE_OLD_DATA=""
readonly DUMP_COMPLETE_MARK="PostgreSQL database cluster dump complete"

# Major version of the cluster in a host data directory (PG_VERSION; the 18+
# images keep PGDATA in <mount>/<major>/docker), or nothing for an empty one.
data_dir_major() {
  local dir="$1" f
  for f in "${dir}/PG_VERSION" "${dir}"/*/docker/PG_VERSION; do
    if [[ -f "${f}" ]]; then
      head -n 1 -- "${f}"
      return 0
    fi
  done
}

# db_psql DB [psql args]: psql as the stack's role inside the database container, SQL on stdin.
db_psql() {
  local db="$1"
  shift
  compose exec -T "${DATABASE_SERVICE}" psql -X -q -v ON_ERROR_STOP=1 -U "${DATABASE_USER}" -d "${db}" "$@"
}

# cluster_fingerprint FILE: every database, every role and the exact row count
# of every table, sorted; equal before and after a restore, or the restore lost something.
cluster_fingerprint() {
  local out="$1" db dbs
  # shellcheck disable=SC2016 # \gexec and %I are psql/SQL syntax
  local count_sql='SELECT format($q$SELECT %L || $s$|$s$ || count(*) FROM %I.%I$q$, n.nspname || $d$.$d$ || c.relname, n.nspname, c.relname)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ($r$r$r$, $r$p$r$) AND n.nspname NOT IN ($n$pg_catalog$n$, $n$information_schema$n$) AND n.nspname NOT LIKE $t$pg_toast%$t$
 ORDER BY 1 \gexec'
  dbs="$(db_psql postgres -tA <<<"SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1;")" || return 1
  {
    printf 'databases: %s\n' "$(tr '\n' ' ' <<<"${dbs}")"
    printf 'roles: %s\n' "$(db_psql postgres -tA <<<"SELECT string_agg(rolname, ' ' ORDER BY rolname) FROM pg_roles WHERE rolname !~ '^pg_';")"
    while IFS= read -r db; do
      [[ -n "${db}" ]] || continue
      db_psql "${db}" -tA <<<"${count_sql}" | sed "s|^|${db}:|" | LC_ALL=C sort
    done <<<"${dbs}"
  } >"${out}"
}

# The release's own services besides the database and the proxy (the writers).
writer_services() {
  compose config --services | grep -vxF -e "${DATABASE_SERVICE}" -e "${PROXY_SERVICE:-}" || true
}

# upgrade_database OLD_MAJOR: runs steps a-d of the header with the previous
# release's compose for the old server and this release's for the new one.
upgrade_database() {
  local old="$1" new_dir="${ACTIVE_DIR}" stamp dump owner mode writers
  if [[ -z "${PREVIOUS_DIR}" ]] || ((old > DATABASE_MAJOR)); then
    FAILURE="the data directory ${DATABASE_DATA_DIR} holds PostgreSQL ${old} and this release runs ${DATABASE_MAJOR}: "
    if ((old > DATABASE_MAJOR)); then
      FAILURE+="a downgrade is a restore (restore.sh into a stack of the older version), never a start on newer data"
    else
      FAILURE+="an upgrade needs the release that runs ${old} to be serving (a dump is taken from it); restore a dump instead"
    fi
    return 1
  fi
  stamp="$(date -u +%Y%m%dT%H%M%SZ)"
  UPGRADE_DIR="${DATABASE_DATA_DIR}-upgrades/${stamp}-pg${old}-to-pg${DATABASE_MAJOR}"
  (umask 077 && mkdir -p -- "${UPGRADE_DIR}") || { FAILURE="cannot create ${UPGRADE_DIR}"; return 1; }
  chmod 0700 -- "${DATABASE_DATA_DIR}-upgrades" "${UPGRADE_DIR}"
  dump="${UPGRADE_DIR}/dumpall-pg${old}.sql"
  log "PostgreSQL ${old} -> ${DATABASE_MAJOR}: dump and restore; safety copies in ${UPGRADE_DIR}"

  # a, b: with the serving release's compose (the old image).
  ACTIVE_DIR="${PREVIOUS_DIR}"
  read_manifest "${PREVIOUS_DIR}/release.manifest"
  writers="$(writer_services)"
  if [[ -n "${writers}" ]]; then
    log "stopping the writers for the upgrade: $(tr '\n' ' ' <<<"${writers}")"
    # shellcheck disable=SC2086 # one service name per word
    compose stop ${writers} || { FAILURE="could not stop the app services before the upgrade"; return 1; }
  fi
  if ! compose up --detach --wait --wait-timeout "${HEALTH_TIMEOUT}" "${DATABASE_SERVICE}"; then
    FAILURE="the PostgreSQL ${old} server of the serving release is not healthy; nothing was changed"
    return 1
  fi
  if ! (umask 077 && compose exec -T "${DATABASE_SERVICE}" pg_dumpall -U "${DATABASE_USER}" --clean --if-exists >"${dump}" 2>"${WORK}/dumpall.log"); then
    FAILURE="pg_dumpall of PostgreSQL ${old} failed: $(tail -n 3 "${WORK}/dumpall.log")"
    return 1
  fi
  if ! tail -n 5 -- "${dump}" | grep -qF "${DUMP_COMPLETE_MARK}"; then
    FAILURE="the dump of PostgreSQL ${old} is incomplete (no end marker)"
    return 1
  fi
  cluster_fingerprint "${UPGRADE_DIR}/fingerprint-pg${old}.txt" || { FAILURE="could not count the rows of PostgreSQL ${old}"; return 1; }
  log "safety dump $(stat -c %s -- "${dump}") bytes, $(grep -c '|' "${UPGRADE_DIR}/fingerprint-pg${old}.txt") table(s)"

  # c: stop the old server; move its data aside (one rename on the same volume).
  compose stop "${DATABASE_SERVICE}" || { FAILURE="could not stop PostgreSQL ${old}"; return 1; }
  owner="$(stat -c %u:%g -- "${DATABASE_DATA_DIR}")"
  mode="$(stat -c %a -- "${DATABASE_DATA_DIR}")"
  mv -T -- "${DATABASE_DATA_DIR}" "${UPGRADE_DIR}/data-pg${old}" || { FAILURE="could not move ${DATABASE_DATA_DIR} aside"; return 1; }
  UPGRADE_OLD_DATA="${UPGRADE_DIR}/data-pg${old}"
  if ! mkdir -- "${DATABASE_DATA_DIR}" || ! chown -- "${owner}" "${DATABASE_DATA_DIR}" || ! chmod -- "${mode}" "${DATABASE_DATA_DIR}"; then
    FAILURE="could not create the empty ${DATABASE_DATA_DIR}"
    return 1
  fi

  # d: the new major on its own empty directory, then the restore.
  ACTIVE_DIR="${new_dir}"
  read_manifest "${new_dir}/release.manifest"
  if ! compose up --detach --wait --wait-timeout "${HEALTH_TIMEOUT}" "${DATABASE_SERVICE}"; then
    FAILURE="PostgreSQL ${DATABASE_MAJOR} did not become healthy on its new data directory"
    return 1
  fi
  # The role the server was initialised with exists already: its DROP/CREATE lines
  # would fail, every other statement of the dump runs.
  if ! grep -vxF -e "DROP ROLE IF EXISTS ${DATABASE_USER};" -e "CREATE ROLE ${DATABASE_USER};" -- "${dump}" |
    db_psql postgres >"${WORK}/restore.log" 2>&1; then
    FAILURE="the restore into PostgreSQL ${DATABASE_MAJOR} failed: $(grep -m 3 -E '^(psql:|ERROR)' "${WORK}/restore.log" | cut -c 1-200)"
    return 1
  fi
  cluster_fingerprint "${UPGRADE_DIR}/fingerprint-pg${DATABASE_MAJOR}.txt" || { FAILURE="could not count the rows of PostgreSQL ${DATABASE_MAJOR}"; return 1; }
  if ! diff -u -- "${UPGRADE_DIR}/fingerprint-pg${old}.txt" "${UPGRADE_DIR}/fingerprint-pg${DATABASE_MAJOR}.txt" >"${WORK}/fingerprint.diff"; then
    FAILURE="the restored PostgreSQL ${DATABASE_MAJOR} differs from PostgreSQL ${old}: $(grep -E '^[-+][^-+]' "${WORK}/fingerprint.diff" | head -n 4 | tr '\n' ' ')"
    return 1
  fi
  log "PostgreSQL ${DATABASE_MAJOR} holds what ${old} held (databases, roles, rows of every table)"
}

# Puts the old data directory back after a failed upgrade (before the rollback
# activates the previous release on it). The new one is kept for inspection.
revert_database_upgrade() {
  [[ -n "${UPGRADE_OLD_DATA}" ]] || return 0
  log "upgrade failed: putting the PostgreSQL data directory of the previous release back"
  compose stop "${DATABASE_SERVICE}" >/dev/null 2>&1 || true
  compose rm --force --stop "${DATABASE_SERVICE}" >/dev/null 2>&1 || true
  if [[ -e "${DATABASE_DATA_DIR}" ]]; then
    mv -T -- "${DATABASE_DATA_DIR}" "${UPGRADE_DIR}/failed-data-pg${DATABASE_MAJOR}" || return 1
  fi
  mv -T -- "${UPGRADE_OLD_DATA}" "${DATABASE_DATA_DIR}" || return 1
  UPGRADE_OLD_DATA=""
  log "restored ${DATABASE_DATA_DIR}; the failed attempt is in ${UPGRADE_DIR}/failed-data-pg${DATABASE_MAJOR}"
}

# Before any server starts: the data directory must hold this release's major, be
# empty (first start), or be upgraded from an older major now.
check_database_major() {
  local mode="$1" found
  found="$(data_dir_major "${DATABASE_DATA_DIR}")"
  [[ -z "${found}" || "${found}" == "${DATABASE_MAJOR}" ]] && return 0
  if [[ "${mode}" != "deploy" ]]; then
    FAILURE="the data directory ${DATABASE_DATA_DIR} holds PostgreSQL ${found}; this release runs ${DATABASE_MAJOR}: not starting it on that data"
    return 1
  fi
  upgrade_database "${found}"
}

# App services (those with an env file) whose running container `compose up`
# would replace, one per line. Falls back to every app service with a running
# container when this compose has no --dry-run.
services_to_replace() {
  local f service out
  if out="$(compose --dry-run up --detach --remove-orphans 2>&1)"; then
    for f in "${ENV_FILES[@]}"; do
      service="$(basename -- "${f}" .env)"
      if grep -qE "Container ${PROJECT}-${service}-[0-9]+ +Recreate\$" <<<"${out}"; then
        printf '%s\n' "${service}"
      fi
    done
    return 0
  fi
  for f in "${ENV_FILES[@]}"; do
    service="$(basename -- "${f}" .env)"
    [[ -z "$(compose ps --status running --quiet "${service}" 2>/dev/null)" ]] || printf '%s\n' "${service}"
  done
}

remove_canary() {
  [[ -n "${CANARY}" ]] || return 0
  docker rm --force "${CANARY}" >/dev/null 2>&1 || true
  CANARY=""
}

# canary SERVICE: the new container of SERVICE must become healthy on its own
# before the running one is replaced. `compose run` gives it the service's
# image, environment, volumes, networks and health check but not the service's
# network alias, so no request reaches it.
canary() {
  local service="$1" state health deadline
  CANARY="${PROJECT}-${service}-canary-${RUN_ID}"
  log "canary: starting the new ${service} beside the running one"
  if ! compose run --detach --no-deps --name "${CANARY}" --label "onebox.canary=${PROJECT}" "${service}" >/dev/null 2>"${WORK}/canary.log"; then
    FAILURE="service ${service}: the new container did not start: $(tail -n 5 "${WORK}/canary.log")"
    remove_canary
    return 1
  fi
  deadline=$((SECONDS + HEALTH_TIMEOUT))
  while :; do
    read -r state health < <(docker inspect --format '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' \
      "${CANARY}" 2>/dev/null || echo "gone none")
    if [[ "${state}" == "running" && ("${health}" == "healthy" || "${health}" == "none") ]]; then
      log "canary: the new ${service} is healthy"
      remove_canary
      return 0
    fi
    if [[ "${state}" != "running" || "${health}" == "unhealthy" ]] || ((SECONDS >= deadline)); then
      FAILURE="service ${service}: the new container is ${state}${health:+ (${health})} and was not put in service (HEALTH_TIMEOUT ${HEALTH_TIMEOUT} s); the running ${service} was not touched"
      {
        printf '%s: canary %s:\n' "${LOG_TAG}" "${CANARY}"
        docker inspect --format '{{if .State.Health}}{{range .State.Health.Log}}  probe exit {{.ExitCode}}: {{.Output}}{{println}}{{end}}{{end}}' \
          "${CANARY}" 2>/dev/null | tail -n 6 || true
        docker logs --tail "${LOG_TAIL}" "${CANARY}" 2>&1 | sed 's/\x1b\[[0-9;]*[A-Za-z]//g' || true
      } >&2
      remove_canary
      return 1
    fi
    sleep 1
  done
}

# Canaries for the services a deploy replaces (not on a rollback: that one restores
# what was serving before, as fast as possible).
canary_replaced_services() {
  local service
  while read -r service; do
    [[ -n "${service}" ]] || continue
    canary "${service}" || return 1
  done < <(services_to_replace)
}

# route_ok EXPECT CURL_STATUS HTTP_CODE
route_ok() {
  local expect="$1" rc="$2" code="$3"
  [[ "${rc}" == 0 && "${code}" =~ ^[0-9]{3}$ ]] || return 1
  case "${expect}" in
    2xx) ((code >= 200 && code < 300)) ;;
    *) ((code >= 100 && code < 500)) ;;
  esac
}

# route_url HOST PATH: the URL of a check (the port only when Traefik's is not 443).
route_url() {
  if [[ "${ROUTE_PORT}" == 443 ]]; then
    printf 'https://%s%s' "$1" "$2"
  else
    printf 'https://%s:%s%s' "$1" "${ROUTE_PORT}" "$2"
  fi
}

# find_traefik: where the existing Traefik answers (traefik-external). The container on
# PROXY_NETWORK that publishes host port 443 (what the firewall opens to the web), else
# one that publishes its container port 443 on another host port; a wildcard binding is
# requested on loopback. None (a Traefik on the host network, say): 127.0.0.1:443, and a
# route that gets no answer there names the network.
find_traefik() {
  local name ports entry ip hport cport alt_name="" alt_ip="" alt_port=""
  local -a entries
  ROUTE_IP="127.0.0.1" ROUTE_PORT="443" TRAEFIK_NAME=""
  if ! docker ps --filter "network=${PROXY_NETWORK}" --format '{{.Names}}	{{.Ports}}' >"${WORK}/traefik.ps" 2>"${WORK}/traefik.log"; then
    warn "could not list the containers on proxy.externalNetwork ${PROXY_NETWORK}: $(tail -n 3 "${WORK}/traefik.log")"
  fi
  while IFS=$'\t' read -r name ports; do
    [[ -n "${name}" ]] || continue
    IFS=',' read -r -a entries <<<"${ports}"
    for entry in "${entries[@]}"; do
      entry="${entry# }"
      [[ "${entry}" =~ ^(.+):([0-9]+)-\>([0-9]+)/tcp$ ]] || continue
      ip="${BASH_REMATCH[1]}" hport="${BASH_REMATCH[2]}" cport="${BASH_REMATCH[3]}"
      case "${ip}" in
        0.0.0.0) ip="127.0.0.1" ;;
        "::" | "[::]") ip="[::1]" ;;
        *:*) [[ "${ip}" == \[* ]] || ip="[${ip}]" ;;
      esac
      if [[ "${hport}" == 443 ]]; then
        TRAEFIK_NAME="${name}" ROUTE_IP="${ip}" ROUTE_PORT="${hport}"
        log "route checks through ${name} on proxy.externalNetwork ${PROXY_NETWORK} (${ip}:${hport})"
        return 0
      fi
      if [[ "${cport}" == 443 && -z "${alt_name}" ]]; then
        alt_name="${name}" alt_ip="${ip}" alt_port="${hport}"
      fi
    done
  done <"${WORK}/traefik.ps"
  if [[ -n "${alt_name}" ]]; then
    TRAEFIK_NAME="${alt_name}" ROUTE_IP="${alt_ip}" ROUTE_PORT="${alt_port}"
    log "route checks through ${alt_name} on proxy.externalNetwork ${PROXY_NETWORK} (${alt_ip}:${alt_port})"
    return 0
  fi
  warn "no container on proxy.externalNetwork ${PROXY_NETWORK} publishes port 443; the route checks try 127.0.0.1:443"
}

# traefik_request HOST URL: one request through Traefik (sets rc, code, TLS_NOTE). The
# certificate is verified: it is the public one users get. When this host does not trust
# it (60: unknown issuer, e.g. Traefik's default self-signed certificate while ACME is
# pending, or an internal CA; 51: another name) the same request is made unverified, so
# the routing is still checked, and the route is passed with a warning: the certificate
# belongs to the shared Traefik, and going back to the previous release would not fix it.
traefik_request() {
  local host="$1" url="$2"
  local -a args=(--silent --show-error --output /dev/null --dump-header "${WORK}/headers" --write-out '%{http_code}'
    --max-time 10 --resolve "${host}:${ROUTE_PORT}:${ROUTE_IP}" "${url}")
  TLS_NOTE=""
  rc=0
  : >"${WORK}/headers"
  code="$(curl "${args[@]}" 2>"${WORK}/curl.log")" || rc=$?
  if [[ "${rc}" == 60 || "${rc}" == 51 ]]; then
    TLS_NOTE="$(tr '\n' ' ' <"${WORK}/curl.log")"
    rc=0
    : >"${WORK}/headers"
    code="$(curl --insecure "${args[@]}" 2>"${WORK}/curl.log")" || rc=$?
  fi
}

# The stack's routers all carry its headers middleware (contentTypeNosniff): an answer
# without the header came from Traefik itself (its 404 when no router matches), not the app.
through_stack_router() {
  grep -qiE '^x-content-type-options:[[:space:]]*nosniff' "${WORK}/headers"
}

# Requests every route through the proxy on this host until it answers as
# expected or the health timeout passes (Traefik may take a few seconds to see
# new containers: the same bounded retries).
check_routes() {
  [[ ("${PROXY}" == "caddy" || "${PROXY}" == "traefik-external") && "${#CHECKS[@]}" -gt 0 ]] || return 0
  if ! command -v curl >/dev/null 2>&1; then
    FAILURE="curl is not installed on the host; the route checks need it"
    return 1
  fi
  local check host path expect code rc url deadline routed TLS_NOTE=""
  deadline=$((SECONDS + HEALTH_TIMEOUT))
  for check in "${CHECKS[@]}"; do
    read -r host path expect <<<"${check}"
    url="$(route_url "${host}" "${path}")"
    while :; do
      rc=0
      routed=1
      if [[ "${PROXY}" == "traefik-external" ]]; then
        traefik_request "${host}" "${url}"
        through_stack_router || routed=0
      else
        code="$(curl --silent --show-error --insecure --output /dev/null --write-out '%{http_code}' \
          --max-time 10 --resolve "${host}:443:127.0.0.1" "${url}" 2>"${WORK}/curl.log")" || rc=$?
      fi
      if route_ok "${expect}" "${rc}" "${code}" && ((routed == 1)); then
        log "route ok: ${url} answered ${code}"
        [[ -z "${TLS_NOTE}" ]] || warn "${url}: this host does not trust the certificate Traefik serves (${TLS_NOTE% }); the routing was checked without verifying it"
        break
      fi
      if ((SECONDS >= deadline)); then
        if [[ "${PROXY}" == "traefik-external" ]]; then
          traefik_failure "${url}" "${expect}" "${rc}" "${code}" "${routed}"
          return 1
        fi
        if [[ "${rc}" == 35 && "${TLS_MODE}" == "acme" ]]; then
          # No certificate yet (DNS not pointing here, or issuance pending): the services are
          # healthy, only the public name is not served yet. Not a reason to roll back.
          warn "${url}: no TLS certificate yet (ACME); routing not verified"
          break
        fi
        FAILURE="route ${url} answered ${code:-nothing} (curl status ${rc}: $(tr '\n' ' ' <"${WORK}/curl.log")); expected ${expect}"
        return 1
      fi
      sleep "${CHECK_INTERVAL}"
    done
  done
}

# traefik_failure URL EXPECT CURL_STATUS HTTP_CODE ROUTED: FAILURE for a route Traefik did not serve.
traefik_failure() {
  local url="$1" expect="$2" rc="$3" code="$4" routed="$5" via
  if [[ -n "${TRAEFIK_NAME}" ]]; then
    via="through ${TRAEFIK_NAME} (${ROUTE_IP}:${ROUTE_PORT}) on proxy.externalNetwork ${PROXY_NETWORK}"
  else
    via="through 127.0.0.1:443: no container on proxy.externalNetwork ${PROXY_NETWORK} publishes port 443 (is Traefik running and attached to that network?)"
  fi
  if [[ "${rc}" != 0 ]]; then
    FAILURE="route ${url} got no answer ${via} (curl status ${rc}: $(tr '\n' ' ' <"${WORK}/curl.log"))"
  elif ((routed == 0)); then
    FAILURE="route ${url} answered ${code:-nothing} ${via} without this stack's headers: no router of the stack matched (does Traefik watch proxy.externalNetwork ${PROXY_NETWORK} and read the containers' labels?); expected ${expect}"
  else
    FAILURE="route ${url} answered ${code:-nothing} ${via}; expected ${expect}"
  fi
}

# Networks of the compose file that exist with another bridge name than the file
# gives them, one per line. The firewall drops connections to the host from the
# internal networks by their bridge names (obi-*, H13), and compose leaves an
# existing network as it is when its options change (2.26.1 without a word): a
# stack deployed before the names were set would keep its br-<id> bridges.
stale_networks() {
  local name want have
  if ! compose config --format json >"${WORK}/config.json" 2>"${WORK}/config.log"; then
    FAILURE="compose config --format json failed: $(tail -n 5 "${WORK}/config.log")"
    return 1
  fi
  # jq comes with the bootstrap; without it this check would pass unseen.
  if ! jq -r '(.networks // {})[] | select(.external != true)
    | [.name, ((.driver_opts // {})["com.docker.network.bridge.name"] // "")] | @tsv' \
    "${WORK}/config.json" >"${WORK}/networks.tsv" 2>"${WORK}/config.log"; then
    FAILURE="could not read the networks of compose.yaml (is jq installed?): $(tail -n 3 "${WORK}/config.log")"
    return 1
  fi
  while IFS=$'\t' read -r name want; do
    [[ -n "${name}" && -n "${want}" ]] || continue
    # Absent networks are created by compose, with the name.
    have="$(docker network inspect --format '{{index .Options "com.docker.network.bridge.name"}}' "${name}" 2>/dev/null)" || continue
    [[ "${have}" == "${want}" ]] || printf '%s\n' "${name}"
  done <"${WORK}/networks.tsv"
}

# Recreates the stale networks (above) just before `compose up`: the containers
# attached to them stop (each with its own stop timeout) and are removed, the
# networks are removed, and `compose up` creates both again. The stack is down
# from here until it is healthy again; this happens once per stack, on the first
# deploy that names the bridges. Volumes and data directories are kept.
recreate_stale_networks() {
  local networks=() ids=() name
  stale_networks >"${WORK}/stale-networks" || return 1
  mapfile -t networks <"${WORK}/stale-networks"
  ((${#networks[@]} > 0)) || return 0
  log "networks without their bridge names (H13), recreated now: ${networks[*]}; the containers on them stop until the release is up"
  for name in "${networks[@]}"; do
    docker ps --all --quiet --filter "network=${name}" >>"${WORK}/stale-containers" 2>/dev/null || true
  done
  mapfile -t ids < <(sort -u -- "${WORK}/stale-containers" 2>/dev/null || true)
  if ((${#ids[@]} > 0)); then
    if ! docker stop -- "${ids[@]}" >/dev/null 2>"${WORK}/network.log" || ! docker rm -- "${ids[@]}" >/dev/null 2>>"${WORK}/network.log"; then
      FAILURE="could not stop and remove the containers on ${networks[*]} to recreate these networks: $(tail -n 3 "${WORK}/network.log")"
      return 1
    fi
  fi
  for name in "${networks[@]}"; do
    if ! docker network rm -- "${name}" >/dev/null 2>"${WORK}/network.log"; then
      FAILURE="could not remove the network ${name} to recreate it with its bridge name: $(tail -n 3 "${WORK}/network.log"). Stop what is still attached (docker network inspect ${name}), run docker network rm ${name}, then deploy again"
      return 1
    fi
  done
}

# --------------------------------------------------------------------------
# Release hooks (see the header)
# --------------------------------------------------------------------------
# env_value SERVICE KEY: the value the service's container gets for KEY, from its env
# file (secretsAsEnv) or from compose's own view of the service; nothing when unset.
env_value() {
  local service="$1" key="$2" f line value=""
  for f in "${ENV_FILES[@]}"; do
    [[ "$(basename -- "${f}" .env)" == "${service}" && -f "${f}" ]] || continue
    while IFS= read -r line || [[ -n "${line}" ]]; do
      [[ "${line}" == "${key}="* ]] && value="${line#*=}"
    done <"${f}"
  done
  # Env files quote values in single quotes; '' is an empty value.
  value="${value#\'}"
  value="${value%\'}"
  if [[ -z "${value}" ]]; then
    value="$(jq -r --arg s "${service}" --arg k "${key}" '(.services[$s].environment // {})[$k] // empty' "${WORK}/preflight.json")"
  fi
  printf '%s' "${value}"
}

# preflight_problem SERVICE KEY: why KEY is missing for SERVICE, or nothing when it is set.
# A file under /run/secrets (KEY itself, or KEY_FILE) must be a non-empty file on the host.
preflight_problem() {
  local service="$1" key="$2" value via="${2}"
  value="$(env_value "${service}" "${key}")"
  if [[ -z "${value}" ]]; then
    via="${key}_FILE"
    value="$(env_value "${service}" "${via}")"
    if [[ -z "${value}" ]]; then
      printf 'not set'
      return 0
    fi
  fi
  if [[ "${value}" =~ ^/run/secrets/([A-Za-z0-9._-]+)$ ]]; then
    local host_file="${SECRETS_DIR}/${service}/${BASH_REMATCH[1]}"
    [[ -s "${host_file}" ]] || printf '%s names a secret file, and %s is missing or empty' "${via}" "${host_file}"
  fi
}

# deploy.preflight: every required key of every service, all reported at once.
preflight() {
  ((${#PREFLIGHTS[@]} > 0)) || return 0
  local entry service key problem missing=()
  if ! compose config --format json >"${WORK}/preflight.json" 2>"${WORK}/config.log"; then
    FAILURE="deploy.preflight: compose config --format json failed: $(tail -n 3 "${WORK}/config.log")"
    return 1
  fi
  if ! jq -e '.services' "${WORK}/preflight.json" >/dev/null 2>&1; then
    FAILURE="deploy.preflight: could not read the services of compose.yaml (is jq installed?)"
    return 1
  fi
  for entry in "${PREFLIGHTS[@]}"; do
    read -r service key <<<"${entry}"
    problem="$(preflight_problem "${service}" "${key}")"
    [[ -z "${problem}" ]] || missing+=("service ${service}: ${key} (${problem})")
  done
  if ((${#missing[@]} > 0)); then
    FAILURE="deploy.preflight: missing environment keys: $(printf '%s; ' "${missing[@]}" | sed 's/; $//')"
    return 1
  fi
  log "deploy.preflight: ${#PREFLIGHTS[@]} required key(s) set"
}

# Several stacks can share a server, but a host port only one of them: a container of another
# stack (or none) that publishes a port this release publishes stops the deploy before anything
# changes, naming it. Only running containers hold a port.
check_published_ports() {
  local port name project
  for port in ${PUBLISHES}; do
    while IFS=' ' read -r name project; do
      [[ -n "${name}" && "${project}" != "${PROJECT}" ]] || continue
      FAILURE="port ${port} is published by the container ${name} ($([[ -n "${project}" ]] && echo "stack ${project}" || echo "not a compose stack")), and this release publishes it too. Only one stack on a server can run its own proxy on 80/443: put the stacks behind one shared proxy (proxy.kind: traefik-external), or give this one its own server (README \"Several stacks on one server\")"
      return 1
    done < <(docker ps --filter "publish=${port}" --format '{{.Names}} {{.Label "com.docker.compose.project"}}')
  done
}

remove_release_container() {
  [[ -n "${RELEASE_CONTAINER}" ]] || return 0
  docker rm --force "${RELEASE_CONTAINER}" >/dev/null 2>&1 || true
  RELEASE_CONTAINER=""
}

# deploy.backupBeforeRelease: pg_dump -Fc as the nightly backup takes it, checked with the
# backup scripts' own check (lib.sh verify_dump_archive: pg_restore --list, B1).
backup_before_release() {
  [[ -n "${DUMP_VERIFY_LIB}" ]] || return 0
  local dir="${DATABASE_DATA_DIR}-release-dumps" dump container old
  if [[ ! -r "${DUMP_VERIFY_LIB}" ]]; then
    FAILURE="deploy.backupBeforeRelease: the dump check ${DUMP_VERIFY_LIB} is missing (the deploy step installs it)"
    return 1
  fi
  if ! (umask 077 && mkdir -p -- "${dir}") || ! chmod 0700 -- "${dir}"; then
    FAILURE="deploy.backupBeforeRelease: cannot create ${dir}"
    return 1
  fi
  dump="${dir}/${DATABASE_NAME}-${RELEASE_ID}-$(date -u +%Y%m%dT%H%M%SZ)-$$.dump"
  container="$(compose ps --quiet "${DATABASE_SERVICE}" 2>/dev/null | head -n 1)"
  if ! (umask 077 && compose exec -T "${DATABASE_SERVICE}" pg_dump -Fc -w -U "${DATABASE_USER}" "${DATABASE_NAME}" >"${dump}" 2>"${WORK}/dump.log"); then
    FAILURE="deploy.backupBeforeRelease: pg_dump of ${DATABASE_NAME} failed: $(tail -n 3 "${WORK}/dump.log")"
    rm -f -- "${dump}"
    return 1
  fi
  # shellcheck disable=SC1090 # the backup library, installed beside the backup scripts
  if ! (source "${DUMP_VERIFY_LIB}" && verify_dump_archive "${dump}" "${container}") >"${WORK}/verify.log" 2>&1; then
    FAILURE="deploy.backupBeforeRelease: the dump ${dump} did not verify: $(tail -n 3 "${WORK}/verify.log")"
    return 1
  fi
  log "deploy.backupBeforeRelease: verified dump $(stat -c %s -- "${dump}") bytes at ${dump} ($(grep -o 'verified.*' "${WORK}/verify.log" | tail -n 1 || true))"
  while IFS= read -r old; do
    rm -f -- "${old}" && log "deploy.backupBeforeRelease: removed the older dump ${old}"
  done < <(find "${dir}" -maxdepth 1 -type f -name '*.dump' -printf '%T@ %p\n' | sort -rn | cut -d' ' -f2- | tail -n +"$((KEEP_RELEASES + 1))")
}

# deploy.release: the command in a one-off container of the new image of RELEASE_SERVICE
# (`compose run --no-deps`: its env, secrets, volumes and networks; no service alias, so
# no request reaches it), bounded by RELEASE_TIMEOUT; once per release id (header).
run_release_command() {
  [[ -n "${RELEASE_SERVICE}" ]] || return 0
  local marker_dir="${APP_DIR}/release-hooks" marker rc=0 cmd=()
  marker="${marker_dir}/${RELEASE_ID}.done"
  if [[ -f "${marker}" ]]; then
    log "deploy.release: already ran for release ${RELEASE_ID} ($(head -n 1 -- "${marker}")); not run again"
    return 0
  fi
  if ! mapfile -d '' -t cmd < <(jq -j '.[] | tostring + "\u0000"' <<<"${RELEASE_COMMAND}") || ((${#cmd[@]} == 0)); then
    FAILURE="deploy.release: cannot read the command of the manifest (is jq installed?)"
    return 1
  fi
  backup_before_release || return 1
  RELEASE_CONTAINER="${PROJECT}-release-${RUN_ID}"
  log "deploy.release: running the release command in a one-off ${RELEASE_SERVICE} container of release ${RELEASE_ID} (at most ${RELEASE_TIMEOUT} s)"
  timeout --kill-after=15 "${RELEASE_TIMEOUT}" docker compose --ansi never --project-name "${PROJECT}" --project-directory "${ACTIVE_DIR}" \
    --file "${ACTIVE_DIR}/compose.yaml" run --rm --no-deps -T --name "${RELEASE_CONTAINER}" --label "onebox.release=${PROJECT}" \
    -e "ONEBOX_RELEASE=${RELEASE_ID}" "${RELEASE_SERVICE}" "${cmd[@]}" >"${WORK}/release.log" 2>&1 </dev/null || rc=$?
  sed 's/\x1b\[[0-9;]*[A-Za-z]//g; s/^/  release: /' "${WORK}/release.log" || true
  remove_release_container
  if ((rc == 124 || rc == 137)); then
    FAILURE="deploy.release: the release command did not finish within ${RELEASE_TIMEOUT} s and was stopped; the previous release keeps serving"
    return 1
  fi
  if ((rc != 0)); then
    FAILURE="deploy.release: the release command exited ${rc}: $(tail -n 3 "${WORK}/release.log" | tr '\n' ' ' | sed 's/ *$//')"
    return 1
  fi
  if ! (umask 077 && mkdir -p -- "${marker_dir}") ||
    ! printf 'ran %s by run %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "${RUN_ID}" >"${marker}.tmp-${RUN_ID}" ||
    ! mv -f -T -- "${marker}.tmp-${RUN_ID}" "${marker}"; then
    FAILURE="deploy.release: the command succeeded but ${marker} could not be written"
    return 1
  fi
  log "deploy.release: the release command succeeded; recorded in ${marker}"
}

# smoke_problem STATUS KIND PATTERN CURL_STATUS CODE: why one answer fails, or nothing.
smoke_problem() {
  local status="$1" kind="$2" pattern="$3" rc="$4" code="$5"
  if [[ "${rc}" != 0 ]]; then
    printf 'no answer (curl status %s: %s)' "${rc}" "$(tr '\n' ' ' <"${WORK}/curl.log")"
  elif [[ "${code}" != "${status}" ]]; then
    printf 'answered %s, expected %s' "${code}" "${status}"
  elif [[ "${kind}" == "contains" ]] && ! grep -qF -- "${pattern}" "${WORK}/smoke.body"; then
    printf 'answered %s without "%s" in the body' "${code}" "${pattern}"
  elif [[ "${kind}" == "matches" ]] && ! grep -qE -- "${pattern}" "${WORK}/smoke.body"; then
    printf 'answered %s with a body that does not match /%s/' "${code}" "${pattern}"
  fi
}

# deploy.smoke: each check through the proxy on this host, at most ATTEMPTS times.
smoke_checks() {
  ((${#SMOKES[@]} > 0)) || return 0
  local i host path status attempts kind pattern url attempt rc code problem
  for i in "${!SMOKES[@]}"; do
    read -r host path status attempts kind pattern <<<"${SMOKES[i]}"
    url="$(route_url "${host}" "${path}")"
    problem="no attempt"
    for ((attempt = 1; attempt <= attempts; attempt++)); do
      rc=0
      code="$(curl --silent --show-error --insecure --output "${WORK}/smoke.body" --max-filesize 10485760 --write-out '%{http_code}' \
        --max-time 10 --resolve "${host}:${ROUTE_PORT}:${ROUTE_IP}" "${url}" 2>"${WORK}/curl.log")" || rc=$?
      problem="$(smoke_problem "${status}" "${kind}" "${pattern}" "${rc}" "${code}")"
      [[ -n "${problem}" ]] || break
      ((attempt == attempts)) || sleep "${CHECK_INTERVAL}"
    done
    if [[ -n "${problem}" ]]; then
      FAILURE="deploy.smoke[${i}]: ${url} ${problem} (${attempts} attempt(s))"
      return 1
    fi
    log "deploy.smoke[${i}]: ${url} answered ${code}"
  done
}

# activate DIR [rollback]: brings the release in DIR up; 0 when it serves.
# Every command is checked explicitly: errexit does not apply inside `if activate`.
activate() {
  local dir="$1" mode="${2:-deploy}"
  ACTIVE_DIR="${dir}"
  FAILURE=""
  read_manifest "${dir}/release.manifest"
  check_env_files || return 1
  if ! compose config --quiet 2>"${WORK}/config.log"; then
    FAILURE="compose.yaml does not validate: $(tail -n 5 "${WORK}/config.log")"
    return 1
  fi
  if [[ "${mode}" == "deploy" ]] && ! { preflight && check_published_ports; }; then
    UNCHANGED_FAILURE=1
    return 1
  fi
  # A rollback uses the images already on the host; the registry may be the problem.
  if [[ "${IMAGE_SOURCE}" == "registry" && "${mode}" == "deploy" ]]; then
    pull_images || return 1
  fi
  install_proxy_config "${dir}" || return 1
  if [[ -n "${DATABASE_SERVICE}" ]]; then
    check_database_major "${mode}" || return 1
    if ! compose up --detach --wait --wait-timeout "${HEALTH_TIMEOUT}" "${DATABASE_SERVICE}"; then
      FAILURE="${DATABASE_SERVICE} did not become healthy within ${HEALTH_TIMEOUT} s"
      return 1
    fi
    sync_database_password || return 1
    start_pooler || return 1
  fi
  if [[ "${mode}" == "deploy" ]]; then
    run_release_command || return 1
  fi
  if [[ "${mode}" == "deploy" && "${HAS_PREVIOUS}" == 1 ]]; then
    canary_replaced_services || return 1
  fi
  recreate_stale_networks || return 1
  if ! compose up --detach --wait --wait-timeout "${HEALTH_TIMEOUT}" --remove-orphans; then
    FAILURE="not every service became healthy within ${HEALTH_TIMEOUT} s"
    return 1
  fi
  reload_proxy || return 1
  if [[ "${PROXY}" == "traefik-external" && -n "${PROXY_NETWORK}" ]]; then
    find_traefik
  fi
  check_routes || return 1
  if [[ "${mode}" == "deploy" ]]; then
    smoke_checks || return 1
  fi
}

# Prints the failure, then state, health probe output and last log lines of
# every service that is not running and healthy.
report_failure() {
  local service state health id
  printf '%s: error: release %s failed: %s\n' "${LOG_TAG}" "$(basename -- "${ACTIVE_DIR}")" "${FAILURE:-unknown error}" >&2
  compose ps --all >&2 || true
  while read -r service state health; do
    [[ -n "${service}" ]] || continue
    if [[ "${state}" == "running" && ("${health}" == "" || "${health}" == "healthy") ]]; then
      continue
    fi
    printf '%s: service %s is %s%s\n' "${LOG_TAG}" "${service}" "${state}" "${health:+ (${health})}" >&2
    id="$(compose ps --all --quiet "${service}" 2>/dev/null | head -n 1)"
    if [[ -n "${id}" ]]; then
      docker inspect --format '{{if .State.Health}}{{range .State.Health.Log}}  probe exit {{.ExitCode}}: {{.Output}}{{println}}{{end}}{{end}}' \
        "${id}" 2>/dev/null | tail -n 6 >&2 || true
    fi
    # Some compose versions emit terminal control codes even with --no-color; strip them.
    compose logs --no-color --tail "${LOG_TAIL}" "${service}" 2>&1 | sed 's/\x1b\[[0-9;]*[A-Za-z]//g' >&2 || true
  done < <(compose ps --all --format '{{.Service}} {{.State}} {{.Health}}' 2>/dev/null || true)
}

# A canary of a run that was killed (SIGKILL, a lost SSH session) before its exit trap
# ran: under the lock no other run has one, so any left is stale.
remove_stale_canaries() {
  local id
  while read -r id; do
    [[ -n "${id}" ]] || continue
    docker rm --force "${id}" >/dev/null 2>&1 && log "removed a canary left by an interrupted run (${id:0:12})"
  done < <(docker ps --all --quiet --filter "label=onebox.canary=${PROJECT}" 2>/dev/null || true)
  while read -r id; do
    [[ -n "${id}" ]] || continue
    docker rm --force "${id}" >/dev/null 2>&1 && log "removed a release container left by an interrupted run (${id:0:12})"
  done < <(docker ps --all --quiet --filter "label=onebox.release=${PROJECT}" 2>/dev/null || true)
}

# lock_stack APP: the stack's host-wide lock (R7) on fd 9 for the rest of the run. A
# deploy step opens it on fd 9 and hands it down: taking a lock again on the same open
# file succeeds at once, so the step's own deploy does not wait for itself.
lock_stack() {
  local app="$1" lock wait="${ONEBOX_LOCK_WAIT_SECONDS:-900}" holder inherited=1
  lock="${LOCK_DIR}/${app}.lock"
  [[ "${wait}" =~ ^[0-9]+$ ]] || die "ONEBOX_LOCK_WAIT_SECONDS must be a number of seconds"
  if [[ ! -e "/proc/self/fd/${LOCK_FD}" || ! "/proc/self/fd/${LOCK_FD}" -ef "${lock}" ]]; then
    inherited=0
    mkdir -p -- "${LOCK_DIR}"
    exec 9>>"${lock}"
  fi
  if flock --nonblock "${LOCK_FD}"; then
    # A lock handed down by the step that runs this keeps the step's holder line.
    ((inherited == 1)) || write_lock_holder "${lock}"
    return 0
  fi
  holder="$(head -c 300 -- "${lock}" 2>/dev/null || true)"
  log "waiting (at most ${wait} s) for the lock ${lock}, held by ${holder:-an unknown process}"
  if ! flock --wait "${wait}" "${LOCK_FD}"; then
    holder="$(head -c 300 -- "${lock}" 2>/dev/null || true)"
    die "${lock} is still held after ${wait} s by ${holder:-an unknown process}; nothing was changed. Let that run finish, then run this again."
  fi
  write_lock_holder "${lock}"
}

write_lock_holder() {
  printf 'deploy.sh %s (pid %s, user %s, since %s)\n' "${RELEASE_ARG}" "$$" "${SUDO_USER:-$(id -un)}" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$1"
}

switch_current() {
  local app_dir="$1" id="$2"
  ln -sfn -- "releases/${id}" "${app_dir}/current.new-${RUN_ID}"
  mv -f -T -- "${app_dir}/current.new-${RUN_ID}" "${app_dir}/current"
}

# Keeps the newest KEEP_RELEASES release directories (by the time they were last
# deployed) and never the current one.
prune_releases() {
  local releases_dir="$1" current="$2" count=0 dir
  while IFS= read -r dir; do
    count=$((count + 1))
    if ((count > KEEP_RELEASES)) && [[ "${dir}" != "${current}" ]]; then
      rm -rf -- "${dir}"
      log "pruned release $(basename -- "${dir}")"
    fi
  done < <(find "${releases_dir}" -mindepth 1 -maxdepth 1 -type d -printf '%T@ %p\n' | sort -rn | cut -d' ' -f2-)
}

main() {
  if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    usage
    return 0
  fi
  [[ $# -eq 1 ]] || die "usage: deploy.sh RELEASE_DIR"
  # Rendered compose files may relocate the config directory for offline validation only.
  unset ONEBOX_CONFIG_DIR
  command -v docker >/dev/null 2>&1 || die "docker is not installed"
  docker compose version >/dev/null 2>&1 || die "the docker compose plugin (v2) is not installed"

  local release_dir app_dir id previous=""
  release_dir="$(realpath -e -- "$1")" || die "no release directory $1"
  id="$(basename -- "${release_dir}")"
  app_dir="$(dirname -- "$(dirname -- "${release_dir}")")"
  RELEASE_ARG="${release_dir}"
  RELEASE_ID="${id}"
  APP_DIR="${app_dir}"
  RUN_ID="$(date -u +%Y%m%d%H%M%S)-$$-${RANDOM}"
  lock_stack "$(basename -- "${app_dir}")"
  # Everything below runs under the lock, and reads `current` only now.
  if [[ -L "${app_dir}/current" ]]; then
    previous="$(realpath -e -- "${app_dir}/current" 2>/dev/null || true)"
  fi
  [[ -z "${previous}" ]] || HAS_PREVIOUS=1
  [[ "${previous}" == "${release_dir}" ]] || PREVIOUS_DIR="${previous}"
  WORK="$(mktemp -d)"
  trap 'remove_canary; remove_release_container; rm -rf -- "${WORK}"' EXIT
  # A lost SSH session (SIGHUP) or a stop (SIGTERM) still runs the EXIT trap.
  trap 'exit 129' HUP
  trap 'exit 143' TERM
  read_manifest "${release_dir}/release.manifest"
  remove_stale_canaries
  # The modification time orders releases for pruning; a redeployed old release is the newest.
  touch -- "${release_dir}"

  log "deploying release ${id}${previous:+ (current: $(basename -- "${previous}"))}"
  if activate "${release_dir}"; then
    switch_current "${app_dir}" "${id}"
    prune_releases "${app_dir}/releases" "${release_dir}"
    docker image prune --force >/dev/null 2>&1 || true
    if [[ -n "${UPGRADE_OLD_DATA}" ]]; then
      log "the PostgreSQL upgrade is live; the safety dump and the old data directory stay in ${UPGRADE_DIR} until you remove them"
    fi
    log "release ${id} is live"
    return 0
  fi

  if [[ "${UNCHANGED_FAILURE}" == 1 ]]; then
    printf '%s: error: release %s failed: %s\n' "${LOG_TAG}" "${id}" "${FAILURE}" >&2
    log "nothing was changed${previous:+; release $(basename -- "${previous}") keeps serving}"
    return 1
  fi
  report_failure
  if [[ -n "${previous}" && "${previous}" != "${release_dir}" ]]; then
    if ! revert_database_upgrade; then
      printf '%s: error: could not put the old data directory back: it is in %s\n' "${LOG_TAG}" "${UPGRADE_OLD_DATA}" >&2
      return 1
    fi
    log "rolling back to release $(basename -- "${previous}")"
    if activate "${previous}" rollback; then
      log "release $(basename -- "${previous}") is serving again"
    else
      report_failure
      printf '%s: error: the rollback failed as well\n' "${LOG_TAG}" >&2
    fi
  else
    log "no previous release to return to; the containers are left as they are for inspection"
  fi
  return 1
}

main "$@"
