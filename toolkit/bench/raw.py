"""The physical limit, measured without any server: the model's batched forward, and the whole handler offline.

    python -m toolkit.bench.raw --model-file build/models/mnist/mnist.pt --mar model_store/mnist.mar \
        --heldout build/models/mnist/heldout.npz --batch-sizes 1 8 32 --threads 1 2 --seconds 1

prints one JSON object:
- `forward`: images/s of `backend(batch)` (the exact call a handler makes) per (threads, batch size), median of
  3 timed runs (taken in rounds over every backend) on a random (B, 1, 28, 28) batch, for each export of the
  model beside `--model-file` (`<stem>.pt`, `<stem>.onnx`, `<stem>_aoti.pt2`, `<stem>_exported.pt2`, as
  `make models` writes them):
  `"aotinductor"` (the AOTInductor package), `"exported"` (the ExportedProgram's module), `"torchscript"` (on the
  CPU the module frozen + optimize_for_inference), `"scripted"` (the plain scripted module) and `"onnxruntime"`;
  `"served": true` marks the one the `--mar` archive serves (by what its model file is), so the bench shows which
  backend is fastest per model and whether the archive serves it;
- `handler`: requests/s of the archive's handler over batches of B identical requests of each input kind,
  through the in-process TorchServe worker (toolkit.archive.worker: TorchServe's loader, Context and request
  parsing, JSON bodies parsed the way the worker does).
Run it as its own process (the bench does): it sets torch's process-wide thread pools.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path

import torch
import yaml

from handlers.backends import Backend, ModelKind, TorchScriptBackend, identify, load_backend
from handlers.worker import apply_threads
from toolkit.archive.mar import Archive, read_entry, read_manifest
from toolkit.archive.worker import ArchiveWorker, Request
from toolkit.bench.payloads import CONTENT_TYPES, INPUT_KINDS, encode, first_digit
from toolkit.bench.results import ForwardRow, HandlerRow, RawResult

REPEATS = 3  # forward figures are the median of this many timed runs


def rate(call: Callable[[], object], seconds: float, warmup: int = 10) -> tuple[int, float]:
    """Call `call` `warmup` times, then repeatedly for at least `seconds`; (calls, elapsed seconds)."""
    for _ in range(warmup):
        call()
    calls, start = 0, time.perf_counter()
    while True:
        call()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return calls, elapsed


# Forward kind -> the file name of that export beside the model's TorchScript `<stem>.pt` (`make models`).
EXPORTS = {"aotinductor": "{stem}_aoti.pt2", "exported": "{stem}_exported.pt2", "onnxruntime": "{stem}.onnx"}
# What a served model file is -> the forward kind that runs it.
SERVED_KIND = {ModelKind.AOTI: "aotinductor", ModelKind.EXPORTED: "exported", ModelKind.TORCHSCRIPT: "torchscript",
               ModelKind.ONNX: "onnxruntime", ModelKind.ORT: "onnxruntime"}


def forward_calls(model_file: Path, threads: int) -> dict[str, Backend]:
    """Forward kind -> backend, each the exact call a handler makes, for every export of the model: `torchscript`
    (TorchScriptBackend on the `.pt` `model_file`: on the CPU frozen + optimize_for_inference), `scripted` (the
    plain scripted module), and each of EXPORTS found beside it, loaded by `load_backend` (ONNX Runtime with
    `threads`)."""
    cpu = torch.device("cpu")
    calls: dict[str, Backend] = {
        "torchscript": TorchScriptBackend(model_file, cpu),
        "scripted": TorchScriptBackend(model_file, cpu, optimize=False),
    }
    for kind, pattern in EXPORTS.items():
        path = model_file.with_name(pattern.format(stem=model_file.stem))
        if path.is_file():
            calls[kind] = load_backend(path, cpu, threads)
    return calls


def served_kind(mar: Path | None) -> str:
    """The forward kind the archive `mar` serves, by what its model file is; `torchscript` without one."""
    if mar is None:
        return "torchscript"
    serialized = read_manifest(mar)["model"]["serializedFile"]
    with tempfile.TemporaryDirectory(prefix="bench-served-") as tmp:
        model_file = Path(tmp) / Path(serialized).name
        model_file.write_bytes(read_entry(mar, serialized))
        return SERVED_KIND.get(identify(model_file).kind, "unknown")


def forward_row(kind: str, threads: int, batch_size: int, runs: Sequence[tuple[int, float]]) -> ForwardRow:
    """The row of one (kind, batch size) from its timed runs ((calls, elapsed s) each): the median images/s."""
    per_s = sorted(calls * batch_size / elapsed for calls, elapsed in runs)
    median = per_s[len(per_s) // 2]
    return ForwardRow(forward=kind, threads=threads, batch_size=batch_size, images_per_s=round(median, 1),
                      images_per_s_runs=[round(v, 1) for v in per_s], ms_per_batch=round(1e3 * batch_size / median, 4))


def forward_throughput(model_file: Path, batch_sizes: Sequence[int], threads: int, seconds: float) -> list[ForwardRow]:
    """Images/s and ms per batch of the bare forward of every kind of `forward_calls` at each batch size, on a
    random (B, 1, 28, 28) batch with `threads` intra-op threads. The REPEATS timed runs of a cell are taken in
    rounds over every cell, so that a burst of load from other processes on a shared machine falls on every
    backend alike instead of on the one being measured."""
    torch.set_num_threads(threads)
    calls = forward_calls(model_file, threads)
    batches = {size: torch.randn(size, 1, 28, 28) for size in batch_sizes}
    cells = [(kind, size) for kind in calls for size in batch_sizes]
    runs: dict[tuple[str, int], list[tuple[int, float]]] = {cell: [] for cell in cells}
    for _ in range(REPEATS):
        for kind, size in cells:
            runs[kind, size].append(rate(lambda k=kind, b=size: calls[k](batches[b]), seconds))
    return [forward_row(kind, threads, size, runs[kind, size]) for kind, size in cells]


def archive_worker(mar: Path, into: Path, threads: int) -> ArchiveWorker:
    """The archive's handler loaded by the in-process worker from `mar` extracted into `into`, set to `threads`
    intra-op threads (its packed model-config edited before the load, as a YAML with `handler.threads`)."""
    config_file = Archive.open(mar).extract(into) / "model-config.yaml"
    config = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    config["handler"]["threads"] = threads
    config_file.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return ArchiveWorker(into)


def one_batch(worker: ArchiveWorker, kind: str, body: bytes, size: int) -> None:
    """`size` identical requests as one batch; RuntimeError unless the first got 200."""
    answers = worker.handle([Request(body, CONTENT_TYPES[kind])] * size)
    if answers[0].status != 200:
        raise RuntimeError(f"handler answered {answers[0].status}: {answers[0].body[:200]!r}")


def handler_throughput(mar: Path, heldout: Path, batch_sizes: Sequence[int], threads: int,
                       seconds: float) -> list[HandlerRow]:
    """Requests/s of the handler over batches of identical requests of each input kind (offline)."""
    image = first_digit(heldout)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-handler-") as tmp:
        worker = archive_worker(mar, Path(tmp), threads)
        for kind in INPUT_KINDS:
            body = encode(kind, image)
            for batch_size in batch_sizes:
                calls, elapsed = rate(lambda n=batch_size, k=kind, b=body: one_batch(worker, k, b, n),
                                      seconds, warmup=3)
                rows.append(HandlerRow(threads=threads, input=kind, batch_size=batch_size,
                                       requests_per_s=round(calls * batch_size / elapsed, 1),
                                       us_per_request=round(1e6 * elapsed / (calls * batch_size), 1)))
    return rows


def measure(args: argparse.Namespace) -> RawResult:
    """Forward rows for every thread count, then handler rows (when a .mar is given)."""
    apply_threads(max(args.threads))  # inter-op pool fixed to 1 before any parallel work, as in a worker
    served = served_kind(args.mar)
    forward = [replace(row, served=row.forward == served)
               for t in args.threads for row in forward_throughput(args.model_file, args.batch_sizes, t, args.seconds)]
    handler = [row for t in args.threads if args.mar
               for row in handler_throughput(args.mar, args.heldout, args.batch_sizes, t, args.seconds)]
    return RawResult(forward, handler, torch.__version__, torch.__config__.parallel_info().splitlines()[:6])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m toolkit.bench.raw", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-file", type=Path, required=True,
                        help="the model's TorchScript .pt (its other exports are found beside it)")
    parser.add_argument("--mar", type=Path, help="archive whose handler to time offline (optional)")
    parser.add_argument("--heldout", type=Path, help="heldout.npz with x (N, 28, 28) uint8 (needed with --mar)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=float, default=1.0, help="timed seconds per measurement")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.mar and not args.heldout:
        print("error: --mar needs --heldout", file=sys.stderr)
        return 2
    print(json.dumps(asdict(measure(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
