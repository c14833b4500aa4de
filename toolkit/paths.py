"""The project's root and its well-known paths, defined once.

ROOT is the checkout holding `config/config.properties` (the repository this package lives in); with an
installed (non-editable) package that has no such folder, it is the current directory, so the CLIs still find
`config/` and `.ts_run/` where a user runs them.
"""

from __future__ import annotations

from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parents[1]
ROOT = _CHECKOUT if (_CHECKOUT / "config" / "config.properties").is_file() else Path.cwd()

CONFIG_PROPERTIES = ROOT / "config" / "config.properties"  # the server config template
MODEL_CONFIGS = ROOT / "config" / "models"  # <name>.yaml: one per archive
MODEL_STORE = ROOT / "model_store"  # <name>.mar written by `make archive`
BUILD_MODELS = ROOT / "build" / "models"  # <name>/: trained weights, TorchScript, ONNX, samples, heldout.npz
BENCH_RESULTS = ROOT / "bench" / "results"  # timestamped reports of `make bench`
RUN_DIR = ROOT / ".ts_run"  # run directory of the `make serve` server
KEY_FILE_NAME = "key_file.json"  # TorchServe writes its tokens here, in its working directory
KEY_FILE = RUN_DIR / KEY_FILE_NAME  # tokens of the `make serve` server
