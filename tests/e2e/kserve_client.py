"""KServe's own Python client (`kserve.InferenceRESTClient`, OIP v2) against a running server; run by
tests/e2e/test_oip.py with .venv-kserve/bin/python (`make kserve-client`), since kserve's pins clash with the
project's. Imports nothing of the project.

    python tests/e2e/kserve_client.py --url http://127.0.0.1:8080 --model mnist [--token KEY] IMAGE.png ...

Prints one JSON object: per image, the predicted label sent as JSON data and as binary data (one request at a
time), then 64 requests in flight at once (images in turn, JSON and binary alternating), plus the shapes and
datatypes of the answers and the client's error message for a request with a wrong datatype.
"""

from __future__ import annotations

import argparse
import asyncio
import json

import httpx
import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from PIL import Image


def request(model: str, pixels: np.ndarray, binary: bool, index: int, datatype: str = "UINT8") -> InferRequest:
    tensor = InferInput(name="input-0", shape=[1, *pixels.shape], datatype=datatype)
    dtype = np.uint8 if datatype == "UINT8" else np.int64
    tensor.set_data_from_numpy(pixels[None].astype(dtype), binary_data=binary)
    return InferRequest(model_name=model, infer_inputs=[tensor], request_id=f"kserve-{index}")


async def classify(client: InferenceRESTClient, args: argparse.Namespace, pixels: np.ndarray, binary: bool,
                   index: int) -> dict:
    response = await client.infer(args.url, request(args.model, pixels, binary, index), model_name=args.model,
                                  headers=dict(args.headers))
    outputs = {out.name: out for out in response.outputs}
    return {
        "label": int(outputs["predicted_label"].as_numpy()[0]),
        "id": response.id,
        "outputs": {name: [out.datatype, list(out.shape)] for name, out in outputs.items()},
    }


async def run(args: argparse.Namespace) -> dict:
    images = [np.asarray(Image.open(path).convert("L")) for path in args.images]
    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=120, retries=0))
    try:
        sequential_json = [await classify(client, args, px, False, i) for i, px in enumerate(images)]
        sequential_binary = [await classify(client, args, px, True, i) for i, px in enumerate(images)]
        together = await asyncio.gather(*(
            classify(client, args, images[i % len(images)], i % 2 == 1, 100 + i) for i in range(args.concurrent)
        ))
        try:
            await client.infer(args.url, request(args.model, images[0], False, 999, "INT64"), model_name=args.model,
                               headers=dict(args.headers))
            error = None
        except httpx.HTTPStatusError as exc:
            error = {"status": exc.response.status_code, "message": str(exc)}
    finally:
        await client.close()
    return {
        "sequential_json": [r["label"] for r in sequential_json],
        "sequential_binary": [r["label"] for r in sequential_binary],
        "concurrent": [r["label"] for r in together],
        "ids": [r["id"] for r in sequential_json],
        "outputs": sequential_json[0]["outputs"],
        "error": error,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--model", default="mnist")
    parser.add_argument("--token", default="", help="TorchServe inference key (empty: token auth off)")
    parser.add_argument("--concurrent", type=int, default=64)
    parser.add_argument("images", nargs="+")
    args = parser.parse_args()
    args.headers = [("Authorization", f"Bearer {args.token}")] if args.token else []
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
