#!/usr/bin/env bash
# `make ray-serve`: a local Ray cluster of two nodes on loopback addresses (head 127.0.0.2, node 127.0.0.3,
# one CPU each), every model_store/*.mar deployed behind TorchServe's API on port 8000 (HAProxy, every interface,
# the bearer key guards it) with keys in
# .ray_run/key_file.json; then one prediction with the curl line that produced it. RAY_ADDRESS=<head:port>
# deploys on an existing cluster instead of starting one. RAY_HTTP_PORT's default 8000 is the Python default
# toolkit.engines.ray.cluster.HTTP_PORT.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
RUN_DIR=.ray_run
SAMPLE=build/models/mnist/samples/0.png
# RAY_TUNE="front=proxy ..." passes Serve settings (toolkit.engines.ray.tuning.Tuning) to `start --tune`.
# shellcheck disable=SC2086
"$PY" -m toolkit.engines.ray start --run-dir "$RUN_DIR" --http-port "${RAY_HTTP_PORT:-8000}" ${RAY_TUNE:+--tune $RAY_TUNE}
key_cmd="$PY -m toolkit.client.auth $RUN_DIR/key_file.json"
curl_line="curl -sS http://127.0.0.1:${RAY_HTTP_PORT:-8000}/predictions/mnist -H \"Authorization: Bearer \$($key_cmd)\" -T $SAMPLE"
echo
echo "sample prediction (same as: .venv/bin/predict --url http://127.0.0.1:${RAY_HTTP_PORT:-8000} --key-file $RUN_DIR/key_file.json mnist $SAMPLE):"
echo "\$ $curl_line"
bash -c "$curl_line"
echo
