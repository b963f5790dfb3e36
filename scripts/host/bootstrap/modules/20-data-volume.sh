# shellcheck shell=bash
# Data volume: ONEBOX_DATA_PATH, on its own block device when ONEBOX_DATA_DEVICE is set
# (formatted only when blank, mounted by UUID with nofail), and docker.service waiting for it.

readonly DOCKER_DATA_DROPIN="/etc/systemd/system/docker.service.d/10-onebox-data.conf"
# Filesystem label of data volumes the bootstrap formats; lets "auto" find them again.
readonly DATA_LABEL="onebox-data"

data_volume_apply() {
  section "data volume"
  local path="${ONEBOX_DATA_PATH%/}" device="${ONEBOX_DATA_DEVICE}"
  if [[ -z "${device}" ]]; then
    ensure_dir "${path}" 0755
    ok "no data device configured; ${path} is a directory on the root filesystem"
    remove_docker_data_dropin
    return 0
  fi

  if is_missing_ebs_name "${device}"; then
    warn "ONEBOX_DATA_DEVICE=${device} does not exist here (Nitro instances show attached disks as NVMe); looking for it as with auto"
    device=auto
  fi
  local mounted_src
  mounted_src="$(findmnt -n -o SOURCE --mountpoint "${path}" 2>/dev/null || true)"
  if [[ "${device}" == "auto" ]]; then
    if [[ -n "${mounted_src}" ]]; then
      ok "${path} is mounted from ${mounted_src}"
      install_docker_data_dropin
      return 0
    fi
    if [[ -n "$(fstab_source_for "${path}")" ]]; then
      log "${path} is in /etc/fstab; mounting it"
      mkdir -p "${path}"
      mount "${path}" || die "mount ${path} (from /etc/fstab) failed; is the volume attached?"
      changed "mounted ${path}"
      install_docker_data_dropin
      return 0
    fi
    find_auto_data_disk
    device="${AUTO_DEVICE}"
    log "ONEBOX_DATA_DEVICE=auto selected ${device}"
  fi

  [[ -b "${device}" ]] || die "ONEBOX_DATA_DEVICE=${device} is not a block device on this host (lsblk -p lists the disks)"
  local real
  real="$(readlink -f "${device}")"

  local fstype pttype uuid
  fstype="$(blkid -p -o value -s TYPE "${real}" 2>/dev/null || true)"
  pttype="$(blkid -p -o value -s PTTYPE "${real}" 2>/dev/null || true)"
  if [[ -z "${fstype}" && -n "${pttype}" ]]; then
    die "${device} has a ${pttype} partition table; point ONEBOX_DATA_DEVICE at the partition (e.g. ${device}1)"
  fi
  if [[ -z "${fstype}" ]]; then
    if [[ -n "$(wipefs -n "${real}" 2>/dev/null | tail -n +2)" ]]; then
      die "${device} carries signatures (wipefs -n ${device}); refusing to format it"
    fi
    log "formatting ${device} as ext4 (it has no filesystem)"
    mkfs.ext4 -q -L "${DATA_LABEL}" "${real}"
    fstype=ext4
    changed "formatted ${device} as ext4"
  else
    ok "${device} already has a ${fstype} filesystem (never reformatted)"
  fi
  uuid="$(blkid -p -o value -s UUID "${real}")"
  [[ -n "${uuid}" ]] || die "could not read the filesystem UUID of ${device} (blkid -p ${device})"

  # /etc/fstab: one line for this volume, by UUID, nofail (a missing volume must not stop the boot).
  local want="UUID=${uuid} ${path} ${fstype} defaults,nofail 0 2" listed
  listed="$(fstab_source_for "${path}")"
  if [[ -z "${listed}" ]]; then
    if awk -v u="UUID=${uuid}" '$1 == u { found = 1 } END { exit !found }' /etc/fstab 2>/dev/null; then
      die "/etc/fstab already mounts UUID=${uuid} elsewhere; remove that line or set ONEBOX_DATA_PATH to its mount point"
    fi
    printf '%s\n' "${want}" >>/etc/fstab
    systemctl daemon-reload
    changed "added to /etc/fstab: ${want}"
  elif [[ "${listed}" == "UUID=${uuid}" || "$(readlink -f "${listed}" 2>/dev/null)" == "${real}" ]]; then
    ok "/etc/fstab mounts ${device} at ${path}"
  else
    die "/etc/fstab mounts ${listed} at ${path}, not ${device}; fix /etc/fstab or the settings"
  fi

  local other
  other="$(findmnt -rn -o TARGET --source "${real}" 2>/dev/null | awk -v p="${path}" '$0 != p { print; exit }' || true)"
  [[ -z "${other}" ]] || die "${device} is also mounted at ${other}; unmount it there (and remove its fstab line) first"
  if [[ -n "${mounted_src}" ]]; then
    [[ "$(readlink -f "${mounted_src}")" == "${real}" ]] \
      || die "${path} is mounted from ${mounted_src}, not ${device}"
    ok "${path} is mounted from ${device}"
  else
    mkdir -p "${path}"
    if [[ -n "$(find "${path}" -mindepth 1 -maxdepth 1 -print -quit)" ]]; then
      die "${path} is not empty; mounting ${device} over it would hide its files. Move them away first"
    fi
    mount "${path}"
    changed "mounted ${device} at ${path}"
  fi
  install_docker_data_dropin
}

