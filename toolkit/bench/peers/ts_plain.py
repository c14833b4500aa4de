"""Plain TorchServe peer: a minimal `BaseHandler` subclass, the archive built with torch-model-archiver.

    handler = write_handler(dir); mar = build_archive(model_file, dir, store)

TorchServe's own `BaseHandler.initialize` loads the TorchScript file and `inference` runs it; this handler
only turns each `{"image": 28x28}` body into a tensor (toolkit.bench.peers.model.decode) and each output row
into its answer. The model-config asks for batches of 32 (5 ms) on 2 workers; the bench starts the server
with OMP_NUM_THREADS=1.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HANDLER = '''
import json

import numpy as np
import torch
from ts.torch_handler.base_handler import BaseHandler

MEAN, STD = 0.1307, 0.3081


class PlainMnist(BaseHandler):
    def preprocess(self, data):
        images = []
        for row in data:
            body = row.get("data") or row.get("body")
            doc = json.loads(body) if isinstance(body, (bytes, bytearray, str)) else body
            image = np.asarray(doc["image"], dtype=np.float32)
            images.append(((image / 255.0 - MEAN) / STD)[None])
        return torch.from_numpy(np.stack(images))

    def postprocess(self, data):
        probabilities = torch.softmax(data.float(), dim=1).tolist()
        return [{"predicted": int(np.argmax(p)), "probabilities": p} for p in probabilities]
'''

MODEL_CONFIG = """minWorkers: 2
maxWorkers: 2
batchSize: 32
maxBatchDelay: 5
responseTimeout: 30
"""

NAME = "plain_mnist"


def build_archive(model_file: Path, work: Path, store: Path) -> str:
    """Write the handler and model-config into `work`, archive them with `model_file` into `store`; the
    archive's file name (`plain_mnist.mar`, model name `plain_mnist`)."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "plain_handler.py").write_text(HANDLER, encoding="utf-8")
    (work / "model-config.yaml").write_text(MODEL_CONFIG, encoding="utf-8")
    cmd = [sys.executable, "-m", "model_archiver.model_packaging", "--model-name", NAME, "--version", "1.0",
           "--serialized-file", str(model_file), "--handler", str(work / "plain_handler.py"),
           "--config-file", str(work / "model-config.yaml"), "--export-path", str(store), "--force"]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return f"{NAME}.mar"
