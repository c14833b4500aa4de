"""`python -m toolkit.monitor start|stop|status|render`: the Prometheus of `make monitor`.

    start    Prometheus on 127.0.0.1:--port (9090) scraping the metrics listener of config/config.properties
             (the `make serve` server), run dir .monitor_run/ (config, TSDB, log, pid); returns once it is ready
    stop     stop that Prometheus (by its pid file)
    status   say whether it runs and what it scrapes
    render   draw the dashboard's panels from a Prometheus's data into a PNG (deploy/grafana/dashboard.png)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from toolkit.errors import ToolkitError
from toolkit.monitor.dashboard import PICTURE, render
from toolkit.monitor.prometheus import DEFAULT_PORT, LocalPrometheus, PrometheusApi
from toolkit.paths import ROOT
from toolkit.properties import default_urls

RUN_DIR = ROOT / ".monitor_run"


def _target() -> str:
    return default_urls().metrics.removeprefix("http://")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m toolkit.monitor", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["start", "stop", "status", "render"])
    parser.add_argument("--run-dir", type=Path, default=RUN_DIR)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--target", default=None, help="host:port to scrape (default: config.properties' metrics)")
    parser.add_argument("--out", type=Path, default=PICTURE, help="render: the PNG to write")
    parser.add_argument("--minutes", type=float, default=10.0, help="render: how far back")
    args = parser.parse_args(argv)
    prom = LocalPrometheus(args.run_dir, [args.target or _target()], args.port)
    try:
        if args.command == "start":
            prom.start()
            print(f"Prometheus on {prom.url} scraping {prom.targets[0]} (run dir {prom.run_dir}); "
                  "stop it with `make monitor-stop`")
        elif args.command == "stop":
            running = prom.process() is not None
            prom.stop()
            print("Prometheus stopped" if running else "no Prometheus running from " + str(prom.run_dir))
        elif args.command == "status":
            proc = prom.process()
            print(f"Prometheus pid {proc.pid} on {prom.url}" if proc else "Prometheus not running")
            return 0 if proc else 1
        else:
            print(f"wrote {render(PrometheusApi(prom.url), args.out, args.minutes)}")
    except ToolkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
