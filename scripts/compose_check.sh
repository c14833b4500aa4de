#!/usr/bin/env bash
# Validate docker-compose.yml with a compose tool's config check (run by tests/container): `docker compose`
# (the docker CLI plugin) when present, else docker-compose (Debian's 1.29, installed as root by toolkit.prereqs),
# which parses and validates the file without a daemon. (Debian's podman-compose 1.0.3 has no `config` command.)
set -euo pipefail
cd "$(dirname "$0")/.."
if docker compose version >/dev/null 2>&1; then
  exec docker compose -f docker-compose.yml config -q
fi
.venv/bin/python -m toolkit.prereqs --install --quiet docker-compose
exec docker-compose -f docker-compose.yml config -q
