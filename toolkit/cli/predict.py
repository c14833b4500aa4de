"""`predict`: send one input to a served model and print its answer, or many inputs in multi-input requests.

    predict MODEL INPUT [--version V] [--run-dir DIR | --url URL --key-file PATH] [--grpc [--grpc-address H:P]]
            [--tries N] [--retry-time S] [--no-retry]
    predict fortunes --text "Beam me up"                                   (or a .txt file as INPUT)
    predict mnist 'digits/*.png' --batch-size 16 --concurrency 4 --output results.csv     (or a folder)
    predict tabular rows.csv --batch-size 64 --output results.json
    predict fortunes quotes.csv --column text --batch-size 32                 (a CSV column of texts)
    predict digit_detector scene.png --draw boxes.png                    (a table of detections, and the boxes)
    predict digit_segmenter scene.png --mask mask.png --draw overlay.png     (the class map, and over the image)

Many inputs (a folder or glob of .png/.jpg images, a .csv of numeric rows (header optional), or with `--column`
the texts of one column of a .csv with a header): `--batch-size` inputs per request (`{"image": [base64, ...]}`
/ `{"inputs": [[...], ...]}` / `{"text": [...]}`), `--concurrency` requests in flight, a progress bar on stderr,
one result per input in `--output` (.csv: input, predicted, error, answer; .json: a list). See toolkit.cli.batch.

INPUT is a file (.png, .jpg/.jpeg, .npy, .json, .txt: sent as image/png, image/jpeg, application/x-npy,
application/json, text/plain) or an inline JSON document (`predict tabular '{"inputs": [[...]]}'`); `--text`
sends its argument as text/plain (UTF-8).
The server: `--run-dir DIR` (a TorchServe run directory: its config.properties and key_file.json), or the
environment (TORCHSERVE_RUN_DIR, or TORCHSERVE_URL, TORCHSERVE_GRPC_ADDRESS and TORCHSERVE_KEY_FILE), else the
`make serve` server; `--url`, `--grpc-address` and `--key-file` win over both (toolkit.cli.target). The answer
is printed as indented JSON (raw bytes if it is not JSON), a detector's or segmenter's as a table
(toolkit.cli.tables; `--json` for the JSON); a reader that stops early (`predict ... | head`) ends it quietly.
`--draw OUT` writes INPUT with a detector's boxes and labels, or a segmenter's class map, drawn on it (needs
Pillow: `pip install 'ts-toolkit[draw]'`); `--mask OUT.png` writes a segmenter's class map PNG as answered
(its pixel values are the class indices). See toolkit.cli.draw.
A failure prints one line on stderr, `error: HTTP 400 decode_error: ...`, and exits 2 for a 4xx answer, 1
otherwise.

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

from toolkit.cli import batch, draw
from toolkit.cli.common import error_line, import_grpc
from toolkit.cli.pipes import quiet_closed_pipe
from toolkit.cli.tables import table_of
from toolkit.cli.target import Target, add_run_dir_option, resolve
from toolkit.client.auth import read_keys
from toolkit.client.rest import InferenceClient, decode_body
from toolkit.client.retry import RetryPolicy
from toolkit.errors import InputError, ToolkitError

CONTENT_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".npy": "application/x-npy",
    ".json": "application/json",
    ".txt": "text/plain",
}
TEXT_CONTENT_TYPE = "text/plain"


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


def _predict_grpc(args: argparse.Namespace, target: Target, key: str, body: bytes) -> Any:
    """One prediction over gRPC; the gRPC client module is imported only here (needs generated stubs)."""
    grpc = import_grpc()
    with grpc.GrpcInferenceClient(target.grpc_inference, key, args.timeout, retry_policy(args)) as client:
        return decode_body(client.predict(args.model, body, version=args.version))


def _predict_rest(args: argparse.Namespace, target: Target, key: str, body: bytes, ctype: str) -> Any:
    with InferenceClient(target.inference, key, args.timeout, retry_policy(args)) as client:
        return client.predict(args.model, body, ctype, version=args.version)[1]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="predict", description="Send one input to a served model.")
    parser.add_argument("model", help="model name")
    parser.add_argument("input", nargs="?", help="file (.png .jpg .jpeg .npy .json .txt), inline JSON, or for "
                        "many inputs a folder or glob of images or a .csv of rows (or texts: --column)")
    parser.add_argument("--text", help="send this text (text/plain, UTF-8) instead of INPUT")
    parser.add_argument("--version", help="model version (default: the default version)")
    add_run_dir_option(parser)
    parser.add_argument("--url", help="inference API base URL (default: --run-dir's, $TORCHSERVE_URL, config's)")
    parser.add_argument("--key-file", help="TorchServe key_file.json (default: --run-dir's, $TORCHSERVE_KEY_FILE, "
                        "make serve's)")
    parser.add_argument("--content-type", help="override the Content-Type guessed from the file suffix")
    parser.add_argument("--grpc", action="store_true", help="use the gRPC inference API instead of REST")
    parser.add_argument("--grpc-address", help="gRPC inference host:port (default: --run-dir's, "
                        "$TORCHSERVE_GRPC_ADDRESS, config's)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per try")
    shown = parser.add_argument_group("a detector's or segmenter's answer (one image)")
    shown.add_argument("--draw", type=Path, metavar="OUT", help="write INPUT with the answer drawn on it: boxes and "
                       "labels, or the class map (needs Pillow)")
    shown.add_argument("--mask", type=Path, metavar="OUT.png", help="write a segmenter's class map PNG as answered "
                       "(pixel values = class indices)")
    shown.add_argument("--json", action="store_true", help="print the answer as JSON, not as a table")
    many = parser.add_argument_group("many inputs: INPUT a folder or glob of images, or a .csv of tabular rows")
    many.add_argument("--column", help="INPUT is a .csv with a header: send the texts of this column")
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


def _print_answer(answer: Any, as_json: bool = False) -> None:
    """Raw bytes as they came; a detector's or segmenter's answer as a table (unless `as_json`); else JSON."""
    if isinstance(answer, bytes):
        sys.stdout.buffer.write(answer)
        sys.stdout.flush()
        return
    table = None if as_json else table_of(answer)
    print(table if table is not None else json.dumps(answer, indent=2))


def _pictures(args: argparse.Namespace, body: bytes, answer: Any) -> list[Path]:
    """The files `--mask` and `--draw` ask for, written from the answer (and the request image)."""
    written = []
    if args.mask:
        written.append(draw.write_mask(answer, args.mask))
    if args.draw:
        written.append(draw.draw_answer(body, answer, args.draw))
    return written


def _chunks(args: argparse.Namespace) -> list[batch.Chunk]:
    """The requests of batch mode: images, numeric CSV rows, or the texts of a CSV column (`--column`)."""
    path = Path(args.input)
    if args.column:
        if path.suffix.lower() != ".csv":
            raise InputError(f"--column reads a .csv file; got {args.input!r}")
        return batch.text_requests(batch.read_csv_column(path, args.column), args.batch_size)
    if path.suffix.lower() == ".csv":
        return batch.row_requests(batch.read_csv_rows(path)[1], args.batch_size)
    return batch.image_requests(batch.expand_images(args.input), args.batch_size)


def _predict_many(args: argparse.Namespace, target: Target, key: str) -> int:
    """Batch mode: every input of a folder/glob/CSV in multi-input requests, results written to --output.
    Exit 0 when every request was answered, 1 when some failed (their rows carry the error)."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    chunks = _chunks(args)

    def send(chunk: batch.Chunk) -> list[dict]:
        with InferenceClient(target.inference, key, args.timeout, retry_policy(args)) as client:
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


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parsed arguments; exactly one of INPUT and --text (a usage error, exit 2, otherwise)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.input is None) == (args.text is None):
        parser.error("give INPUT (a file, inline JSON, a folder or glob, a .csv) or --text TEXT, not both")
    if args.column and (args.text is not None or args.grpc):
        parser.error("--column is batch mode over a .csv INPUT (REST)")
    if (args.draw or args.mask) and (args.text is not None or batch.is_batch_input(args.input)):
        parser.error("--draw and --mask take the answer of one image: INPUT an image file")
    return args


