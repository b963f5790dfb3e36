#!/usr/bin/env bash
# docker-shim.sh - TEST STAND-IN FOR THE DOCKER CLI, used only by
# tests/backup-scripts/backup.test.ts (installed there as `docker` first on PATH).
# There is no Docker engine in the unit-test environment, so a "container" here
# is a real PostgreSQL cluster (initdb + pg_ctl from DOCKER_SHIM_PG_BIN) on a
# free 127.0.0.1 port with its own socket directory. It implements only what
# the backup scripts use:
#
#   docker exec [-i] CONTAINER CMD ARGS...
#       runs CMD locally (the real pg_dump/pg_restore/psql/createdb/...) with
#       PGHOST=<container socket dir> PGPORT=<container port>; like the real
#       CLI, stdin is attached only with -i (otherwise /dev/null)
#   docker run -d [--rm] --name N [--network X] [--label L] [--env-file F] [-e K=V] IMAGE
#       creates a fresh cluster in the background the way the official postgres
#       image does: superuser POSTGRES_USER with POSTGRES_PASSWORD, a first
#       server listening on the socket only while POSTGRES_DB is created, then
#       the final server also on TCP 127.0.0.1 (so readiness must be probed
#       over TCP, as on a real host). The network mode is only recorded.
#   docker ps -aq --filter label=K=V
#       prints the names of the containers carrying that label
#   docker rm -f N... / docker stop N...
#       stops the cluster and deletes its files
#   docker inspect --format '{{.Config.Image}}' N
#       prints the image name given to `docker run`
#
# Every invocation's argv is appended to ARGV_LOG (when set) so the tests can
# assert that no secret ever appears on a command line (R3); a secret setting
# found in the shim's environment is logged as "env-leak: NAME".
# Environment: DOCKER_SHIM_STATE (state directory, traversable by the postgres
# user), DOCKER_SHIM_PG_BIN (PostgreSQL bin directory), ARGV_LOG (optional).
set -euo pipefail

STATE="${DOCKER_SHIM_STATE:?DOCKER_SHIM_STATE is not set}"
PG_BIN="${DOCKER_SHIM_PG_BIN:?DOCKER_SHIM_PG_BIN is not set}"

fail() { printf 'docker (test shim): %s\n' "$*" >&2; exit 1; }

