"""The fortunes demo model: which topic a quotation is about, trained on Debian's `fortunes` database.

Data: the fortunes of six categories of `/usr/share/games/fortunes/` (Debian packages `fortunes` and
`fortunes-min`, human-written quotations filed by topic; `scripts/require_fortunes.sh` installs them), one
text per entry, stratified 20 % held out (never trained on, nor seen by the tokenizer). A WordPiece tokenizer
(the `tokenizers` package) is trained on the training texts only and saved as `tokenizer.json`; the model is
``TokenBagClassifier`` (mean and max of token embeddings), trained with AdamW in ~1 min on 2 cores.

Writes ``fortunes.pt`` (TorchScript, checked against eager and against the served frozen forward on the whole
held-out set), ``tokenizer.json``, ``index_to_name.json``, ``metrics.json`` (held-out accuracy), ``heldout.json``
(texts, labels, predictions through the serving tokenization) and ``samples/`` (one held-out `.txt` per topic
that the model gets right, with ``expected.json``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from examples.demo_models.training import accuracy, require, stratified_split, write_json
from toolkit.export.architectures import TokenBagClassifier
from toolkit.export.torchscript import load_torchscript, save_torchscript, to_torchscript

FORTUNES = Path("/usr/share/games/fortunes")
CATEGORIES = ("computers", "food", "love", "politics", "sports", "startrek")
VOCAB_SIZE = 6000
MAX_LENGTH = 128  # handler.text.max_length of config/models/fortunes.yaml (a unit test holds them equal)
MIN_ACC = 0.6  # six topics, the largest 36 % of the texts


@dataclass(frozen=True)
class TrainConfig:
    """AdamW with a one-cycle schedule; `dim`: the embedding width."""

    epochs: int = 20
    batch_size: int = 32
    lr: float = 5e-3
    weight_decay: float = 1e-2
    dim: int = 64


def read_fortunes(root: Path = FORTUNES) -> tuple[list[str], np.ndarray]:
    """Every fortune of CATEGORIES (entries separated by a `%` line) and its category index."""
    texts: list[str] = []
    labels: list[int] = []
    for index, category in enumerate(CATEGORIES):
        path = root / category
        require(path.is_file(), f"{path} is missing: Debian's fortunes database is needed (apt-get install -y "
                                "fortunes fortunes-min; scripts/require_fortunes.sh does it as root)")
        entries = [t.strip() for t in re.split(r"\n%\n", path.read_text(encoding="utf-8", errors="replace"))]
        entries = [t for t in entries if t and t != "%"]
        texts += entries
        labels += [index] * len(entries)
    return texts, np.asarray(labels, dtype=np.int64)


def train_tokenizer(texts: Sequence[str], path: Path):
    """A lower-casing WordPiece tokenizer (BERT's normaliser and pre-tokenizer) trained on `texts`, padding id 0
    ([PAD]), saved to `path`; returned set to truncate at MAX_LENGTH."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=VOCAB_SIZE, special_tokens=["[PAD]", "[UNK]"], show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    path.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(path))
    tokenizer.no_padding()
    tokenizer.enable_truncation(MAX_LENGTH)
    return tokenizer


def token_arrays(tokenizer, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Texts -> (ids, mask) (n, L) int64, padded with 0 to the longest: what the handler feeds the model."""
    encodings = tokenizer.encode_batch(list(texts))
    width = max(len(e.ids) for e in encodings)
    ids = np.zeros((len(texts), width), dtype=np.int64)
    for i, encoding in enumerate(encodings):
        ids[i, : len(encoding.ids)] = encoding.ids
    ids_t = torch.from_numpy(ids)
    return ids_t, (ids_t != 0).long()


def train(model: TokenBagClassifier, ids: torch.Tensor, mask: torch.Tensor, y: torch.Tensor, config: TrainConfig,
          log: Callable[[str], None]) -> float:
    """AdamW with a one-cycle schedule on shuffled batches, each cut to its longest text; returns seconds."""
    start = time.perf_counter()
    steps = config.epochs * -(-len(y) // config.batch_size)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=config.lr, total_steps=steps)
    for epoch in range(config.epochs):
        model.train()
        order, total = torch.randperm(len(y)), 0.0
        for i in range(0, len(y), config.batch_size):
            idx = order[i : i + config.batch_size]
            width = int(mask[idx].sum(dim=1).max())
            loss = F.nll_loss(model(ids[idx, :width], mask[idx, :width]), y[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item() * len(idx)
        log(f"epoch {epoch + 1:2d}/{config.epochs}  loss={total / len(y):.4f}  ({time.perf_counter() - start:.1f}s)")
    model.eval()
    return time.perf_counter() - start


def export_and_check(model: TokenBagClassifier, ids: torch.Tensor, mask: torch.Tensor, path: Path,
                     log: Callable[[str], None]) -> tuple[torch.jit.ScriptModule, dict]:
    """`path` (TorchScript), reloaded and checked against eager, and the served forward (frozen +
    optimize_for_inference, handlers.backends) likewise, on the held-out inputs."""
    from handlers.backends import optimize_torchscript

    save_torchscript(to_torchscript(model), path)
    scripted = load_torchscript(path)
    with torch.inference_mode():
        eager = model(ids, mask)
        served = optimize_torchscript(scripted)
        diffs = {"torchscript_vs_eager_max_abs_diff": float((scripted(ids, mask) - eager).abs().max()),
                 "optimized_vs_eager_max_abs_diff": float((served(ids, mask) - eager).abs().max())}
    log(f"TorchScript and the served forward vs eager on {len(ids)} held-out texts: {diffs}")
    require(max(diffs.values()) <= 1e-4, f"exported forward differs from eager: {diffs}")
    return scripted, diffs


def build(out_dir: Path, seed: int, log: Callable[[str], None]) -> dict:
    """Build the fortunes model directory; returns its metrics; raises ``BuildError``."""
    texts, labels = read_fortunes()
    split = stratified_split(np.asarray(texts, dtype=object), labels, seed)
    torch.manual_seed(seed)
    tokenizer = train_tokenizer(list(split.x_train), out_dir / "tokenizer.json")
    log(f"{len(texts)} fortunes of {len(CATEGORIES)} topics; tokenizer ({tokenizer.get_vocab_size()} word pieces) "
        f"trained on the {len(split.y_train)} training texts")
    config = TrainConfig()
    model = TokenBagClassifier(tokenizer.get_vocab_size(), len(CATEGORIES), config.dim)
    seconds = train(model, *token_arrays(tokenizer, split.x_train), torch.from_numpy(split.y_train), config, log)
    held_ids, held_mask = token_arrays(tokenizer, split.x_held)
    scripted, checks = export_and_check(model, held_ids, held_mask, out_dir / "fortunes.pt", log)
    with torch.inference_mode():
        pred = scripted(held_ids, held_mask).argmax(dim=1).numpy().astype(np.int64)
    held_acc = accuracy(pred, split.y_held)
    log(f"held-out accuracy {held_acc:.4f} on {len(pred)} texts")
    metrics = {
        "model": "fortunes", "arch": "token_bag", "seed": seed, "torch_version": torch.__version__,
        "data": f"Debian fortunes, categories {list(CATEGORIES)}", "train_seconds": round(seconds, 2),
        "train_config": vars(config), "vocab_size": tokenizer.get_vocab_size(), "max_length": MAX_LENGTH,
        "counts": {"train": len(split.y_train), "heldout": len(split.y_held),
                   "per_topic": {c: int((labels == i).sum()) for i, c in enumerate(CATEGORIES)}},
        "accuracy": {"heldout": held_acc}, "checks": checks, "thresholds": {"heldout": MIN_ACC},
    }
    write_json(out_dir / "index_to_name.json", {str(i): c for i, c in enumerate(CATEGORIES)})
    write_json(out_dir / "heldout.json",
               {"text": list(split.x_held), "y": split.y_held.tolist(), "pred": pred.tolist()})
    write_samples(out_dir / "samples", list(split.x_held), split.y_held, pred)
    write_json(out_dir / "metrics.json", metrics)
    require(held_acc >= MIN_ACC, f"fortunes held-out accuracy {held_acc:.4f} < {MIN_ACC}")
    return metrics


def write_samples(samples_dir: Path, texts: list[str], y: np.ndarray, pred: np.ndarray) -> None:
    """`<topic>.txt`: the first held-out fortune of each topic that the model gets right; `expected.json`."""
    samples_dir.mkdir(parents=True, exist_ok=True)
    expected = {}
    for index, category in enumerate(CATEGORIES):
        hits = np.flatnonzero((y == index) & (pred == index))
        require(hits.size > 0, f"no correctly classified held-out fortune about {category}")
        (samples_dir / f"{category}.txt").write_text(texts[hits[0]], encoding="utf-8")
        expected[f"{category}.txt"] = index
    write_json(samples_dir / "expected.json", expected)
