#!/usr/bin/env bash
# make lint: ruff, then the complexity gate, then the import contracts of pyproject.toml.
# The gate (xenon, on radon's cyclomatic complexity, which counts `and`/`or` where ruff's C901 does not): no block
# worse than C (radon rank D starts at 21), no module averaging worse than B, the whole tree averaging A.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check handlers toolkit scripts tests examples
.venv/bin/xenon --max-absolute C --max-modules B --max-average A --exclude "toolkit/client/grpc_gen/*" \
    handlers toolkit scripts examples
.venv/bin/lint-imports --no-logo