# Run a PostgreSQL server-side tool as the postgres user when we are root.
as_pg() {
  if [[ "$(id -u)" == "0" ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

cdir() { printf '%s/containers/%s' "${STATE}" "$1"; }

need_container() {
  [[ -d "$(cdir "$1")" ]] || { printf 'Error response from daemon: No such container: %s\n' "$1" >&2; exit 1; }
}

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

cmd_exec() {
  local interactive=false
  while (($# > 0)); do
    case "$1" in
      -i | --interactive) interactive=true; shift ;;
      -*) fail "exec option $1 is not implemented" ;;
      *) break ;;
    esac
  done
  (($# >= 2)) || fail "usage: docker exec [-i] CONTAINER CMD..."
  local name="$1"; shift
  need_container "${name}"
  local d
  d="$(cdir "${name}")"
  export PGHOST="${d}/sock" PGPORT
  PGPORT="$(cat "${d}/port")"
  export PATH="${PG_BIN}:${PATH}"
  unset PGPASSWORD PGUSER PGDATABASE
  if [[ "${interactive}" == "true" ]]; then
    exec "$@"
  else
    exec "$@" </dev/null
  fi
}

cmd_run() {
  local detach=false name="" image="" envfile="" network="" k v line
  local -A env=()
  local -a labels=()
  while (($# > 0)); do
    case "$1" in
      -d | --detach) detach=true; shift ;;
      --rm) shift ;;
      --name) name="$2"; shift 2 ;;
      --network) network="$2"; shift 2 ;;
      --label) labels+=("$2"); shift 2 ;;
      --env-file) envfile="$2"; shift 2 ;;
      -e | --env) k="${2%%=*}"; v="${2#*=}"; env["${k}"]="${v}"; shift 2 ;;
      -*) fail "run option $1 is not implemented" ;;
      *) image="$1"; shift; break ;;
    esac
  done
  (($# == 0)) || fail "run: a command after the image is not implemented"
  [[ "${detach}" == "true" && -n "${name}" && -n "${image}" ]] || fail "run needs -d --name NAME IMAGE"
  [[ ! -e "$(cdir "${name}")" ]] || fail "Conflict. The container name \"/${name}\" is already in use"
  if [[ -n "${envfile}" ]]; then
    while IFS= read -r line || [[ -n "${line}" ]]; do
      [[ -z "${line}" || "${line}" == \#* ]] && continue
      env["${line%%=*}"]="${line#*=}"
    done <"${envfile}"
  fi
  local user="${env[POSTGRES_USER]:-postgres}" db password="${env[POSTGRES_PASSWORD]:-}"
  db="${env[POSTGRES_DB]:-${user}}"
  [[ -n "${password}" ]] || fail "the postgres image refuses to start without POSTGRES_PASSWORD"

  local d port
  d="$(cdir "${name}")"
  mkdir -p "${d}/sock"
  printf '%s\n' "${image}" >"${d}/image"
  printf '%s\n' "${network:-default}" >"${d}/network"
  printf '%s\n' "${labels[@]}" >"${d}/labels"
  port="$(free_port)"
  printf '%s\n' "${port}" >"${d}/port"
  (umask 077 && printf '%s\n' "${password}" >"${d}/pwfile")
  if [[ "$(id -u)" == "0" ]]; then chown -R postgres: "${d}"; fi

  # Background "entrypoint": init, create POSTGRES_DB on a socket-only server,
  # restart listening on TCP too. Detached from our stdio like `docker run -d`.
  (
    set -e
    as_pg "${PG_BIN}/initdb" -D "${d}/data" -U "${user}" --pwfile="${d}/pwfile" \
      --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --no-sync >/dev/null
    rm -f "${d}/pwfile"
    as_pg "${PG_BIN}/pg_ctl" -D "${d}/data" -w -l "${d}/init.log" \
      -o "-c listen_addresses='' -c port=${port} -c unix_socket_directories=${d}/sock -c fsync=off" start >/dev/null
    if [[ "${db}" != "postgres" ]]; then
      PGHOST="${d}/sock" PGPORT="${port}" "${PG_BIN}/createdb" -U "${user}" "${db}"
    fi
    as_pg "${PG_BIN}/pg_ctl" -D "${d}/data" -w -m fast stop >/dev/null
    as_pg "${PG_BIN}/pg_ctl" -D "${d}/data" -w -l "${d}/server.log" \
      -o "-c listen_addresses=127.0.0.1 -c port=${port} -c unix_socket_directories=${d}/sock -c fsync=off" start >/dev/null
  ) </dev/null >"${d}/entrypoint.log" 2>&1 &
  printf '%s\n' "$!" >"${d}/entrypoint.pid"
  od -An -tx1 -N32 /dev/urandom | tr -d ' \n'
  printf '\n'
}

remove_one() {
  local name="$1" d pid
  d="$(cdir "${name}")"
  if [[ ! -d "${d}" ]]; then
    printf 'Error response from daemon: No such container: %s\n' "${name}" >&2
    return 1
  fi
  pid="$(cat "${d}/entrypoint.pid" 2>/dev/null || true)"
  # Let a still-running "entrypoint" finish (bounded) so no server starts
  # after its files are gone.
  if [[ -n "${pid}" ]]; then
    for _ in $(seq 1 300); do
      kill -0 "${pid}" 2>/dev/null || break
      sleep 0.2
    done
    kill "${pid}" 2>/dev/null || true
  fi
  if [[ -f "${d}/data/postmaster.pid" ]]; then
    as_pg "${PG_BIN}/pg_ctl" -D "${d}/data" -w -t 20 -m immediate stop >/dev/null 2>&1 || true
  fi
  rm -rf "${d}"
  printf '%s\n' "${name}"
}

cmd_rm() {
  local rc=0 name
  while (($# > 0)) && [[ "$1" == -* ]]; do shift; done
  for name in "$@"; do
    remove_one "${name}" || rc=1
  done
  return "${rc}"
}

cmd_ps() {
  local filter="" n
  while (($# > 0)); do
    case "$1" in
      -a | -q | -aq | -qa) shift ;;
      --filter) filter="$2"; shift 2 ;;
      *) fail "ps option $1 is not implemented" ;;
    esac
  done
  [[ "${filter}" == label=* ]] || fail "ps: only --filter label=K=V is implemented"
  for n in "${STATE}/containers"/*; do
    [[ -d "${n}" ]] || continue
    if grep -qxF -- "${filter#label=}" "${n}/labels" 2>/dev/null; then
      basename "${n}"
    fi
  done
}

cmd_inspect() {
  local format=""
  while (($# > 0)); do
    case "$1" in
      -f | --format) format="$2"; shift 2 ;;
      -*) fail "inspect option $1 is not implemented" ;;
      *) break ;;
    esac
  done
  (($# == 1)) || fail "inspect: exactly one container"
  [[ "${format}" == "{{.Config.Image}}" ]] || fail "inspect: only --format '{{.Config.Image}}' is implemented"
  need_container "$1"
  cat "$(cdir "$1")/image"
}

main() {
  if [[ -n "${ARGV_LOG:-}" ]]; then
    printf 'docker %s\n' "$*" >>"${ARGV_LOG}"
    local var
    while IFS= read -r var; do
      case "${var}" in
        BACKUP_S3_SECRET_ACCESS_KEY | BACKUP_S3_ACCESS_KEY_ID | BACKUP_ALERT_URL | BACKUP_HEARTBEAT_URL | RCLONE_CONFIG_ONEBOX_*)
          printf 'env-leak: %s in the environment of docker\n' "${var}" >>"${ARGV_LOG}" ;;
      esac
    done < <(compgen -e)
  fi
  mkdir -p "${STATE}/containers"
  (($# > 0)) || fail "no command"
  local sub="$1"; shift
  case "${sub}" in
    exec) cmd_exec "$@" ;;
    run) cmd_run "$@" ;;
    rm | stop) cmd_rm "$@" ;;
    ps) cmd_ps "$@" ;;
    inspect) cmd_inspect "$@" ;;
    *) fail "'docker ${sub}' is not implemented by the test shim" ;;
  esac
}

main "$@"
