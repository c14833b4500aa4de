#!/usr/bin/env bash
# Build the Dockerfile's base image locally, for machines that reach no container registry:
# `debootstrap --variant=minbase bookworm` from this machine's own Debian mirror (the first URIs: of its apt
# sources, default deb.debian.org), with bookworm-updates and bookworm-security in its sources.list, then
# `podman import` (or `docker import`) as the image named by $1 (default localhost/ts-toolkit-base:bookworm).
# About 30-60 s. Needs root and debootstrap (installed from Debian's packages when missing: toolkit.prereqs, in
# the project's .venv).
#
#   bash deploy/container/build-base.sh [IMAGE]      (ENGINE=podman|docker; scripts/image.sh calls it)
set -euo pipefail
BASE=${1:-localhost/ts-toolkit-base:bookworm}
ENGINE=${ENGINE:-podman}
(cd "$(dirname "$0")/../.." && .venv/bin/python -m toolkit.prereqs --install --quiet debootstrap)
mirror=$(awk '/^URIs:/ { print $2; exit } /^deb / { print $2; exit }' \
  /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
security=${mirror%/debian}/debian-security
work=$(mktemp -d "${TMPDIR:-/tmp}/ts-base.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "debootstrap --variant=minbase bookworm from $mirror"
debootstrap --variant=minbase bookworm "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1 \
  || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
cat >"$work/root/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $security bookworm-security main
SOURCES
# what the official debian images do: no apt caches or docs kept by later installs
rm -rf "$work/root/var/cache/apt/archives"/*.deb "$work/root/var/lib/apt/lists"/*
tar -C "$work/root" --numeric-owner -cf "$work/root.tar" .
"$ENGINE" import --change 'CMD ["/bin/bash"]' "$work/root.tar" "$BASE" >/dev/null
echo "base image $BASE: $("$ENGINE" image inspect --format '{{.Size}}' "$BASE") bytes"
