#!/usr/bin/env bash
# `make test` and `make test-e2e`, after make has rebuilt whatever is stale: check the programs the e2e tier
# needs (Java 17 for TorchServe, wrk for the bench smoke test, prometheus for the observability tests; installed
# from Debian's packages when root, by toolkit.prereqs), then run pytest on the given paths. Its exit status is
# pytest's. (`make test-unit` and `make test-integration` call pytest directly: they need none of them. The
# container tier checks podman itself: scripts/container_env.sh.)
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m toolkit.prereqs --install --quiet java wrk prometheus
exec .venv/bin/python -m pytest "$@"
