"""Preflight: run a packed archive's handler on its sample inputs before the .mar goes into the store.

The `.mar` torch-model-archiver just wrote is loaded by the in-process TorchServe worker
(`toolkit.archive.worker`, the harness every engine runs) and sent one batch: every sample (with the content
type of its suffix) plus one undecodable request. Loading runs the archive's real backend on its model file and
the handler's start checks (a file no backend serves, a classifier whose output width is not the number of
labels, `handler.output` naming no output). The build fails when the handler refuses its model config or model
(one line), cannot be instantiated (an abstract method or a protocol's method left out) or crashes (with the
traceback), when there is no sample and the YAML does not say `archive.no_samples: true`, when the handler refuses
a sample, lets the bad request through, or predicts a sample differently from `samples/expected.json`.
"""

from __future__ import annotations

import json
import tempfile
import traceback
from pathlib import Path

from handlers.answers import prediction
from handlers.errors import ModelConfigError
from toolkit.archive.worker import Answer, ArchiveWorker, Request
from toolkit.errors import PreflightError

# A sample file's suffix -> the Content-Type a client sends it with.
CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".json": "application/json",
                 ".npy": "application/x-npy", ".txt": "text/plain"}
SAMPLE_SUFFIXES = tuple(CONTENT_TYPES)
BAD_REQUEST = b"\x00\xffthis is neither an image nor JSON"


def load_samples(samples_dir: Path | None) -> tuple[list[tuple[str, bytes]], dict]:
    """Sample request bodies (file name, raw bytes) and the expected predictions by file name."""
    if samples_dir is None:
        return [], {}
    expected_file = samples_dir / "expected.json"
    expected = json.loads(expected_file.read_text()) if expected_file.is_file() else {}
    samples = [
        (path.name, path.read_bytes())
        for path in sorted(samples_dir.iterdir())
        if path.suffix.lower() in SAMPLE_SUFFIXES and path.name != "expected.json"
    ]
    return samples, expected


def check_answers(samples: list[tuple[str, bytes]], expected: dict, answers: list[Answer]) -> list[str]:
    """Problems found in the preflight batch's answers (empty when all is well)."""
    problems = []
    # `answers` has one more entry than `samples`: the bad request at its end, checked below.
    for (name, _), answer in zip(samples, answers, strict=False):
        if answer.status != 200:
            problems.append(f"sample {name} got HTTP {answer.status}: {answer.body[:300]!r}")
        elif name in expected and prediction(answer.json()) != expected[name]:
            problems.append(f"sample {name}: predicted {prediction(answer.json())}, expected {expected[name]}")
    bad = answers[-1]
    if not 400 <= bad.status < 500:
        problems.append(f"an undecodable request got HTTP {bad.status} instead of a 4xx")
    return problems


def sample_request(name: str, body: bytes) -> Request:
    """A sample file as a client sends it: its bytes with the content type of its suffix."""
    return Request(body, CONTENT_TYPES.get(Path(name).suffix.lower(), "application/octet-stream"))


def load_worker(mar: Path, work: str) -> ArchiveWorker:
    """The archive loaded by the in-process worker. PreflightError names a model config or model file the handler
    refuses in one line, and carries the traceback of any other load failure."""
    try:
        return ArchiveWorker.from_mar(mar, work)
    except ModelConfigError as exc:
        raise PreflightError(f"{mar.stem}: {exc}") from None
    except Exception as exc:
        raise PreflightError(f"{mar.stem}: the handler failed to load:\n{traceback.format_exc()}") from exc


def answer_batch(mar: Path, requests: list[Request], require_samples: bool = False) -> list[Answer]:
    """`requests` as one batch through the archive loaded by the in-process worker (see `load_worker`);
    PreflightError carries the traceback of a batch the handler failed. With `require_samples`, an archive that
    loads is refused when `requests` holds no sample (only the bad request)."""
    with tempfile.TemporaryDirectory(prefix="preflight-") as work:
        worker = load_worker(mar, work)
        try:
            if require_samples and len(requests) < 2:
                raise PreflightError(f"{mar.stem}: no sample inputs, so nothing checks what the model answers: set "
                                     "archive.samples to a folder of requests (.png .jpg .json .npy .txt, with an "
                                     "expected.json), or archive.no_samples: true to archive without")
            answers = worker.handle(requests)
        finally:
            worker.close()
    if worker.last_failure is not None:
        raise PreflightError(f"{mar.stem}: the handler failed the batch:\n{worker.last_failure}")
    return answers


def preflight(mar: Path, samples_dir: Path | None, no_samples: bool = False) -> str:
    """Run the packed archive's handler on the samples; returns a one-line report or raises PreflightError.
    No sample at all is refused unless `no_samples` (the YAML's `archive.no_samples`)."""
    samples, expected = load_samples(samples_dir)
    requests = [sample_request(name, body) for name, body in samples] + [Request(BAD_REQUEST)]
    problems = check_answers(samples, expected, answer_batch(mar, requests, require_samples=not no_samples))
    if problems:
        raise PreflightError(f"{mar.stem}: " + "; ".join(problems))
    return f"{len(samples)} samples answered 200 ({len(expected)} checked against expected.json), bad request -> 4xx"
