"""Preflight: run a staged archive's handler offline on its sample inputs before the .mar is written.

The staged archive is laid out in a folder as TorchServe extracts it, and its handler is loaded from the generated
entry file and initialised there with a TorchServe `Context` (`offline.load_handler`). It is then sent one batch:
every sample plus one undecodable request. The build fails (with the traceback) when the handler cannot be
instantiated (an abstract method left out) or crashes, answers the wrong count, refuses a sample, lets the bad
request through, or predicts a sample differently from `samples/expected.json`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import traceback
from pathlib import Path

from handlers.answers import prediction
from handlers.config import ModelYaml
from toolkit.archive.offline import OfflineAnswer, load_handler, run_batch
from toolkit.archive.staging import Staged
from toolkit.errors import PreflightError

SAMPLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".json", ".npy")
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


def check_answers(samples: list[tuple[str, bytes]], expected: dict, answers: list[OfflineAnswer]) -> list[str]:
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


def extracted_layout(staged: Staged, model_dir: Path) -> Path:
    """Lay the staged archive out in `model_dir` as TorchServe extracts the .mar; returns `model_dir`."""
    shutil.copytree(staged.extra_dir, model_dir, dirs_exist_ok=True)
    shutil.copy2(staged.model_file, model_dir)
    shutil.copy2(staged.entry_file, model_dir)
    shutil.copy2(staged.config_file, model_dir / "model-config.yaml")
    manifest = {"model": {"modelName": staged.name, "modelVersion": staged.version,
                          "serializedFile": staged.model_file.name, "handler": staged.entry_file.name,
                          "configFile": "model-config.yaml"}}
    (model_dir / "MAR-INF").mkdir()
    (model_dir / "MAR-INF" / "MANIFEST.json").write_text(json.dumps(manifest), encoding="utf-8")
    return model_dir


def preflight(staged: Staged, config: ModelYaml, samples_dir: Path | None) -> str:
    """Run the staged handler on the samples; returns a one-line report or raises PreflightError."""
    samples, expected = load_samples(samples_dir)
    try:
        with tempfile.TemporaryDirectory() as model_dir:
            model_dir = extracted_layout(staged, Path(model_dir))
            handler, context = load_handler(model_dir, batch_size=config.batch_size)
            answers = run_batch(handler, context, [body for _, body in samples] + [BAD_REQUEST])
    except Exception as exc:
        raise PreflightError(f"{staged.name}: handler crashed offline:\n{traceback.format_exc()}") from exc
    problems = check_answers(samples, expected, answers)
    if problems:
        raise PreflightError(f"{staged.name}: " + "; ".join(problems))
    return f"{len(samples)} samples answered 200 ({len(expected)} checked against expected.json), bad request -> 4xx"
