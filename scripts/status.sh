#!/usr/bin/env bash
# `make status`: is the `make serve` server (.ts_run/) running; its URLs; every model version with its
# workers (READY count, pids, min/max, batch size). "Not running" is reported, not treated as a failure
# (`python -m toolkit.server status` itself exits 3 then, for scripts).
set -uo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  echo "no .venv: no server started by make serve"
  exit 0
fi
.venv/bin/python -m toolkit.server status --run-dir .ts_run
rc=$?
[ "$rc" -eq 3 ] && exit 0
exit "$rc"
