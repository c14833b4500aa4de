#!/usr/bin/env bash
# `make stop`: stop the TorchServe that `make serve` started, found by .ts_run/'s pid file only (never by name).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  echo "no .venv: no server started by make serve"
  exit 0
fi
exec .venv/bin/python -m toolkit.server stop --run-dir .ts_run