data_volume_check() {
  local rc path="${ONEBOX_DATA_PATH%/}"
  [[ -d "${path}" ]] && rc=0 || rc=1
  result DATA "${rc}" "${path} exists"
  if [[ -z "${ONEBOX_DATA_DEVICE}" ]]; then
    [[ ! -e "${DOCKER_DATA_DROPIN}" ]] && rc=0 || rc=1
    result DATA "${rc}" "no data device: docker.service does not wait for a mount (${DOCKER_DATA_DROPIN} absent)"
    return 0
  fi
  local src listed
  src="$(findmnt -n -o SOURCE --mountpoint "${path}" 2>/dev/null || true)"
  [[ -n "${src}" ]] && rc=0 || rc=1
  result DATA "${rc}" "${path} is mounted${src:+ from ${src}}"
  listed="$(awk -v mp="${path}" '$1 !~ /^#/ && NF >= 4 && $2 == mp { print $1, $4; exit }' /etc/fstab 2>/dev/null || true)"
  [[ "${listed}" == *nofail* ]] && rc=0 || rc=1
  result DATA "${rc}" "/etc/fstab mounts ${path} with nofail (${listed:-no line})"
  render_docker_data_dropin >"${SCRATCH}/c-docker-data"
  same_content "${SCRATCH}/c-docker-data" "${DOCKER_DATA_DROPIN}" && rc=0 || rc=1
  result DATA "${rc}" "docker.service requires the ${path} mount (${DOCKER_DATA_DROPIN})"
}

render_docker_data_dropin() {
  render_template docker-requires-data.conf "DATA_PATH=${ONEBOX_DATA_PATH%/}"
}

install_docker_data_dropin() {
  render_docker_data_dropin >"${SCRATCH}/docker-data.conf"
  converge_file "${SCRATCH}/docker-data.conf" "${DOCKER_DATA_DROPIN}" 0644
  if ((CHANGED)); then
    systemctl daemon-reload
    changed "docker.service now requires the ${ONEBOX_DATA_PATH} mount (${DOCKER_DATA_DROPIN})"
  fi
}

remove_docker_data_dropin() {
  if [[ -e "${DOCKER_DATA_DROPIN}" ]]; then
    rm -f "${DOCKER_DATA_DROPIN}"
    systemctl daemon-reload
    changed "removed ${DOCKER_DATA_DROPIN} (no data device configured)"
  fi
}

