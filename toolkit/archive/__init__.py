"""Build `model_store/<name>.mar` from `config/models/<name>.yaml`, validated and preflighted.

    python -m toolkit.archive                          # every config/models/*.yaml
    python -m toolkit.archive --model mnist --version 2.0

Steps per model: validate the YAML against `handlers.config` (unknown keys, types and ranges refused, naming
file, key, value and what is allowed); stage the archive contents (generated entry handler, the `handlers`
package, labels, model-config.yaml); preflight the handler offline on the model's sample inputs; then call
torch-model-archiver. A version other than the YAML's goes to `<name>_v<version>.mar`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from handlers.config import load_model_yaml
from handlers.errors import ModelConfigError
from toolkit.archive.preflight import preflight
from toolkit.archive.staging import resolve, run_archiver, stage


def build(config_path: Path, store: Path, version: str | None = None, check: bool = True) -> Path:
    """Validate, stage, preflight and archive one model YAML. Returns the .mar path."""
    name = config_path.stem
    config = load_model_yaml(config_path)
    if config.archive is None:
        raise ModelConfigError(f"{config_path}: missing the 'archive:' section (model_file, version)")
    version = version or config.archive.version
    with tempfile.TemporaryDirectory() as tmp:
        staged = stage(name, config, version, Path(tmp))
        if check:
            samples = resolve(config.archive.samples, "archive.samples") if config.archive.samples else None
            print(f"preflight {name}: {preflight(staged, config, samples)}")
        file_name = f"{name}.mar" if version == config.archive.version else f"{name}_v{version}.mar"
        return run_archiver(staged, store / file_name)
