"""Train, export and verify the example models into ``build/models/<name>/`` (``make models``).

Models:
  mnist    ``MnistCNN`` trained on sklearn's 8×8 digits rendered in the MNIST layout, with augmentation;
           stratified 20 % held-out split (never trained on), plus an out-of-distribution set of
           font-rendered digits (accuracy reported, no threshold).
  tabular  ``TabularMLP`` on sklearn's breast-cancer data, stratified 20 % held-out split.

Per model the directory holds ``<name>.pt`` (TorchScript, checked against the eager module on the
whole held-out set), ``<name>.onnx`` (checked with onnx.checker and onnxruntime against TorchScript,
max abs diff <= 1e-4), ``index_to_name.json``, ``metrics.json``, ``samples/`` and ``heldout.npz``
(``x`` as the server receives it, ``y`` true labels, ``pred`` TorchScript predictions through the
serving preprocessing). A model is written to ``<out>/.<name>.partial`` first and moved into place
only when every check and threshold passed. Exit status: 0 when all requested models passed,
1 otherwise (the summary says why). Progress: on a terminal a bar over the models being built (elapsed time,
current step), and always one flushed line per step, ``[  12.3s] [mnist] message``, so CI logs read the same.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from examples.demo_models import digits, fonts
from toolkit.export.architectures import MnistCNN, TabularMLP
from toolkit.export.torchscript import (
    check_onnx,
    check_optimized,
    check_torchscript,
    export_onnx,
    load_torchscript,
    predict,
    save_torchscript,
    to_torchscript,
)
from toolkit.paths import BUILD_MODELS

SEED = 20240611
HELDOUT_FRACTION = 0.2
MNIST_MIN_ACC = 0.97
TABULAR_MIN_ACC = 0.93
# Fraction of mnist training images left un-augmented in each epoch.
MNIST_P_CLEAN = 0.2
NUM_THREADS = 2


class BuildError(RuntimeError):
    """A model missed its accuracy threshold or an export check failed."""


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
class Split:
    """Stratified split: ``x_*`` as the server receives it (uint8 images / float64 features)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_held: np.ndarray
    y_held: np.ndarray


@dataclass
class TrainConfig:
    """Optimiser settings: AdamW with a one-cycle learning-rate schedule, cross-entropy on log-probs."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.0
    log_every: int = 1


@dataclass
class Result:
    """What one model build reports in the summary."""

    name: str
    metrics: dict = field(default_factory=dict)
    error: str | None = None


def stratified_split(x: np.ndarray, y: np.ndarray, seed: int) -> Split:
    """Split ``x``/``y`` with ``HELDOUT_FRACTION`` held out, stratified by label, fixed seed."""
    from sklearn.model_selection import train_test_split

    x_tr, x_he, y_tr, y_he = train_test_split(
        x, y, test_size=HELDOUT_FRACTION, stratify=y, random_state=seed
    )
    return Split(x_tr, y_tr.astype(np.int64), x_he, y_he.astype(np.int64))


def fit(model: nn.Module, epoch_data: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
        config: TrainConfig, log: Callable[[str], None]) -> float:
    """Train ``model`` in place; ``epoch_data(epoch)`` gives that epoch's (inputs, labels).

    Returns the training wall time in seconds. Uses the global torch RNG (seeded by the caller).
    """
    start = time.perf_counter()
    x0, y0 = epoch_data(0)
    steps = config.epochs * -(-len(x0) // config.batch_size)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=config.lr, total_steps=steps)
    for epoch in range(config.epochs):
        x, y = (x0, y0) if epoch == 0 else epoch_data(epoch)
        loss, acc = _train_epoch(model, x, y, config.batch_size, optimiser, schedule)
        if (epoch + 1) % config.log_every == 0 or epoch + 1 == config.epochs:
            log(f"epoch {epoch + 1:2d}/{config.epochs}  loss={loss:.4f}  train_acc={acc:.4f}  "
                f"({time.perf_counter() - start:.1f}s)")
    model.eval()
    return time.perf_counter() - start


def _train_epoch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                 optimiser: torch.optim.Optimizer, schedule: torch.optim.lr_scheduler.LRScheduler,
                 ) -> tuple[float, float]:
    """One shuffled pass; returns (mean loss, accuracy) over the epoch's samples."""
    model.train()
    order = torch.randperm(len(x))
    total_loss, correct = 0.0, 0
    for i in range(0, len(x), batch_size):
        idx = order[i : i + batch_size]
        out = model(x[idx])
        loss = F.nll_loss(out, y[idx])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        total_loss += loss.detach().item() * len(idx)
        correct += int((out.argmax(1) == y[idx]).sum())
    return total_loss / len(x), correct / len(x)


def accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    """Fraction of equal entries (0.0 for empty input)."""
    return float((pred == y).mean()) if len(y) else 0.0


# ----------------------------------------------------------------------------------------------- mnist


def mnist_split(seed: int, log: Callable[[str], None]) -> Split:
    """sklearn digits rendered in the MNIST layout (uint8 (N, 28, 28)), stratified split."""
    from sklearn.datasets import load_digits

    data = load_digits()
    log(f"rendering {len(data.images)} sklearn digits in the MNIST layout")
    images = digits.render_sklearn_digits(data.images)
    return stratified_split(images, data.target, seed)


