#!/usr/bin/env bash
# migrate-layout.sh APP PROJECT DATA_PATH
#
# Moves a stack deployed before several stacks could share a server into its own
# directories. The old layout kept one stack per server: its paths were named after
# the app (APP) or not at all; the new ones are named after the compose project
# (PROJECT, <app>-<environment>):
#
#   /etc/onebox/APP               -> /etc/onebox/PROJECT          (+ compatibility link)
#   /etc/onebox/{bootstrap,backup}.env, pgbackrest.conf
#                                 -> /etc/onebox/PROJECT/
#   /srv/onebox/APP               -> /srv/onebox/PROJECT          (+ link)
#   /var/log/onebox/APP           -> /var/log/onebox/PROJECT      (+ link)
#   /var/lib/onebox/{backup,status}
#                                 -> /var/lib/onebox/PROJECT/     (+ links)
#   DATA_PATH/{postgres,redis,caddy,shared,volumes,backups,...}
#                                 -> DATA_PATH/PROJECT/           (+ links)
#
# It runs before the bootstrap, every time; it does nothing once the stack has moved,
# and nothing when the old layout belongs to another stack (its release manifest names
# another project): that stack moves on its own next update.
#
# Each move is a rename on the same file system: a running container keeps its mounts
# (they follow the directory), so nothing stops here; the deploy that follows recreates
# the containers on the new paths. The old paths become symbolic links to the new ones,
# so a release rendered before the move still starts (a rollback to it). The old backup
# timers (onebox-backup.timer, ...) and the jobs' units (onebox-job-APP_*) are stopped
# and removed; the backup and jobs steps install the stack's own.
#
# Holds the old lock (/run/lock/onebox/APP.lock) and the stack's lock while it works.
# ONEBOX_ROOT (tests only) is prepended to every host path.
set -euo pipefail
shopt -s nullglob

readonly LOCK_WAIT_SECONDS="${ONEBOX_LOCK_WAIT_SECONDS:-900}"
# Everything the old layout kept directly on the data volume for its one stack.
readonly DATA_ENTRIES=(
  postgres postgres-upgrades postgres-release-dumps postgres-wal-spool postgres-socket
  postgres-pitr-restore redis caddy shared volumes backups
)
readonly OLD_BACKUP_UNITS=(onebox-backup onebox-restore-drill onebox-backup-status onebox-pitr-backup onebox-pitr-push)

