#!/usr/bin/env bash
# `make stop`: drain, then stop, the TorchServe that `make serve` started, found by .ts_run/'s pid file only
# (never by name). Draining waits up to DRAIN_DEADLINE_S seconds (default 30) until no request is queued or
# running (`python -m toolkit.server stop --drain-deadline S`; TorchServe 0.12 cannot refuse new work while
# finishing old, so stop the traffic first); DRAIN_DEADLINE_S=0 stops at once. The default 30 is the Python
# default toolkit.server.drain.DRAIN_DEADLINE_S.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  echo "no .venv: no server started by make serve"
  exit 0
fi
exec .venv/bin/python -m toolkit.server stop --run-dir .ts_run --drain-deadline "${DRAIN_DEADLINE_S:-30}"
