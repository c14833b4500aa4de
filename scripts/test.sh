#!/usr/bin/env bash
# Build what the tests need (venv, example models, archives), then run pytest on the given paths.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
[ -f build/models/mnist/mnist.pt ] && [ -f build/models/tabular/tabular.pt ] || .venv/bin/python -m examples.demo_models.build_models
.venv/bin/python -m toolkit.archive
bash scripts/require_java.sh
bash scripts/require_wrk.sh
exec .venv/bin/python -m pytest "$@"