log() { printf '[layout] %s\n' "$*"; }
die() { printf '[layout] ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
  sed -n '2,/^set -euo pipefail/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

# move SRC DST [link]: renames SRC to DST (merging into an existing DST directory entry by
# entry, never over an existing entry); with "link", SRC becomes a symbolic link to DST.
move() {
  local src="$1" dst="$2" link="${3:-}" entry
  if [[ -L "${src}" || ! -e "${src}" ]]; then
    return 0
  fi
  mkdir -p -- "$(dirname -- "${dst}")"
  if [[ ! -e "${dst}" && ! -L "${dst}" ]]; then
    mv -T -- "${src}" "${dst}"
  elif [[ -d "${src}" && -d "${dst}" && ! -L "${dst}" ]]; then
    for entry in "${src}"/* "${src}"/.[!.]* "${src}"/..?*; do
      if [[ -e "${dst}/${entry##*/}" || -L "${dst}/${entry##*/}" ]]; then
        die "cannot move ${entry} to ${dst}/: ${dst}/${entry##*/} exists already; move or remove one of them by hand, then run the update again"
      fi
      mv -T -- "${entry}" "${dst}/${entry##*/}"
    done
    rmdir -- "${src}"
  else
    die "cannot move ${src} to ${dst}: ${dst} exists and is not a directory to merge into"
  fi
  if [[ "${link}" == "link" ]]; then
    ln -s -- "${dst}" "${src}"
  fi
  log "moved     ${src} -> ${dst}${link:+ (the old path links to it)}"
}

# The project that the old layout's newest release was rendered for (empty: none found).
old_owner() {
  local app_dir="$1" manifest
  manifest="${app_dir}/current/release.manifest"
  if [[ ! -f "${manifest}" ]]; then
    # A first deploy that never activated: the newest release directory.
    manifest="$(find "${app_dir}/releases" -mindepth 2 -maxdepth 2 -name release.manifest -printf '%T@ %p\n' 2>/dev/null | sort -rn | head -n 1 | cut -d' ' -f2-)"
  fi
  [[ -n "${manifest}" && -f "${manifest}" ]] || return 0
  sed -n 's/^PROJECT=//p' -- "${manifest}" | head -n 1
}

# take_lock FILE FD: flock FILE on FD, waiting at most LOCK_WAIT_SECONDS.
take_lock() {
  local file="$1" fd="$2"
  mkdir -p -- "$(dirname -- "${file}")"
  eval "exec ${fd}>>\"\${file}\""
  flock --wait "${LOCK_WAIT_SECONDS}" "${fd}" || die "the lock ${file} is held by $(head -c 300 -- "${file}" 2>/dev/null || echo 'an unknown process'); try again later"
}

stop_old_units() {
  local app="$1" unit f
  local -a units=()
  for unit in "${OLD_BACKUP_UNITS[@]}"; do
    for f in "${ROOT}/etc/systemd/system/${unit}".{timer,path,service}; do
      units+=("${f##*/}")
    done
  done
  for f in "${ROOT}/etc/systemd/system/onebox-job-${app}_"*.{timer,service}; do
    units+=("${f##*/}")
  done
  ((${#units[@]} > 0)) || return 0
  for unit in "${units[@]}"; do
    case "${unit}" in
      *.timer | *.path) systemctl disable --now "${unit}" >/dev/null 2>&1 || true ;;
    esac
  done
  for unit in "${units[@]}"; do
    case "${unit}" in
      *.service) systemctl stop "${unit}" >/dev/null 2>&1 || true ;;
    esac
    rm -f -- "${ROOT}/etc/systemd/system/${unit}"
  done
  systemctl daemon-reload
  log "removed   the old layout's units: ${units[*]}"
}

main() {
  if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    usage
    return 0
  fi
  (($# == 3)) || die "usage: $0 APP PROJECT DATA_PATH"
  local app="$1" project="$2" data="$3" owner
  [[ "${app}" =~ ^[a-z0-9][a-z0-9-]*$ && "${project}" =~ ^[a-z0-9][a-z0-9-]*$ ]] || die "APP and PROJECT must be slugs: ${app} ${project}"
  [[ "${data}" == /* ]] || die "DATA_PATH must be an absolute path: ${data}"
  [[ "${project}" != "${app}" ]] || die "PROJECT (${project}) must differ from APP"
  ROOT="${ONEBOX_ROOT:-}"
  data="${ROOT}${data}"

  # A path of this stack that is a link belongs to another stack's old layout (an app
  # named like this project): refuse rather than write into it.
  local p
  for p in "${ROOT}/etc/onebox/${project}" "${ROOT}/srv/onebox/${project}" "${ROOT}/var/log/onebox/${project}" \
    "${ROOT}/var/lib/onebox/${project}" "${data}/${project}"; do
    if [[ -L "${p}" ]]; then
      die "${p} is a link left by another stack's move ($(readlink -- "${p}")); the stack ${project} cannot use it. Rename one app (app.name), or remove the link if that stack is gone"
    fi
  done

  local old_app_dir="${ROOT}/srv/onebox/${app}"
  if [[ -L "${old_app_dir}" || ! -d "${old_app_dir}" ]]; then
    return 0
  fi
  owner="$(old_owner "${old_app_dir}")"
  if [[ -z "${owner}" ]]; then
    log "${old_app_dir} holds no release: left as it is"
    return 0
  fi
  if [[ "${owner}" != "${project}" ]]; then
    log "the single-stack layout on this server belongs to ${owner}, not ${project}: left for ${owner}'s own update"
    return 0
  fi

  take_lock "${ROOT}/run/lock/onebox/${app}.lock" 8
  take_lock "${ROOT}/run/lock/onebox/${project}.lock" 9
  log "moving ${project} from the single-stack layout into its own directories"
  stop_old_units "${app}"

  move "${ROOT}/etc/onebox/${app}" "${ROOT}/etc/onebox/${project}" link
  local f
  for f in bootstrap.env backup.env pgbackrest.conf; do
    if [[ -e "${ROOT}/etc/onebox/${project}/${f}" && -f "${ROOT}/etc/onebox/${f}" ]]; then
      # Already written by this update's step: the old file is superseded.
      rm -f -- "${ROOT}/etc/onebox/${f}"
      log "removed   ${ROOT}/etc/onebox/${f} (superseded by ${ROOT}/etc/onebox/${project}/${f})"
    else
      move "${ROOT}/etc/onebox/${f}" "${ROOT}/etc/onebox/${project}/${f}"
    fi
  done
  move "${ROOT}/var/log/onebox/${app}" "${ROOT}/var/log/onebox/${project}" link
  move "${ROOT}/var/lib/onebox/backup" "${ROOT}/var/lib/onebox/${project}/backup" link
  move "${ROOT}/var/lib/onebox/status" "${ROOT}/var/lib/onebox/${project}/status" link
  local entry
  for entry in "${DATA_ENTRIES[@]}"; do
    move "${data}/${entry}" "${data}/${project}/${entry}" link
  done
  # Last: the releases are what marks the old layout as this stack's, so an interrupted
  # move is finished by the next run.
  move "${old_app_dir}" "${ROOT}/srv/onebox/${project}" link
  log "done: ${project} now lives in its own directories"
}

ROOT=""
main "$@"
