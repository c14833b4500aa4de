#!/usr/bin/env bash
# `make bench`, after make has rebuilt whatever is stale: benchmark the served mnist model
# (python -m toolkit.bench) and write bench/results/<timestamp>.*, then the resnet18 photo model served against
# its raw forward (python -m toolkit.bench.photos), the same for the digit_detector on one of its sample canvases,
# then compare REST vs gRPC and TorchScript vs ONNX Runtime
# (python -m toolkit.bench.compare) on the shipped model configs.
#
#   bash scripts/bench.sh                 full matrix (~12-15 min on 2 cores; run it on an otherwise idle machine)
#   bash scripts/bench.sh --quick         reduced matrix (~3 min)
#   bash scripts/bench.sh --url http://127.0.0.1:8080 --key-file .ts_run/key_file.json    a running server
#   make bench BENCH_ARGS=--quick         the same through make
#
# Installs wrk and Java 17 when missing (Debian's packages, as root: toolkit.prereqs). A full local run (no
# --quick, --url or --out-dir) also refreshes the committed plot bench/plot.png; the comparison is skipped against
# a running server (--url).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

args=("$@")
if [ -n "${BENCH_ARGS:-}" ]; then
  read -r -a extra <<<"$BENCH_ARGS"
  args+=("${extra[@]}")
fi

"$PY" -m toolkit.prereqs --install --quiet wrk java

publish=(--publish-plot bench/plot.png)
photos=(--model resnet18)
detector=(--model digit_detector --photo "$(find build/models/digit_detector/samples -name '*.png' | sort | head -n 1)")
remote=0
for arg in "${args[@]}"; do
  case "$arg" in
    --quick) publish=() photos+=(--quick) detector+=(--quick) ;;
    --out-dir | --out-dir=*) publish=() ;;
    --url | --url=*) publish=() remote=1 ;;
  esac
done
echo "load before the run: $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min); other heavy processes skew every figure"
"$PY" -m toolkit.bench "${publish[@]}" "${args[@]}"
if [ "$remote" = 0 ]; then
  # the compute-heavy photo model: served images/s against its raw forward (toolkit/bench/photos.py)
  "$PY" -m toolkit.bench.photos "${photos[@]}"
  # the detector (digits in a scene): served canvases/s, boxes mapped back to each canvas
  "$PY" -m toolkit.bench.photos "${detector[@]}"
  exec "$PY" -m toolkit.bench.compare
fi