def train_mnist(split: Split, seed: int, log: Callable[[str], None]) -> tuple[MnistCNN, float, TrainConfig]:
    """Train ``MnistCNN`` on freshly augmented training images every epoch."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    config = TrainConfig(epochs=14, batch_size=64, lr=3e-3, weight_decay=1e-4)
    y = torch.from_numpy(split.y_train)

    def epoch_data(_epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        augmented = digits.augment_batch(split.x_train, rng, p_clean=MNIST_P_CLEAN)
        return torch.from_numpy(digits.normalize(augmented)), y

    model = MnistCNN()
    log(f"training on {len(y)} images, {config.epochs} epochs of fresh augmentations")
    seconds = fit(model, epoch_data, config, log)
    return model, seconds, config


def build_mnist(out_dir: Path, seed: int, log: Callable[[str], None]) -> dict:
    """Build the mnist model directory; returns its metrics; raises ``BuildError``."""
    split = mnist_split(seed, log)
    model, train_seconds, config = train_mnist(split, seed, log)
    x_held = torch.from_numpy(digits.normalize(split.x_held))
    scripted, checks = export_and_check(model, x_held, out_dir, "mnist", log)
    pred = predict(scripted, x_held).argmax(1).numpy().astype(np.int64)
    held_acc = accuracy(pred, split.y_held)
    log("rendering the out-of-distribution font digits")
    ood = fonts.build_font_digit_set(fonts.font_sources())
    ood_pred = predict(scripted, torch.from_numpy(digits.normalize(ood.x))).argmax(1).numpy()
    metrics = {
        "model": "mnist", "arch": "mnist_cnn", "seed": seed, "torch_version": torch.__version__,
        "train_seconds": round(train_seconds, 2), "train_config": {**vars(config), "p_clean": MNIST_P_CLEAN},
        "counts": {"train": len(split.y_train), "heldout": len(split.y_held), "ood_fonts": len(ood.y)},
        "accuracy": {"heldout": held_acc, "ood_fonts": accuracy(ood_pred, ood.y)},
        "ood_fonts_accuracy_per_font": per_group_accuracy(ood_pred, ood.y, ood.font),
        "ood_fonts_accuracy_per_digit": per_group_accuracy(ood_pred, ood.y, [str(d) for d in ood.y]),
        "checks": checks, "thresholds": {"heldout": MNIST_MIN_ACC},
    }
    write_json(out_dir / "index_to_name.json", {str(i): str(i) for i in range(10)})
    write_mnist_samples(out_dir / "samples", split.x_held, split.y_held, pred)
    np.savez_compressed(out_dir / "heldout.npz", x=split.x_held.astype(np.uint8), y=split.y_held, pred=pred)
    write_json(out_dir / "metrics.json", metrics)
    require(held_acc >= MNIST_MIN_ACC, f"mnist held-out accuracy {held_acc:.4f} < {MNIST_MIN_ACC}")
    return metrics


def per_group_accuracy(pred: np.ndarray, y: np.ndarray, groups: Sequence[str]) -> dict[str, float]:
    """Accuracy per group name (e.g. per font), in first-seen order."""
    names = np.asarray(groups)
    return {g: round(accuracy(pred[names == g], y[names == g]), 4) for g in dict.fromkeys(groups)}


def write_mnist_samples(samples_dir: Path, x: np.ndarray, y: np.ndarray, pred: np.ndarray) -> None:
    """Save ``<d>.png`` for d = 0..9: the first held-out image of digit d that the model gets right."""
    from PIL import Image

    samples_dir.mkdir(parents=True, exist_ok=True)
    expected = {}
    for d in range(10):
        hits = np.flatnonzero((y == d) & (pred == d))
        require(hits.size > 0, f"no correctly classified held-out sample of digit {d}")
        Image.fromarray(x[hits[0]].astype(np.uint8), mode="L").save(samples_dir / f"{d}.png")
        expected[f"{d}.png"] = d
    write_json(samples_dir / "expected.json", expected)


# --------------------------------------------------------------------------------------------- tabular


def train_tabular(split: Split, seed: int, log: Callable[[str], None]) -> tuple[TabularMLP, float, TrainConfig]:
    """Train ``TabularMLP`` with mean/std buffers from the training features."""
    torch.manual_seed(seed)
    x = torch.from_numpy(split.x_train.astype(np.float32))
    y = torch.from_numpy(split.y_train)
    std = x.std(dim=0, unbiased=False).clamp_min(1e-6)
    model = TabularMLP(mean=x.mean(dim=0), std=std)
    config = TrainConfig(epochs=40, batch_size=64, lr=3e-3, weight_decay=1e-2, log_every=10)
    log(f"training on {len(y)} rows, {config.epochs} epochs")
    seconds = fit(model, lambda _epoch: (x, y), config, log)
    return model, seconds, config


def build_tabular(out_dir: Path, seed: int, log: Callable[[str], None]) -> dict:
    """Build the tabular model directory; returns its metrics; raises ``BuildError``."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    split = stratified_split(data.data.astype(np.float64), data.target, seed)
    model, train_seconds, config = train_tabular(split, seed, log)
    x_held = torch.from_numpy(split.x_held.astype(np.float32))
    scripted, checks = export_and_check(model, x_held, out_dir, "tabular", log)
    pred = predict(scripted, x_held).argmax(1).numpy().astype(np.int64)
    held_acc = accuracy(pred, split.y_held)
    metrics = {
        "model": "tabular", "arch": "tabular_mlp", "seed": seed, "torch_version": torch.__version__,
        "train_seconds": round(train_seconds, 2), "train_config": vars(config),
        "counts": {"train": len(split.y_train), "heldout": len(split.y_held)},
        "accuracy": {"heldout": held_acc},
        "checks": checks, "thresholds": {"heldout": TABULAR_MIN_ACC},
    }
    names = [str(n) for n in data.target_names]
    write_json(out_dir / "index_to_name.json", {str(i): n for i, n in enumerate(names)})
    write_tabular_samples(out_dir / "samples", split.x_held, split.y_held, pred)
    np.savez_compressed(out_dir / "heldout.npz", x=split.x_held, y=split.y_held, pred=pred)
    write_json(out_dir / "metrics.json", metrics)
    require(held_acc >= TABULAR_MIN_ACC, f"tabular held-out accuracy {held_acc:.4f} < {TABULAR_MIN_ACC}")
    return metrics


