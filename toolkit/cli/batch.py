"""`predict` over many inputs: a folder or glob of images, a CSV of tabular rows or a CSV column of texts, sent
as multi-input requests (`--batch-size` inputs each, `--concurrency` in flight), with a progress bar and a
results file.

Pure helpers (no torch, no numpy: the CLI installs with the base dependencies only):
    expand_images(spec)        a folder, a glob or a file -> sorted image paths (.png .jpg .jpeg)
    read_csv_rows(path)        CSV -> (first column names or None, rows of floats); a non-numeric first row is a header
    image_requests(paths, n)   chunks of n images -> `{"image": [base64, ...]}` bodies
    row_requests(rows, n)      chunks of n rows -> `{"inputs": [[...], ...]}` bodies
    read_csv_column(path, c)   the texts of column c of a CSV with a header
    text_requests(texts, n)    chunks of n texts -> `{"text": [...]}` bodies
    flatten(chunk, answer)     one result per input of a chunk from the server's answer (a list per input)
    write_results(rows, path)  .json (a list) or .csv (input, predicted, answer as JSON)
"""

from __future__ import annotations

import base64
import csv
import glob
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handlers.answers import prediction
from toolkit.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class Chunk:
    """One multi-input request: the names of its inputs (file names or `row <n>`) and its JSON body."""

    names: tuple[str, ...]
    body: bytes


def is_batch_input(text: str) -> bool:
    """Whether INPUT asks for batch mode: a directory, a glob pattern, or a .csv file (never inline JSON)."""
    if text.lstrip().startswith(("{", "[")):
        return False
    path = Path(text)
    try:
        is_dir = path.is_dir()
    except OSError:  # a name too long to be a path
        return False
    return is_dir or any(ch in text for ch in "*?[") or path.suffix.lower() == ".csv"


def expand_images(spec: str) -> list[Path]:
    """Image files of a folder (not recursive), a glob pattern or one file, sorted; InputError when none."""
    path = Path(spec)
    if path.is_dir():
        found = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    else:
        found = [Path(p) for p in glob.glob(spec, recursive=True)]
        found = [p for p in found if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if not found:
        raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {spec!r}")
    return sorted(found)


def _floats(row: Sequence[str]) -> list[float] | None:
    try:
        return [float(v) for v in row]
    except ValueError:
        return None


def read_csv_rows(path: Path) -> tuple[list[str] | None, list[list[float]]]:
    """(header or None, rows) of a CSV of numbers; a first row that is not all numbers is the header.
    InputError for a later non-numeric row, rows of different lengths, or no rows."""
    with open(path, newline="", encoding="utf-8") as handle:
        lines = [row for row in csv.reader(handle) if row and any(v.strip() for v in row)]
    header = None
    if lines and _floats(lines[0]) is None:
        header, lines = lines[0], lines[1:]
    rows = []
    for number, line in enumerate(lines, 2 if header else 1):
        values = _floats(line)
        if values is None:
            raise InputError(f"{path}: line {number} is not all numbers: {line[:5]}")
        if rows and len(values) != len(rows[0]):
            raise InputError(f"{path}: line {number} has {len(values)} values, the first row {len(rows[0])}")
        rows.append(values)
    if not rows:
        raise InputError(f"{path}: no data rows")
    return header, rows


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    if size < 1:
        raise ValueError("batch size must be >= 1")
    for start in range(0, len(items), size):
        yield items[start:start + size]


def image_requests(paths: Sequence[Path], size: int) -> list[Chunk]:
    """`size` images per request as `{"image": [base64 of the file, ...]}` (the image handler's list form)."""
    return [Chunk(tuple(str(p) for p in chunk),
                  json.dumps({"image": [base64.b64encode(p.read_bytes()).decode() for p in chunk]}).encode())
            for chunk in _chunks(paths, size)]


def row_requests(rows: Sequence[Sequence[float]], size: int) -> list[Chunk]:
    """`size` rows per request as `{"inputs": [[...], ...]}` (the tabular handler's form)."""
    out, start = [], 0
    for chunk in _chunks(rows, size):
        names = tuple(f"row {start + i + 1}" for i in range(len(chunk)))
        out.append(Chunk(names, json.dumps({"inputs": [list(r) for r in chunk]}).encode()))
        start += len(chunk)
    return out


def read_csv_column(path: Path, column: str) -> list[str]:
    """The texts of column `column` of a CSV whose first row is its header, in row order. InputError when the
    header has no such column, a row is too short for it, or there are no rows."""
    with open(path, newline="", encoding="utf-8") as handle:
        lines = [row for row in csv.reader(handle) if row]
    if not lines or column not in lines[0]:
        header = lines[0] if lines else []
        raise InputError(f"{path}: no column {column!r} in the header {header[:10]} (--column names a header field)")
    index = lines[0].index(column)
    for number, line in enumerate(lines[1:], 2):
        if index >= len(line):
            raise InputError(f"{path}: line {number} has {len(line)} fields, none for column {column!r}")
    if len(lines) < 2:
        raise InputError(f"{path}: no data rows")
    return [line[index] for line in lines[1:]]


def text_requests(texts: Sequence[str], size: int) -> list[Chunk]:
    """`size` texts per request as `{"text": [...]}` (the text handler's list form); inputs named `row <n>`."""
    out, start = [], 0
    for chunk in _chunks(texts, size):
        names = tuple(f"row {start + i + 1}" for i in range(len(chunk)))
        out.append(Chunk(names, json.dumps({"text": list(chunk)}).encode()))
        start += len(chunk)
    return out


def flatten(chunk: Chunk, answer: Any) -> list[dict]:
    """One result per input of `chunk`: the i-th element of a list answer (the handlers answer a list when a
    list was sent); an answer that is no list of the right length is given to every input as it came."""
    if isinstance(answer, dict) and isinstance(answer.get("outputs"), list):
        answer = answer["outputs"]
    if isinstance(answer, list) and len(answer) == len(chunk.names):
        return [{"input": name, "answer": item} for name, item in zip(chunk.names, answer, strict=True)]
    return [{"input": name, "answer": answer} for name in chunk.names]


def write_results(results: Sequence[dict], path: Path) -> Path:
    """`.json`: the list of {"input", "answer"} (or "error"); `.csv`: input, predicted (the answer's
    `handlers.answers.prediction`, empty when it has none), error, answer (JSON)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps(list(results), indent=1) + "\n", encoding="utf-8")
        return path
    if path.suffix.lower() != ".csv":
        raise InputError(f"results file must end in .csv or .json, got {path.name}")
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["input", "predicted", "error", "answer"])
        for row in results:
            answer = row.get("answer")
            writer.writerow([row["input"], prediction(answer), row.get("error", ""),
                             "" if answer is None else json.dumps(answer, separators=(",", ":"))])
    return path
