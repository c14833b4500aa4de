#!/usr/bin/env bash
# `make bench`: benchmark the served mnist model (python -m toolkit.bench) and write bench/results/<timestamp>.*
#
#   bash scripts/bench.sh                 full matrix (~12-15 min on 2 cores; run it on an otherwise idle machine)
#   bash scripts/bench.sh --quick         reduced matrix (~3 min)
#   bash scripts/bench.sh --url http://127.0.0.1:8080 --key-file .ts_run/key_file.json    a running server
#   make bench BENCH_ARGS=--quick         the same through make
#
# Installs what the bench needs and is missing: the venv, wrk (Debian package, as root), the example models.
# A full local run also refreshes the committed plot bench/plot.png.
set -euo pipefail
cd "$(dirname "$0")/.."

args=("$@")
if [ -n "${BENCH_ARGS:-}" ]; then
  read -r -a extra <<<"$BENCH_ARGS"
  args+=("${extra[@]}")
fi

bash scripts/install.sh
bash scripts/require_wrk.sh
[ -f build/models/mnist/mnist.pt ] && [ -f build/models/mnist/heldout.npz ] || .venv/bin/python -m examples.demo_models.build_models
bash scripts/require_java.sh

publish=(--publish-plot bench/plot.png)
for arg in "${args[@]}"; do
  case "$arg" in --quick | --url | --url=* | --out-dir | --out-dir=*) publish=() ;; esac
done
echo "load before the run: $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min); other heavy processes skew every figure"
.venv/bin/python -m toolkit.bench "${publish[@]}" "${args[@]}"
# REST vs gRPC and TorchScript vs ONNX Runtime, on the shipped model configs (skipped against a running server).
case " ${args[*]} " in *" --url"*) ;; *) [ -f model_store/mnist_onnx.mar ] || .venv/bin/python -m toolkit.archive
  exec .venv/bin/python -m toolkit.bench.compare ;; esac
