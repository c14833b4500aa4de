#!/usr/bin/env bash
# `make image-stop`: stop the container `make image-serve` started ($CONTAINER_NAME, default ts-toolkit)
# gracefully and remove it. SIGTERM makes its entrypoint (toolkit.server.container) turn unhealthy, drain
# (up to the TS_DRAIN_DEADLINE_S the container was started with), stop TorchServe and exit 0; the engine
# waits STOP_TIMEOUT_S (default 40) before SIGKILL. Exits with the container's own exit status (0 after a
# drain); 0 when no such container exists.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/container_env.sh
if ! "$ENGINE" container inspect "$CONTAINER_NAME" >/dev/null 2>&1; then
  echo "no container $CONTAINER_NAME"
  exit 0
fi
start=$(date +%s.%N)
"$ENGINE" stop -t "${STOP_TIMEOUT_S:-40}" "$CONTAINER_NAME" >/dev/null
code=$("$ENGINE" container inspect --format '{{.State.ExitCode}}' "$CONTAINER_NAME")
"$ENGINE" logs --tail 3 "$CONTAINER_NAME" 2>&1 | sed 's/^/  /'
"$ENGINE" rm "$CONTAINER_NAME" >/dev/null
echo "container $CONTAINER_NAME stopped in $(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $start }") s, exit status $code"
exit "$code"