# Reads `lsblk -P -p -o NAME,TYPE,FSTYPE,LABEL,MOUNTPOINT,PKNAME,RO` on stdin and prints
# the whole disks that could be the data disk: not ROOT_DISK, not loop/zram/ram/optical,
# writable, without partitions or mount, and either without a filesystem or with the
# onebox data label. (The caller re-checks each with blkid: lsblk's FSTYPE comes from udev.)
select_data_disks() {
  local root_disk="$1" line name type fstype label mountpoint pkname ro
  local -a names=() types=() fstypes=() labels=() mounts=() ros=() parents=()
  while IFS= read -r line; do
    [[ -n "${line}" ]] || continue
    name="" type="" fstype="" label="" mountpoint="" pkname="" ro=""
    [[ "${line}" =~ (^|[[:space:]])NAME=\"([^\"]*)\" ]] && name="${BASH_REMATCH[2]}"
    [[ "${line}" =~ (^|[[:space:]])TYPE=\"([^\"]*)\" ]] && type="${BASH_REMATCH[2]}"
    [[ "${line}" =~ (^|[[:space:]])FSTYPE=\"([^\"]*)\" ]] && fstype="${BASH_REMATCH[2]}"
    [[ "${line}" =~ (^|[[:space:]])LABEL=\"([^\"]*)\" ]] && label="${BASH_REMATCH[2]}"
    [[ "${line}" =~ (^|[[:space:]])MOUNTPOINT=\"([^\"]*)\" ]] && mountpoint="${BASH_REMATCH[2]}"
    [[ "${line}" =~ (^|[[:space:]])PKNAME=\"([^\"]*)\" ]] && pkname="${BASH_REMATCH[2]}"
    [[ "${line}" =~ (^|[[:space:]])RO=\"([^\"]*)\" ]] && ro="${BASH_REMATCH[2]}"
    names+=("${name}") types+=("${type}") fstypes+=("${fstype}") labels+=("${label}") mounts+=("${mountpoint}")
    ros+=("${ro}") parents+=("${pkname}")
  done
  local i j has_child
  for i in "${!names[@]}"; do
    name="${names[i]}"
    [[ "${types[i]}" == "disk" ]] || continue
    [[ "${name}" != "${root_disk}" ]] || continue
    [[ ! "${name}" =~ ^/dev/(loop|zram|ram|sr|fd) ]] || continue
    [[ "${ros[i]}" != "1" && -z "${mounts[i]}" ]] || continue
    [[ -z "${fstypes[i]}" || "${labels[i]}" == "${DATA_LABEL}" ]] || continue
    has_child=0
    for j in "${!names[@]}"; do
      [[ "${parents[j]}" == "${name}" ]] && { has_child=1; break; }
    done
    ((has_child == 0)) && printf '%s\n' "${name}"
  done
  return 0
}

root_disk() {
  local src
  src="$(findmnt -nvo SOURCE / 2>/dev/null || true)"
  [[ "${src}" == /dev/* ]] || return 0
  lsblk -npo PKNAME "${src}" 2>/dev/null | awk 'NF { print; exit }' || true
}

# Resolves ONEBOX_DATA_DEVICE=auto to exactly one device (in AUTO_DEVICE; not printed, so
# that die stops the bootstrap itself rather than a subshell), or fails. A disk that
# already holds a onebox data filesystem (a replaced server's) wins over blank disks.
AUTO_DEVICE=""
find_auto_data_disk() {
  local root cand fstype pttype label
  local -a blank=() labelled=()
  root="$(root_disk)"
  while IFS= read -r cand; do
    [[ -b "${cand}" ]] || continue
    fstype="$(blkid -p -o value -s TYPE "${cand}" 2>/dev/null || true)"
    pttype="$(blkid -p -o value -s PTTYPE "${cand}" 2>/dev/null || true)"
    label="$(blkid -p -o value -s LABEL "${cand}" 2>/dev/null || true)"
    if [[ -z "${fstype}" && -z "${pttype}" ]]; then
      blank+=("${cand}")
    elif [[ -n "${fstype}" && "${label}" == "${DATA_LABEL}" ]]; then
      labelled+=("${cand}")
    fi
  done < <(lsblk -P -p -o NAME,TYPE,FSTYPE,LABEL,MOUNTPOINT,PKNAME,RO | select_data_disks "${root}")
  if ((${#labelled[@]} == 1)); then
    AUTO_DEVICE="${labelled[0]}"
  elif ((${#labelled[@]} > 1)); then
    die "ONEBOX_DATA_DEVICE=auto: ${#labelled[@]} disks carry a ${DATA_LABEL} filesystem (${labelled[*]}); set ONEBOX_DATA_DEVICE to the one to use"
  elif ((${#blank[@]} == 1)); then
    AUTO_DEVICE="${blank[0]}"
  elif ((${#blank[@]} == 0)); then
    die "ONEBOX_DATA_DEVICE=auto: no unmounted disk other than the root disk ${root:-?} that is blank or carries a ${DATA_LABEL} filesystem (lsblk -p -f). Attach the volume, or set ONEBOX_DATA_DEVICE to its /dev path"
  else
    die "ONEBOX_DATA_DEVICE=auto: ${#blank[@]} blank disks (${blank[*]}); set ONEBOX_DATA_DEVICE to the one to use"
  fi
}

# Nitro-based instances (Lightsail, EC2) expose an EBS disk attached as /dev/xvdf or /dev/sdf
# as an NVMe device (/dev/nvme1n1): such a name that does not exist is looked up like auto.
is_missing_ebs_name() {
  [[ "$1" =~ ^/dev/(xvd|sd)[a-z]+$ && ! -e "$1" ]] || return 1
  [[ -n "$(find /sys/block -maxdepth 1 -name 'nvme*' -print -quit 2>/dev/null)" ]]
}

# Mount source of DATA_PATH according to /etc/fstab ("" when not listed).
fstab_source_for() {
  awk -v mp="$1" '$1 !~ /^#/ && NF >= 2 && $2 == mp { print $1; exit }' /etc/fstab 2>/dev/null || true
}
