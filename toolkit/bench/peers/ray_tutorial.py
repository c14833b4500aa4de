"""The Ray Serve tutorial's pattern ("Serve PyTorch models at scale with Ray Serve"): a FastAPI ingress
deployment that forwards to a model deployment batching with `@serve.batch`.

No `from __future__ import annotations` here: Serve ships the ingress class to its replica by value, where
FastAPI could not resolve the string annotation `Request` and took it for a query parameter (HTTP 422).

    python -m toolkit.bench.peers.ray_tutorial --address 127.0.0.2:6379 --http-port 8123 \
        --model-file build/models/mnist/mnist.pt [--replicas 2]

Run as a driver with the cluster's token environment (LocalRayCluster.env()); deploys the application
`tutorial` on `/` and returns once it is RUNNING and answers. The bench stops it with the cluster.
"""


import argparse
import sys
import time
from collections.abc import Sequence

import requests
from fastapi import FastAPI, Request
from ray import serve

from toolkit.bench.peers.model import answer, decode, forward, load_model

api = FastAPI()


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=10_000)
@serve.ingress(api)
class APIIngress:
    def __init__(self, model_handle) -> None:
        self.handle = model_handle

    @api.get("/ping")
    async def ping(self) -> dict:
        return {"status": "Healthy"}

    @api.post("/predictions/mnist")
    async def classify(self, request: Request) -> dict:
        image = decode(await request.body())
        return answer(await self.handle.classify.remote(image))


@serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=64)
class MnistModel:
    def __init__(self, model_file: str) -> None:
        self.model = load_model(model_file, threads=1)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def classify(self, images: list) -> list:
        return forward(self.model, images)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m toolkit.bench.peers.ray_tutorial", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--model-file", required=True)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    import ray

    ray.init(address=args.address, log_to_driver=False, logging_level="WARNING")
    serve.start(http_options={"host": "127.0.0.1", "port": args.http_port, "location": "HeadOnly"})
    model = MnistModel.options(num_replicas=args.replicas).bind(args.model_file)
    serve.run(APIIngress.bind(model), name="tutorial", route_prefix="/", blocking=False)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{args.http_port}/ping", timeout=5).status_code == 200:
                print("tutorial app running", flush=True)
                return 0
        except requests.RequestException:
            pass
        time.sleep(1.0)
    print(f"tutorial app not running after {args.timeout:g} s: {serve.status()}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
