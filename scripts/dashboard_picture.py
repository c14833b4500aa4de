"""Draw deploy/grafana/dashboard.png: the dashboard's panels from a real Prometheus after a few minutes of load.

    .venv/bin/python scripts/dashboard_picture.py [--phase-s 40] [--out deploy/grafana/dashboard.png]

Starts its own TorchServe (mnist and tabular archived from the current source with their shipped YAMLs, in a
temp dir on free ports) and its own Prometheus (toolkit.monitor.LocalPrometheus, 2 s scrapes), sends mnist load
at concurrency 1, 8 and 32 (one phase each; about 1 request in 16 a client mistake of each kind in turn) with
tabular alongside, then renders every panel from the same queries (toolkit.monitor.dashboard.render) and stops
both servers. Needs Java 17, prometheus and built models (`make models`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from toolkit.archive.__main__ import main as archive_main
from toolkit.bench.aioclient import PostRequest, closed_loop
from toolkit.monitor.dashboard import PICTURE, render
from toolkit.monitor.prometheus import LocalPrometheus
from toolkit.paths import CONFIG_PROPERTIES, MODEL_CONFIGS
from toolkit.process import free_ports
from toolkit.server.local import LocalServer

DIGIT = [[0] * 10 + [200] * 8 + [0] * 10] * 28
MNIST = "/predictions/mnist"


def mnist_mix() -> list[PostRequest]:
    good = PostRequest(MNIST, json.dumps({"image": DIGIT}).encode())
    bad = [
        PostRequest(MNIST, json.dumps({"image": [[0] * 27] * 28}).encode()),  # validation_error
        PostRequest(MNIST, b"\x89PNG\r\n\x1a\nnot an image", "image/png"),  # decode_error
        PostRequest(MNIST, json.dumps({"image": [DIGIT] * 65}).encode()),  # payload_too_large (max 64)
    ]
    return [good] * 15 + [bad[0]] + [good] * 15 + [bad[1]] + [good] * 15 + [bad[2]]


def tabular_requests() -> list[PostRequest]:
    return [PostRequest("/predictions/tabular", json.dumps({"inputs": [[0.5] * 30]}).encode())]


async def load(url: str, key: str, phase_s: float) -> None:
    loop = asyncio.get_running_loop()
    for concurrency in (1, 8, 32):
        stop_at = loop.time() + phase_s

        def over(stop_at: float = stop_at) -> bool:
            return loop.time() > stop_at

        await asyncio.gather(
            closed_loop(url, key, mnist_mix(), total=10**7, concurrency=concurrency, should_stop=over),
            closed_loop(url, key, tabular_requests(), total=10**7, concurrency=4, should_stop=over),
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phase-s", type=float, default=40.0)
    parser.add_argument("--out", type=Path, default=PICTURE)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dashboard_") as tmp:
        root = Path(tmp)
        store = root / "store"
        store.mkdir()
        for name in ("mnist", "tabular"):
            if archive_main(["--config", str(MODEL_CONFIGS / f"{name}.yaml"), "--store", str(store)]) != 0:
                return 1
        server = LocalServer(root / "run", CONFIG_PROPERTIES, store, ["mnist.mar", "tabular.mar"], ports=free_ports())
        with server.running():
            prom = LocalPrometheus(root / "prometheus", [server.urls.metrics.removeprefix("http://")],
                                   port=free_ports().inference, interval_s=2)
            with prom.running():
                asyncio.run(load(server.urls.inference, server.read_keys().inference, args.phase_s))
                prom.wait_scraped(after=time.time() + 2)
                minutes = (3 * args.phase_s + 20) / 60
                print(f"wrote {render(prom.api(), args.out, minutes=minutes, step_s=2, rate_interval='10s')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