def write_tabular_samples(samples_dir: Path, x: np.ndarray, y: np.ndarray, pred: np.ndarray) -> None:
    """Save ``sample_0..3.json`` (``{"inputs": [[30 floats]]}``): two correctly classified rows per class."""
    samples_dir.mkdir(parents=True, exist_ok=True)
    chosen: list[int] = []
    for label in (0, 1):
        hits = np.flatnonzero((y == label) & (pred == label))[:2]
        require(hits.size == 2, f"fewer than 2 correctly classified held-out rows of class {label}")
        chosen.extend(int(i) for i in hits)
    expected = {}
    for k, i in enumerate(chosen):
        write_json(samples_dir / f"sample_{k}.json", {"inputs": [x[i].astype(float).tolist()]})
        expected[f"sample_{k}.json"] = [int(y[i])]
    write_json(samples_dir / "expected.json", expected)


# -------------------------------------------------------------------------------------- shared helpers


def export_and_check(model: nn.Module, x_held: torch.Tensor, out_dir: Path, name: str,
                     log: Callable[[str], None]) -> tuple[torch.jit.ScriptModule, dict]:
    """Write ``<name>.pt`` and ``<name>.onnx`` and check both on the whole held-out input ``x_held``.

    The TorchScript file is reloaded from disk before checking. Returns (reloaded module, diffs).
    """
    model.eval()
    ts_path, onnx_path = out_dir / f"{name}.pt", out_dir / f"{name}.onnx"
    save_torchscript(to_torchscript(model), ts_path)
    scripted = load_torchscript(ts_path)
    ts_diff = check_torchscript(model, scripted, x_held)
    log(f"TorchScript == eager on {len(x_held)} held-out inputs (max abs diff {ts_diff:.2e})")
    opt_diff = check_optimized(model, scripted, x_held)
    log(f"served forward (frozen + optimize_for_inference) vs eager: max abs diff {opt_diff:.2e}")
    export_onnx(model, x_held[:2], onnx_path)
    onnx_diff = check_onnx(onnx_path, x_held.numpy(), predict(scripted, x_held).numpy())
    log(f"ONNX (onnxruntime CPU) vs TorchScript: max abs diff {onnx_diff:.2e}")
    checks = {"torchscript_vs_eager_max_abs_diff": ts_diff, "onnx_vs_torchscript_max_abs_diff": onnx_diff,
              "optimized_vs_eager_max_abs_diff": opt_diff,
              # what the CPU workers run (handlers.backends.TorchScriptBackend); `make bench` raw phase compares
              # it with the plain scripted module and ONNX Runtime (bench/README.md)
              "served_forward": "torchscript frozen + optimize_for_inference (CPU)"}
    return scripted, checks


def require(condition: bool, message: str) -> None:
    """Raise ``BuildError(message)`` unless ``condition``."""
    if not condition:
        raise BuildError(message)


def write_json(path: Path, payload: object) -> None:
    """Write ``payload`` as indented JSON (parent directories created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")


BUILDERS: dict[str, Callable[[Path, int, Callable[[str], None]], dict]] = {
    "mnist": build_mnist,
    "tabular": build_tabular,
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
    """One summary line, e.g. ``mnist    heldout_acc=0.9861  ood_fonts_acc=0.7210``."""
    if result.error:
        return f"{result.name:<8} FAILED  {result.error}"
    accs = "  ".join(f"{key}_acc={value:.4f}" for key, value in result.metrics["accuracy"].items())
    return f"{result.name:<8} {accs}  (train {result.metrics['train_seconds']:.1f}s)"


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
