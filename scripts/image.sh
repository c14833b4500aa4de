#!/usr/bin/env bash
# `make image`, after make has rebuilt model_store/*.mar: build the container image ts-toolkit:<version> and
# ts-toolkit:latest from deploy/container/Dockerfile with podman or docker (scripts/container_env.sh picks it,
# installing Debian's podman when neither is present). Layers are cached: after a source change only the
# layers from `COPY toolkit` on are rebuilt.
#
# Base image: BASE_IMAGE if set; with podman, else localhost/ts-toolkit-base:bookworm, built once by
# deploy/container/build-base.sh (debootstrap; no registry needed); with docker, the Dockerfile's default
# (debian:bookworm-slim from a registry). pip inside the build gets this machine's pip find-links folder
# (`pip config list`, PIP_FIND_LINKS: the torch CPU wheel) as the build context "wheels" and its CA bundle
# (`cert`, PIP_CERT) as the build secret "cacert"; the build runs with --network host.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/container_env.sh
IMAGE_EXTRA_REQUIREMENTS=${IMAGE_EXTRA_REQUIREMENTS:-}

pip_setting() {  # the value of a pip setting ("find-links", "cert"): environment first, then pip's config
  local env_name="PIP_$(echo "$1" | tr 'a-z-' 'A-Z_')" value
  value=${!env_name:-}
  if [ -z "$value" ] && [ -x .venv/bin/python ]; then
    value=$(.venv/bin/python -m pip config list 2>/dev/null | awk -F= -v k="$1" \
      '{ split($1, a, "."); if (a[2] == k) { v = $2 } } END { gsub(/\047/, "", v); print v }')
  fi
  echo "$value"
}

wheels=$(pip_setting find-links | awk '{ print $1 }')
wheels=${wheels#file://}
if [ -z "$wheels" ] || [ ! -d "$wheels" ]; then
  wheels=.podman/no-wheels && mkdir -p "$wheels"
fi
cert=$(pip_setting cert)
# The image's pins: pyproject.toml's base dependencies and `serve` extra (+ IMAGE_EXTRA_REQUIREMENTS, one per
# line), as the build context "requirements"; rewritten only when they change, so the pip layer stays cached.
mkdir -p .podman/build
python3 - "$IMAGE_EXTRA_REQUIREMENTS" >.podman/build/requirements.txt.new <<'PY'
import sys, tomllib
p = tomllib.load(open("pyproject.toml", "rb"))["project"]
print("\n".join(p["dependencies"] + p["optional-dependencies"]["serve"] + sys.argv[1].split()))
PY
cmp -s .podman/build/requirements.txt.new .podman/build/requirements.txt \
  && rm .podman/build/requirements.txt.new || mv .podman/build/requirements.txt.new .podman/build/requirements.txt

args=(build --network host -f deploy/container/Dockerfile -t "$IMAGE_TAG" -t "$IMAGE:latest"
  --build-context "wheels=$wheels" --build-context requirements=.podman/build)
[ -n "$cert" ] && [ -f "$cert" ] && args+=(--secret "id=cacert,src=$cert")
[ -n "${PIP_EXTRA_INDEX_URL:-}" ] && args+=(--build-arg "PIP_EXTRA_INDEX_URL=$PIP_EXTRA_INDEX_URL")
base=${BASE_IMAGE:-}
if [ "$ENGINE" = podman ]; then
  args+=(--format docker)  # keeps HEALTHCHECK (the OCI format has none)
  # buildah's RUN steps ignore containers.conf's default_ulimits and ask for nproc 1048576 (refused here:
  # "error setting rlimit type 6: operation not permitted"): pass the current hard limits explicitly.
  args+=(--ulimit "nofile=$PODMAN_NOFILE:$PODMAN_NOFILE" --ulimit "nproc=$PODMAN_NPROC:$PODMAN_NPROC")
  if [ -z "$base" ]; then
    base=localhost/ts-toolkit-base:bookworm
    podman image exists "$base" || ENGINE=podman bash deploy/container/build-base.sh "$base"
  fi
fi
[ -n "$base" ] && args+=(--build-arg "BASE=$base")

echo "building $IMAGE_TAG with $ENGINE (base ${base:-debian:bookworm-slim}, wheels from $wheels)"
start=$(date +%s)
"$ENGINE" "${args[@]}" .
size=$("$ENGINE" image inspect --format '{{.Size}}' "$IMAGE_TAG")
echo "built $IMAGE_TAG and $IMAGE:latest in $(($(date +%s) - start)) s: $((size / 1000000)) MB"
