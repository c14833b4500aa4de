#!/usr/bin/env bash
# `make test` and `make test-e2e`, after make has rebuilt whatever is stale: check the programs the e2e tier
# needs (Java 17 for TorchServe; wrk for the bench smoke test, installed from the Debian packages when root),
# then run pytest on the given paths. Its exit status is pytest's. (`make test-unit` and `make test-integration`
# call pytest directly: they need neither.)
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m toolkit.prereqs --quiet java
bash scripts/require_wrk.sh
exec .venv/bin/python -m pytest "$@"
