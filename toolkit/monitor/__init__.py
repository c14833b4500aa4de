"""Monitoring of a local TorchServe: a real Prometheus scraping its metrics listener, and the Grafana dashboard.

    prometheus.py   LocalPrometheus: Debian's `prometheus` on a loopback port with deploy/prometheus/prometheus.yml,
                    its TSDB in a run dir, stopped by pid; PrometheusApi: instant and range queries
    dashboard.py    deploy/grafana/dashboard.json: its panels' queries, Grafana variables filled in, and a
                    matplotlib picture of the panels from the same queries
    __main__.py     python -m toolkit.monitor start|stop|status|render (`make monitor`, `make monitor-stop`)

What the metrics are: handlers/metrics.py (ours) and config/metrics.yaml (what TorchServe exposes).
"""
