#!/usr/bin/env bash
# `make soak`, after make has rebuilt whatever is stale: start a TorchServe of its own (free loopback ports, run
# dir under build/soak/<time>/) with the example models, measure capacity, then drive MINUTES minutes (default 10)
# at half of it (or RATE requests/s) and report RSS, threads and open files of the frontend and each worker, and
# the 5xx count. Exit 0 when memory grew <= 5 % after warm-up and no answer was a 5xx or wrong; 1 otherwise.
# Not run in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
"$PY" -m toolkit.prereqs --quiet java
exec "$PY" -m toolkit.bench.soak --minutes "${MINUTES:-10}" ${RATE:+--rate "$RATE"}
