"""A text model of the tests' own and its tokenizer: a WordPiece `tokenizer.json` trained here with `tokenizers`,
and a masked-mean bag of token embeddings (TorchScript), with the reference `model(tokenizer(text))` computed
without the handler. Used by the unit tests and by the e2e tests (which archive it with toolkit.archive)."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from torch import nn

CORPUS = [
    "the cat sat on the mat and purred", "dogs bark loudly at the night sky", "a quick brown fox jumps",
    "stock markets fell sharply on monday", "the team won the final match", "rain is expected tomorrow",
    "compilers translate source code", "the orchestra played a quiet symphony",
] * 5
SPECIALS = ["[UNK]", "[CLS]", "[SEP]", "[PAD]"]  # [PAD] is id 3: padding is not the default 0
CLASSES = 4
LABELS = {str(i): f"topic {i}" for i in range(CLASSES)}


def train_tokenizer(path: Path, vocab_size: int = 120) -> Path:
    """A lower-casing WordPiece tokenizer with [CLS] ... [SEP] around each text and [PAD] (id 3) as its padding,
    written to `path` (tokenizer.json)."""
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(CORPUS, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                                                          show_progress=False))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", tokenizer.token_to_id("[CLS]")),
                                                 ("[SEP]", tokenizer.token_to_id("[SEP]"))])
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]"), pad_token="[PAD]")
    path.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(path))
    return path


class BagOfTokens(nn.Module):
    """Masked mean of token embeddings -> linear -> log-probabilities; (n, L) int64 inputs -> (n, CLASSES)."""

    def __init__(self, vocab_size: int = 128) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, 16)
        self.classifier = nn.Linear(16, CLASSES)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).float()
        pooled = (self.embedding(input_ids) * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)
        return torch.log_softmax(self.classifier(pooled), dim=1)


class IdsOnly(nn.Module):
    """Mean of every position's embedding, padding included: its answer depends on the padded length."""

    def __init__(self, vocab_size: int = 128) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, 8)
        self.classifier = nn.Linear(8, CLASSES)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.classifier(self.embedding(input_ids).mean(dim=1)), dim=1)


def reference(model: nn.Module, tokenizer_file: Path, texts: list[str], max_length: int,
              inputs: tuple[str, ...] = ("input_ids", "attention_mask")) -> torch.Tensor:
    """softmax(model(tokenizer(text))) per text, each text alone: tokens truncated to `max_length` and padded to
    it with the tokenizer's [PAD], attention mask 1 for tokens; (n, CLASSES)."""
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    pad = tokenizer.token_to_id("[PAD]")
    rows = []
    for text in texts:
        ids = tokenizer.encode(text).ids  # the file pads nothing without a length
        ids = ids[: max_length - 1] + [ids[-1]] if len(ids) > max_length else ids  # keep [SEP] last
        tensors = {"input_ids": torch.tensor([ids + [pad] * (max_length - len(ids))]),
                   "attention_mask": torch.tensor([[1] * len(ids) + [0] * (max_length - len(ids))])}
        with torch.no_grad():
            rows.append(torch.softmax(model(*(tensors[name] for name in inputs)), dim=1)[0])
    return torch.stack(rows)
