"""Train, export and verify the example models into ``build/models/<name>/`` (``make models``).

Models (one module each, registered in ``BUILDERS``; shared parts in ``training``):
  mnist            ``MnistConvNet`` trained on the digit generator's digits (pen strokes, fonts, sklearn's 8×8
                   digits; ``handwriting``) in the MNIST layout; stratified 20 % held-out split of sklearn's digits
                   (never trained on), plus held-out generated digits (other seeds, harder hands, other fonts).
  tabular          ``TabularMLP`` on sklearn's breast-cancer data, stratified 20 % held-out split.
  digit_detector   ``DigitDetector`` (CenterNet-like, decodes inside the model) on canvases of generated digits;
                   precision and recall on held-out canvases (``scene_training``).
  digit_segmenter  ``DigitSegmenter`` (U-Net-like) on the same canvases; mean IoU on held-out canvases.
  resnet18         ``ResNet18`` (torchvision's architecture) with random weights, BatchNorm statistics from
                   scikit-image's sample photos: the compute-heavy example (no accuracy: it knows no classes).
  fortunes         ``TokenBagClassifier`` on Debian's fortunes database by topic, with a WordPiece tokenizer
                   trained on the training split; stratified 20 % held-out split.

Per model the directory holds ``<name>.pt`` (TorchScript, checked against the eager module on the
whole held-out set), ``<name>.onnx`` (checked with onnx.checker and onnxruntime against TorchScript,
max abs diff <= 1e-4), ``<name>_exported.pt2`` (ExportedProgram) and ``<name>_aoti.pt2`` (AOTInductor package
for the CPU) where the model exports them, both checked through their serving backend against eager,
``index_to_name.json``, ``metrics.json``, ``samples/``, and for the classifiers
``heldout.npz`` (``x`` as the server receives it, ``y`` true labels, ``pred`` TorchScript predictions through the
serving preprocessing). A model is written to ``<out>/.<name>.partial`` first and moved into place
only when every check and threshold passed. Exit status: 0 when all requested models passed,
1 otherwise (the summary says why). Progress: on a terminal a bar over the models being built (elapsed time,
current step), and always one flushed line per step, ``[  12.3s] [mnist] message``, so CI logs read the same.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from examples.demo_models import digit_detector, digit_segmenter, fortunes, mnist, resnet18, tabular
from examples.demo_models.training import Log
from toolkit.paths import BUILD_MODELS

SEED = 20240611
NUM_THREADS = 2


class Progress:
    """Build progress: a tqdm bar over the models (only when stdout is a terminal: ``disable=None``), and one
    flushed line per step whatever stdout is, ``[  12.3s] [mnist] message``, written above the bar."""

    def __init__(self, names: Sequence[str]) -> None:
        self.start = time.perf_counter()
        self.bar = tqdm(total=len(names), file=sys.stdout, disable=None, dynamic_ncols=True,
                        bar_format="{desc}{n_fmt}/{total_fmt} models |{bar}| {elapsed}{postfix}")

    def __call__(self, name: str, message: str) -> None:
        """Print one progress line for model ``name``; the bar shows it as the current step."""
        self.bar.set_description(name, refresh=False)
        self.bar.set_postfix_str(message, refresh=True)
        tqdm.write(f"[{time.perf_counter() - self.start:6.1f}s] [{name}] {message}", file=sys.stdout)
        sys.stdout.flush()

    def model_done(self) -> None:
        """One more model built (or failed)."""
        self.bar.update(1)

    def close(self) -> None:
        """Stop the bar; on a terminal its last state stays on screen."""
        self.bar.close()


@dataclass
class Result:
    """What one model build reports in the summary."""

    name: str
    metrics: dict = field(default_factory=dict)
    error: str | None = None


# Demo model name -> its build (examples/demo_models/<name>.py): build(out_dir, seed, log) -> metrics.
BUILDERS: dict[str, Callable[[Path, int, Log], dict]] = {
    "mnist": mnist.build,
    "tabular": tabular.build,
    "resnet18": resnet18.build,
    "fortunes": fortunes.build,
    "digit_detector": digit_detector.build,
    "digit_segmenter": digit_segmenter.build,
}


def build_one(name: str, out_root: Path, seed: int, progress: Progress) -> Result:
    """Build model ``name`` into a staging dir, then move it to ``out_root/name`` if it passed."""
    staging = out_root / f".{name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        metrics = BUILDERS[name](staging, seed, lambda message: progress(name, message))
    except Exception as exc:  # reported in the summary and via the exit status, never swallowed
        progress(name, f"FAILED: {type(exc).__name__}: {exc} (partial output left in {staging})")
        return Result(name, error=f"{type(exc).__name__}: {exc}")
    final = out_root / name
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    progress(name, f"written to {final}")
    return Result(name, metrics)


def build_all(names: Sequence[str], out_root: Path, seed: int, progress: Progress) -> list[Result]:
    """Build each model in turn, advancing the progress bar after each."""
    results = []
    for name in names:
        results.append(build_one(name, out_root, seed, progress))
        progress.model_done()
    progress.close()
    return results


def summary_line(result: Result) -> str:
    """One summary line, e.g. ``mnist    heldout_acc=0.9861  fonts_acc=0.9720``: the model's ``summary`` figures,
    else its accuracies."""
    if result.error:
        return f"{result.name:<8} FAILED  {result.error}"
    figures = result.metrics.get("summary") or {f"{k}_acc": v for k, v in result.metrics["accuracy"].items()}
    shown = "  ".join(f"{key}={value:.4f}" for key, value in figures.items())
    return f"{result.name:<8} {shown}  (train {result.metrics['train_seconds']:.1f}s)"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(BUILDERS), help="build just this model")
    parser.add_argument("--out", type=Path, default=BUILD_MODELS, help="output root")
    parser.add_argument("--seed", type=int, default=SEED, help=f"random seed (default {SEED})")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Build the requested models, print a summary; 0 if all passed, else 1."""
    args = parse_args(argv)
    torch.set_num_threads(NUM_THREADS)
    names = [args.only] if args.only else list(BUILDERS)
    progress = Progress(names)
    results = build_all(names, args.out, args.seed, progress)
    print(f"\n=== model build summary ({time.perf_counter() - progress.start:.1f}s) ===", flush=True)
    for result in results:
        print(summary_line(result), flush=True)
    failed = [r.name for r in results if r.error]
    print("FAILED: " + ", ".join(failed) if failed else "all models passed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
