"""A photo model served against its own raw forward: `python -m toolkit.bench.photos` (run by `make bench`).

    python -m toolkit.bench.photos                          # resnet18 as its YAML ships it (workers, batch, threads)
    python -m toolkit.bench.photos --workers 1 --seconds 30 --photo build/models/resnet18/samples/rocket.jpg
    python -m toolkit.bench.photos --model digit_detector --photo build/models/digit_detector/samples/<scene>.png

Three figures, in images/s, at the YAML's batch size B and torch threads T per worker (or the options'):
- `raw_forward`: the archive's backend (the exact call a worker makes, `handlers.backends`) on a random
  (B, C, H, W) batch, in this process with T threads: the model's limit for one worker;
- `handler_offline`: the archive's whole handler in the in-process TorchServe worker (toolkit.archive.worker)
  on batches of B copies of the photo: decoding, the fit (e.g. Resize + CenterCrop), normalisation, forward,
  answers (a detector's: boxes mapped back, thresholds);
- `served`: a TorchServe of its own (toolkit.server.LocalServer, free ports) running the archive with W workers,
  a closed loop of 2 x B x W clients each posting the photo (one image per request) for `--seconds` after a
  warm-up; `served / (W x raw_forward)` is the share of the workers' forward limit the server delivers.
The photo is sent as image/png or image/jpeg by its suffix. Writes `<out-dir>/<timestamp>-photos-<model>.json`
and prints one line per figure. Seconds are wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from handlers.backends import load_backend
from handlers.config import load_model_yaml
from handlers.worker import apply_threads
from toolkit.archive import build_variant
from toolkit.archive.mar import Archive
from toolkit.archive.worker import Request
from toolkit.bench.aioclient import PostRequest, closed_loop
from toolkit.bench.raw import archive_worker, rate
from toolkit.paths import BENCH_RESULTS, BUILD_MODELS, CONFIG_PROPERTIES, MODEL_CONFIGS, MODEL_STORE
from toolkit.process import free_ports
from toolkit.server.local import LocalServer

REPEATS = 3  # raw figures: the median of this many timed runs
PHOTO_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


@dataclass(frozen=True)
class PhotoBench:
    """One run's setting and figures (images/s)."""

    model: str
    photo: str
    batch_size: int
    threads: int
    workers: int
    concurrency: int
    raw_forward: float
    handler_offline: float
    served: float
    served_errors: int

    @property
    def served_share(self) -> float:
        """Served images/s over the workers' forward limit (workers x raw_forward)."""
        return self.served / (self.workers * self.raw_forward)


