#!/usr/bin/env bash
# Sourced by scripts/image.sh, image-serve.sh, image-stop.sh and tests/container/: pick the container engine and
# set it up. Sets ENGINE (podman or docker), IMAGE (ts-toolkit), IMAGE_VERSION (pyproject.toml's version),
# IMAGE_TAG, RUN_DIR_HOST (.image_run, the server's key file and logs) and CONTAINER_NAME.
#
# docker is used when its daemon answers (`docker info`), else podman; podman and runc, when missing, are
# installed from Debian's packages (as root, by toolkit.prereqs; deploy/container/build-base.sh checks debootstrap
# itself). For podman the project keeps its own configuration and storage in .podman/:
# containers.conf (runc, cgroupfs, events to a file, default ulimits at the current hard limits: podman's
# default of 1048576 cannot be set on these machines) and storage.conf (graphroot .podman/storage).
# CONTAINER_ENGINE=podman|docker forces one.
_CE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGE=ts-toolkit
IMAGE_VERSION=$(awk -F'"' '/^version = / { print $2; exit }' "$_CE_ROOT/pyproject.toml")
IMAGE_TAG="$IMAGE:$IMAGE_VERSION"
RUN_DIR_HOST="$_CE_ROOT/.image_run"
CONTAINER_NAME=${CONTAINER_NAME:-ts-toolkit}

_ce_podman_conf() {
  local dir="$_CE_ROOT/.podman" nofile nproc pid_max
  mkdir -p "$dir"
  nofile=$(ulimit -Hn)
  nproc=$(ulimit -Hu)
  [ "$nofile" = unlimited ] && nofile=1048576
  [ "$nproc" = unlimited ] && nproc=1048576
  # runc is refused an nproc limit above kernel.pid_max here (65536 fails, 32768 works, at hard limit 96364)
  pid_max=$(cat /proc/sys/kernel/pid_max 2>/dev/null || echo "$nproc")
  [ "$nproc" -gt "$pid_max" ] && nproc=$pid_max
  sed -e "s|@NOFILE@|$nofile|g" -e "s|@NPROC@|$nproc|g" -e "s|@PODMAN_DIR@|$dir|g" \
    "$_CE_ROOT/deploy/container/containers.conf.in" >"$dir/containers.conf.tmp"
  mv "$dir/containers.conf.tmp" "$dir/containers.conf"
  sed -e "s|@PODMAN_DIR@|$dir|g" "$_CE_ROOT/deploy/container/storage.conf.in" >"$dir/storage.conf.tmp"
  mv "$dir/storage.conf.tmp" "$dir/storage.conf"
  export CONTAINERS_CONF="$dir/containers.conf" CONTAINERS_STORAGE_CONF="$dir/storage.conf"
  export PODMAN_NOFILE=$nofile PODMAN_NPROC=$nproc
}

if [ -n "${CONTAINER_ENGINE:-}" ]; then
  ENGINE=$CONTAINER_ENGINE
elif command -v docker >/dev/null 2>&1 && timeout 10 docker info >/dev/null 2>&1; then
  ENGINE=docker
else
  ENGINE=podman
fi
if [ "$ENGINE" = podman ]; then
  (cd "$_CE_ROOT" && .venv/bin/python -m toolkit.prereqs --install --quiet podman runc) || return 1
  _ce_podman_conf
fi
export ENGINE IMAGE IMAGE_VERSION IMAGE_TAG RUN_DIR_HOST CONTAINER_NAME
