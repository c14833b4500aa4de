#!/usr/bin/env bash
# TorchServe's frontend is Java: stop early, with the exact install command, when Java 17+ is missing.
set -euo pipefail
if ! command -v java >/dev/null 2>&1; then
  echo "java not found: TorchServe needs Java 17. Install it with: apt-get install -y openjdk-17-jre-headless" >&2
  exit 1
fi
major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
if [ "${major:-0}" -lt 17 ]; then
  echo "java $major found: TorchServe needs Java 17. Install it with: apt-get install -y openjdk-17-jre-headless" >&2
  exit 1
fi