def median_rate(call, images: int, seconds: float) -> float:
    """Images/s of `call` (`images` per call): the median of REPEATS timed runs of `seconds / REPEATS`."""
    runs = sorted(calls * images / elapsed for calls, elapsed in
                  (rate(call, seconds / REPEATS, warmup=2) for _ in range(REPEATS)))
    return runs[len(runs) // 2]


def raw_forward(mar: Path, batch: int, threads: int, seconds: float) -> float:
    """Images/s of the archive's backend on a random batch of the model's input shape."""
    archive = Archive.open(mar)
    image = archive.config.handler.image
    with tempfile.TemporaryDirectory(prefix="bench-photos-") as tmp:
        model_dir = archive.extract(Path(tmp))
        backend = load_backend(model_dir / archive.manifest["model"]["serializedFile"], torch.device("cpu"), threads)
        x = torch.randn(batch, image.channels, image.height, image.width)
        return median_rate(lambda: backend(x), batch, seconds)


def handler_offline(mar: Path, photo: bytes, ctype: str, batch: int, threads: int, seconds: float) -> float:
    """Images/s of the archive's handler on batches of `batch` copies of the photo (one image per request)."""
    requests = [Request(photo, ctype)] * batch
    with tempfile.TemporaryDirectory(prefix="bench-photos-") as tmp:
        worker = archive_worker(mar, Path(tmp), threads)
        try:
            return median_rate(lambda: worker.handle(requests), batch, seconds)
        finally:
            worker.close()


async def _load(server: LocalServer, model: str, photo: tuple[bytes, str], concurrency: int,
                seconds: float) -> tuple[int, int]:
    """(answered 200, other) of a closed loop of `concurrency` clients posting the photo for `seconds`."""
    deadline = time.monotonic() + seconds
    outcomes = await closed_loop(server.urls.inference, server.read_keys().inference,
                                 [PostRequest(f"/predictions/{model}", *photo)], total=10**9,
                                 concurrency=concurrency, should_stop=lambda: time.monotonic() > deadline)
    ok = sum(o.status == 200 for o in outcomes)
    return ok, len(outcomes) - ok


def served(yaml_path: Path, photo: tuple[bytes, str], batch: int, threads: int, workers: int, concurrency: int,
           seconds: float, warmup_s: float) -> tuple[float, int]:
    """(images/s, errors) of the model served by a TorchServe of its own with these settings."""
    name = f"{yaml_path.stem}_bench"
    with tempfile.TemporaryDirectory(prefix="bench-photos-") as tmp:
        store = Path(tmp) / "store"
        top = {"batchSize": batch, "minWorkers": workers, "maxWorkers": workers}
        mar = build_variant(yaml_path, name, store, top=top, handler={"threads": threads})
        server = LocalServer(Path(tmp) / "run", CONFIG_PROPERTIES, store, [mar.name], ports=free_ports())
        with server.running():
            asyncio.run(_load(server, name, photo, concurrency, warmup_s))
            start = time.monotonic()
            ok, errors = asyncio.run(_load(server, name, photo, concurrency, seconds))
            return ok / (time.monotonic() - start), errors


def measure(args: argparse.Namespace) -> PhotoBench:
    """The three figures of the module docstring for `args.model`."""
    yaml_path = MODEL_CONFIGS / f"{args.model}.yaml"
    config = load_model_yaml(yaml_path)
    batch = args.batch_size or config.batch_size
    threads = args.threads or config.handler.threads or 1
    workers = args.workers or config.max_workers
    concurrency = args.concurrency or 2 * batch * workers
    photo = args.photo.read_bytes()
    ctype = PHOTO_TYPES.get(args.photo.suffix.lower(), "application/octet-stream")
    mar = MODEL_STORE / f"{args.model}.mar"
    apply_threads(threads)
    raw = raw_forward(mar, batch, threads, args.raw_seconds)
    offline = handler_offline(mar, photo, ctype, batch, threads, args.raw_seconds)
    rate_served, errors = served(yaml_path, (photo, ctype), batch, threads, workers, concurrency, args.seconds,
                                 args.warmup)
    return PhotoBench(args.model, str(args.photo), batch, threads, workers, concurrency, round(raw, 1),
                      round(offline, 1), round(rate_served, 1), errors)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m toolkit.bench.photos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet18", help="config/models/<model>.yaml, model_store/<model>.mar")
    parser.add_argument("--photo", type=Path, default=BUILD_MODELS / "resnet18" / "samples" / "rocket.jpg",
                        help="the PNG or JPEG every request sends (default: scikit-image's rocket, 640x427)")
    parser.add_argument("--batch-size", type=int, help="default: the YAML's batchSize")
    parser.add_argument("--threads", type=int, help="torch threads per worker (default: the YAML's handler.threads)")
    parser.add_argument("--workers", type=int, help="default: the YAML's maxWorkers")
    parser.add_argument("--concurrency", type=int, help="clients of the served phase (default: 2 x batch x workers)")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds of the served phase")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds of load before measuring")
    parser.add_argument("--raw-seconds", type=float, default=6.0, help="seconds per raw figure")
    parser.add_argument("--quick", action="store_true", help="10 s served, 3 s warm-up, 3 s per raw figure")
    parser.add_argument("--out-dir", type=Path, default=BENCH_RESULTS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.seconds, args.warmup, args.raw_seconds = 10.0, 3.0, 3.0
    for path in (MODEL_CONFIGS / f"{args.model}.yaml", MODEL_STORE / f"{args.model}.mar", args.photo):
        if not path.is_file():
            print(f"error: {path} is missing (run `make archive`)", file=sys.stderr)
            return 2
    result = measure(args)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir / f"{dt.datetime.now():%Y%m%d-%H%M%S}-photos-{args.model}.json"
    out.write_text(json.dumps({**asdict(result), "served_share": round(result.served_share, 3)}, indent=2) + "\n")
    setting = f"batch {result.batch_size}, {result.threads} thread(s) per worker"
    print(f"{args.model}: raw forward {result.raw_forward} images/s per worker ({setting})")
    print(f"{args.model}: handler offline {result.handler_offline} images/s (decode, fit, forward, answers)")
    print(f"{args.model}: served {result.served} images/s with {result.workers} worker(s), c{result.concurrency} "
          f"({result.served_errors} errors) = {result.served_share:.0%} of {result.workers} x raw forward")
    print(f"wrote {out}")
    return 0 if result.served_errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
