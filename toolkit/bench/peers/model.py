"""What every peer shares: the model as its pattern loads it, the JSON decode, normalisation and answer.

Peers load the same TorchScript file the archive serves, the way their tutorials do (`torch.jit.load`, eval,
`torch.inference_mode`), and decode the same body (`{"image": 28x28 numbers 0-255}`) with numpy.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import torch

MEAN, STD = 0.1307, 0.3081  # config/models/mnist.yaml handler.image


def load_model(model_file: Path | str, threads: int = 1) -> torch.jit.ScriptModule:
    """The TorchScript module, eval mode, `threads` intra-op threads (inter-op 1)."""
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # already set in this process
        torch.set_num_interop_threads(1)
    return torch.jit.load(str(model_file), map_location="cpu").eval()


def decode(body: bytes | dict) -> np.ndarray:
    """One (1, 28, 28) float32 normalised image from a `{"image": 28x28}` JSON body (bytes or parsed)."""
    doc = json.loads(body) if isinstance(body, bytes | bytearray | str) else body
    image = np.asarray(doc["image"], dtype=np.float32)
    if image.shape != (28, 28):
        raise ValueError(f"image must be 28x28, got {image.shape}")
    return ((image / 255.0 - MEAN) / STD)[None]


def forward(model: torch.jit.ScriptModule, images: list[np.ndarray]) -> list[list[float]]:
    """Softmax probabilities of a batch of decoded images, one list of 10 per image."""
    batch = torch.from_numpy(np.stack(images))
    with torch.inference_mode():
        return torch.softmax(model(batch).float(), dim=1).tolist()


def answer(probabilities: list[float]) -> dict:
    """The JSON answer of one image: its class and probabilities."""
    return {"predicted": int(np.argmax(probabilities)), "probabilities": probabilities}
