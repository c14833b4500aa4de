#!/usr/bin/env bash
# make monitor: Debian's prometheus (installed here when missing, as root: toolkit.prereqs) on 127.0.0.1:9090
# with deploy/prometheus/prometheus.yml, scraping the metrics listener of the `make serve` server.
# make monitor-stop (scripts/monitor.sh stop) stops it by its pid file in .monitor_run/.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-start}" = "stop" ]; then
  exec .venv/bin/python -m toolkit.monitor stop --port "${MONITOR_PORT:-9090}"
fi
# Only the binary is used: the package's own service (not started without systemd) is not ours; we start one below.
.venv/bin/python -m toolkit.prereqs --install --quiet prometheus
.venv/bin/python -m toolkit.monitor start --port "${MONITOR_PORT:-9090}"
echo "query it: curl -s 'http://127.0.0.1:9090/api/v1/query?query=handler_requests_total'"