def target_of(args: argparse.Namespace) -> Target:
    """The server of the options, the environment or make serve (toolkit.cli.target)."""
    return resolve({"inference": args.url, "grpc_inference": args.grpc_address, "key_file": args.key_file},
                   args.run_dir)


def body_of(args: argparse.Namespace) -> tuple[bytes, str]:
    """(body, Content-Type) of a single prediction: --text as UTF-8 text/plain, else INPUT (`read_input`)."""
    if args.text is not None:
        return args.text.encode("utf-8"), args.content_type or TEXT_CONTENT_TYPE
    return read_input(args.input, args.content_type)


def run(args: argparse.Namespace) -> int:
    """One prediction, or batch mode; the error line and exit status of a ToolkitError."""
    key_file = None
    try:
        target = target_of(args)
        key_file = target.key_file
        if args.text is None and batch.is_batch_input(args.input) and not args.grpc:
            return _predict_many(args, target, read_keys(key_file).inference)
        body, ctype = body_of(args)
        key = read_keys(key_file).inference
        answer = _predict_grpc(args, target, key, body) if args.grpc else _predict_rest(args, target, key, body, ctype)
        written = _pictures(args, body, answer)
    except ToolkitError as exc:
        print(error_line(exc, key_file), file=sys.stderr)
        return exc.exit_code
    _print_answer(answer, args.json)
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with quiet_closed_pipe():
        return run(args)


if __name__ == "__main__":
    sys.exit(main())
