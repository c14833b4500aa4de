#!/usr/bin/env bash
# `make serve`, after make has rebuilt whatever is stale (venv, example models, model_store/*.mar): start
# TorchServe from .ts_run/ on the ports of config/config.properties with every model_store/*.mar, wait until it
# is healthy, then show one prediction together with the exact curl line that produced it.
# A server already running from .ts_run/ is reported and reused, never doubled.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
RUN_DIR=.ts_run
SAMPLE=build/models/mnist/samples/0.png

"$PY" -m toolkit.prereqs --quiet java
"$PY" -m toolkit.server start --run-dir "$RUN_DIR" --timeout 180

if [ ! -f "$SAMPLE" ]; then
  echo "no $SAMPLE: skipping the sample prediction (make models writes it)"
  exit 0
fi
url=$("$PY" -c "from toolkit.properties import Urls; print(Urls.from_config('$RUN_DIR/config.properties').inference)")
key_cmd="$PY -m toolkit.client.auth $RUN_DIR/key_file.json"
curl_line="curl -sS $url/predictions/mnist -H \"Authorization: Bearer \$($key_cmd)\" -H 'Content-Type: image/png' --data-binary @$SAMPLE"
echo
echo "sample prediction (same as: .venv/bin/predict mnist $SAMPLE):"
echo "\$ $curl_line"
bash -c "$curl_line"
echo
