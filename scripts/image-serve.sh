#!/usr/bin/env bash
# `make image-serve`: run the image ts-toolkit:<version> detached as container $CONTAINER_NAME (default
# ts-toolkit), publishing the config's REST and gRPC ports on 127.0.0.1 only and mounting .image_run/ at the
# server's run dir (/app/run): .image_run/key_file.json (TorchServe's key file) and .image_run/logs/. Waits until
# the container is healthy (every model has its workers READY; podman without systemd never runs the
# HEALTHCHECK by itself, so this script runs `podman healthcheck run`), then prints a curl line.
#
# Environment: CONTAINER_NAME, IMAGE_RUN_DIR (host folder for the run dir), HOST_INFERENCE_PORT,
# HOST_MANAGEMENT_PORT, HOST_GRPC_INFERENCE_PORT, HOST_GRPC_MANAGEMENT_PORT (default: the config's ports),
# HOST_METRICS_PORT (unset: not published; the metrics listener has no token and binds the container's loopback),
# DRAIN_DEADLINE_S (default 20, the entrypoint's own default toolkit.server.container.CONTAINER_DRAIN_DEADLINE_S),
# READY_TIMEOUT_S (default 180), IMAGE_TAG (default ts-toolkit:<version>).
set -euo pipefail
cd "$(dirname "$0")/.."
_tag=${IMAGE_TAG:-}
source scripts/container_env.sh
IMAGE_TAG=${_tag:-$IMAGE_TAG}
run_dir=${IMAGE_RUN_DIR:-$RUN_DIR_HOST}
prop() { awk -F= -v k="$1" '$1 == k { print $2; exit }' config/config.properties; }
port_of() { prop "$1" | awk -F: '{ print $NF }'; }
inference=$(port_of inference_address) management=$(port_of management_address) metrics=$(port_of metrics_address)
grpc_inference=$(prop grpc_inference_port) grpc_management=$(prop grpc_management_port)
deadline=${DRAIN_DEADLINE_S:-20}

if "$ENGINE" container inspect "$CONTAINER_NAME" >/dev/null 2>&1; then
  echo "container $CONTAINER_NAME exists ($("$ENGINE" container inspect --format '{{.State.Status}}' "$CONTAINER_NAME")):" \
    "stop it first (make image-stop)" >&2
  exit 1
fi
mkdir -p "$run_dir"
rm -f "$run_dir/key_file.json" "$run_dir/.draining"
if [ "$ENGINE" = podman ]; then
  volume="$run_dir:/app/run:U"  # :U chowns the folder to the container's user (10001)
else
  chown 10001:10001 "$run_dir" 2>/dev/null || chmod 0777 "$run_dir"
  volume="$run_dir:/app/run"
fi
publish=(-p "127.0.0.1:${HOST_INFERENCE_PORT:-$inference}:$inference"
  -p "127.0.0.1:${HOST_MANAGEMENT_PORT:-$management}:$management"
  -p "127.0.0.1:${HOST_GRPC_INFERENCE_PORT:-$grpc_inference}:$grpc_inference"
  -p "127.0.0.1:${HOST_GRPC_MANAGEMENT_PORT:-$grpc_management}:$grpc_management")
[ -n "${HOST_METRICS_PORT:-}" ] && publish+=(-p "127.0.0.1:$HOST_METRICS_PORT:$metrics")

start=$(date +%s.%N)
errors=$(mktemp)  # not a pipe: the container's conmon inherits podman's stderr and would hold a pipe open
id=$("$ENGINE" run -d 2>"$errors" --name "$CONTAINER_NAME" "${publish[@]}" -v "$volume" \
  -e "TS_DRAIN_DEADLINE_S=$deadline" --stop-timeout $((deadline + 20)) "$IMAGE_TAG")
grep -v 'systemd connection' "$errors" >&2 || true  # podman without systemd: its healthcheck timer notice
rm -f "$errors"
echo "started container $CONTAINER_NAME (${id:0:12}) from $IMAGE_TAG; waiting until healthy"

said_not_ready=
healthy() {
  if [ "$ENGINE" = podman ]; then
    podman healthcheck run "$CONTAINER_NAME" >/dev/null 2>&1 && return 0
    if [ -z "$said_not_ready" ]; then  # the first "not healthy yet", with the check's own reason
      said_not_ready=1
      echo "not healthy yet: $(podman exec "$CONTAINER_NAME" python -m toolkit.server.container health 2>&1 | tail -1)"
    fi
    return 1
  else
    [ "$(docker inspect --format '{{.State.Health.Status}}' "$CONTAINER_NAME")" = healthy ]
  fi
}
limit=${READY_TIMEOUT_S:-180}
SECONDS=0
until healthy; do
  if [ "$("$ENGINE" container inspect --format '{{.State.Running}}' "$CONTAINER_NAME")" != true ]; then
    echo "container $CONTAINER_NAME exited during start-up:" >&2
    "$ENGINE" logs --tail 40 "$CONTAINER_NAME" >&2
    exit 1
  fi
  if [ "$SECONDS" -ge "$limit" ]; then
    echo "container $CONTAINER_NAME not healthy after $limit s:" >&2
    "$ENGINE" exec "$CONTAINER_NAME" python -m toolkit.server.container health >&2 || true
    exit 1
  fi
  sleep 1
done
echo "healthy after $(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $start }") s (start to every model READY)"
echo "key file: $run_dir/key_file.json"
echo "\$ curl -sS http://127.0.0.1:${HOST_INFERENCE_PORT:-$inference}/predictions/mnist" \
  "-H \"Authorization: Bearer \$(.venv/bin/python -m toolkit.client.auth $run_dir/key_file.json)\"" \
  "-T build/models/mnist/samples/0.png"
