#!/usr/bin/env bash
# make monitor: Debian's prometheus (installed here when missing) on 127.0.0.1:9090 with
# deploy/prometheus/prometheus.yml, scraping the metrics listener of the `make serve` server.
# make monitor-stop (scripts/monitor.sh stop) stops it by its pid file in .monitor_run/.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-start}" = "stop" ]; then
  exec .venv/bin/python -m toolkit.monitor stop --port "${MONITOR_PORT:-9090}"
fi
if ! command -v prometheus >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "prometheus not found: installing Debian's package (apt-get install -y prometheus)"
  $SUDO apt-get update -qq
  # The package's service is not started in a container without systemd; we start our own below.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus
fi
.venv/bin/python -m toolkit.monitor start --port "${MONITOR_PORT:-9090}"
echo "query it: curl -s 'http://127.0.0.1:9090/api/v1/query?query=handler_requests_total'"
