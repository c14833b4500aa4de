#!/usr/bin/env bash
# Validate docker-compose.yml with a compose tool's config check (run by tests/container): `docker compose`
# (the docker CLI plugin) when present, else docker-compose (Debian's 1.29, installed when root), which parses
# and validates the file without a daemon. (Debian's podman-compose 1.0.3 has no `config` command.)
set -euo pipefail
cd "$(dirname "$0")/.."
if docker compose version >/dev/null 2>&1; then
  exec docker compose -f docker-compose.yml config -q
fi
if ! command -v docker-compose >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing docker-compose (Debian package) for the compose config check" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null 2>&1 \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null; }
fi
exec docker-compose -f docker-compose.yml config -q
