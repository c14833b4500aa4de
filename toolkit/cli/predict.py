"""`predict`: send one input to a served model and print its answer, or many inputs in multi-input requests.

    predict MODEL INPUT [--version V] [--url URL] [--key-file PATH] [--grpc [--grpc-address H:P]]
            [--tries N] [--retry-time S] [--no-retry]
    predict mnist 'digits/*.png' --batch-size 16 --concurrency 4 --output results.csv     (or a folder)
    predict tabular rows.csv --batch-size 64 --output results.json

Many inputs (a folder or glob of .png/.jpg images, or a .csv of numeric rows, header optional): `--batch-size`
inputs per request (`{"image": [base64, ...]}` / `{"inputs": [[...], ...]}`), `--concurrency` requests in
flight, a progress bar on stderr, one result per input in `--output` (.csv: input, predicted, error, answer;
.json: a list). See toolkit.cli.batch.

INPUT is a file (.png, .jpg/.jpeg, .npy, .json: sent as image/png, image/jpeg, application/x-npy,
application/json) or an inline JSON document (`predict tabular '{"inputs": [[...]]}'`).
Defaults: the `make serve` server (inference address of config/config.properties, key file
.ts_run/key_file.json). The answer is printed as indented JSON (raw bytes if it is not JSON). A failure
prints one line on stderr, `error: HTTP 400 decode_error: ...`, and exits 2 for a 4xx answer, 1 otherwise.

A server with no room for the request (its model queue is full: 503, gRPC UNAVAILABLE / RESOURCE_EXHAUSTED) is
asked again with capped exponential backoff and jitter: up to --tries tries (default 5) within --retry-time
seconds (default 10); --no-retry sends once. If it stays busy: `error: server busy: model queue full (...)`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from toolkit.cli import batch
from toolkit.cli.common import error_line, import_grpc, key_file_of
from toolkit.client.auth import read_keys
from toolkit.client.rest import InferenceClient, decode_body
from toolkit.client.retry import RetryPolicy
from toolkit.errors import InputError, ToolkitError
from toolkit.properties import default_urls

CONTENT_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".npy": "application/x-npy",
    ".json": "application/json",
}


def read_input(text: str, content_type: str | None = None) -> tuple[bytes, str]:
    """(body, Content-Type) for INPUT: a file's bytes typed by its suffix, or inline JSON as UTF-8.

    `content_type` overrides the type guessed for a file. Raises InputError when the suffix is unknown
    (and no override) or INPUT is neither an existing file nor valid JSON.
    """
    path = Path(text)
    if not text.lstrip().startswith(("{", "[")) and path.is_file():
        ctype = content_type or CONTENT_TYPES.get(path.suffix.lower())
        if ctype is None:
            known = ", ".join(CONTENT_TYPES)
            raise InputError(f"unsupported input file type '{path.suffix}' ({known}; or pass --content-type)")
        return path.read_bytes(), ctype
    try:
        json.loads(text)
    except ValueError:
        raise InputError(f"INPUT is neither an existing file nor valid JSON: {text[:80]!r}") from None
    return text.encode("utf-8"), content_type or "application/json"


def _predict_grpc(args: argparse.Namespace, key: str, body: bytes) -> Any:
    """One prediction over gRPC; the gRPC client module is imported only here (needs generated stubs)."""
    grpc = import_grpc()
    address = args.grpc_address or default_urls().grpc_inference
    with grpc.GrpcInferenceClient(address, key, args.timeout, retry_policy(args)) as client:
        return decode_body(client.predict(args.model, body, version=args.version))


def _predict_rest(args: argparse.Namespace, key: str, body: bytes, ctype: str) -> Any:
    url = args.url or default_urls().inference
    with InferenceClient(url, key, args.timeout, retry_policy(args)) as client:
        return client.predict(args.model, body, ctype, version=args.version)[1]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="predict", description="Send one input to a served model.")
    parser.add_argument("model", help="model name")
    parser.add_argument("input", help="file (.png .jpg .jpeg .npy .json), inline JSON, or for many inputs a "
                        "folder or glob of images or a .csv of rows")
    parser.add_argument("--version", help="model version (default: the default version)")
    parser.add_argument("--url", help="inference API base URL (default: config's)")
    parser.add_argument("--key-file", help="TorchServe key_file.json (default: make serve's)")
    parser.add_argument("--content-type", help="override the Content-Type guessed from the file suffix")
    parser.add_argument("--grpc", action="store_true", help="use the gRPC inference API instead of REST")
    parser.add_argument("--grpc-address", help="gRPC inference host:port (default: config's)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per try")
    many = parser.add_argument_group("many inputs: INPUT a folder or glob of images, or a .csv of tabular rows")
    many.add_argument("--batch-size", type=_positive_int, default=16, help="inputs per request (default 16)")
    many.add_argument("--concurrency", type=_positive_int, default=4, help="requests in flight (default 4)")
    many.add_argument("--output", type=Path, help="results file, .csv or .json (default: predictions.csv)")
    many.add_argument("--no-progress", action="store_true", help="no progress bar")
    retry = parser.add_argument_group("retrying a busy server (model queue full: 503 / RESOURCE_EXHAUSTED)")
    retry.add_argument("--tries", type=_positive_int, default=RetryPolicy.tries,
                       help="tries in all, the first included (default %(default)s; 1 = no retry)")
    retry.add_argument("--retry-time", type=float, default=RetryPolicy.total_s, metavar="S",
                       help="no new try after S seconds since the first (default %(default)s)")
    retry.add_argument("--no-retry", action="store_true", help="send once; a busy server's 503 is the answer")
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def retry_policy(args: argparse.Namespace) -> RetryPolicy:
    """The retry policy the options ask for (--no-retry: one try)."""
    return RetryPolicy.off() if args.no_retry else RetryPolicy(tries=args.tries, total_s=max(0.0, args.retry_time))


def _print_answer(answer: Any) -> None:
    if isinstance(answer, bytes):
        sys.stdout.buffer.write(answer)
        sys.stdout.flush()
    else:
        print(json.dumps(answer, indent=2))


def _predict_many(args: argparse.Namespace, key: str) -> int:
    """Batch mode: every input of a folder/glob/CSV in multi-input requests, results written to --output.
    Exit 0 when every request was answered, 1 when some failed (their rows carry the error)."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    if Path(args.input).suffix.lower() == ".csv":
        chunks = batch.row_requests(batch.read_csv_rows(Path(args.input))[1], args.batch_size)
    else:
        chunks = batch.image_requests(batch.expand_images(args.input), args.batch_size)
    url = args.url or default_urls().inference

    def send(chunk: batch.Chunk) -> list[dict]:
        with InferenceClient(url, key, args.timeout, retry_policy(args)) as client:
            try:
                answer = client.predict(args.model, chunk.body, "application/json", version=args.version)[1]
            except ToolkitError as exc:
                return [{"input": name, "error": str(exc)} for name in chunk.names]
        return batch.flatten(chunk, answer)

    results: list[dict] = []
    total = sum(len(c.names) for c in chunks)
    with tqdm(total=total, unit="input", disable=args.no_progress, file=sys.stderr) as bar, \
            ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        for rows in pool.map(send, chunks):
            results.extend(rows)
            bar.update(len(rows))
    out = batch.write_results(results, args.output or Path("predictions.csv"))
    failed = sum("error" in r for r in results)
    print(f"{total - failed} of {total} inputs answered in {len(chunks)} requests; results in {out}")
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    key_file = key_file_of(args.key_file)
    if batch.is_batch_input(args.input) and not args.grpc:
        try:
            return _predict_many(args, read_keys(key_file).inference)
        except ToolkitError as exc:
            print(error_line(exc, key_file), file=sys.stderr)
            return exc.exit_code
    try:
        body, ctype = read_input(args.input, args.content_type)
        key = read_keys(key_file).inference
        answer = _predict_grpc(args, key, body) if args.grpc else _predict_rest(args, key, body, ctype)
    except ToolkitError as exc:
        print(error_line(exc, key_file), file=sys.stderr)
        return exc.exit_code
    _print_answer(answer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
