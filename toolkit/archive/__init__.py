"""Build `model_store/<name>.mar` from `config/models/<name>.yaml`, validated and preflighted.

    python -m toolkit.archive                          # every config/models/*.yaml
    python -m toolkit.archive --model mnist --version 2.0

Steps per model: validate the YAML against `handlers.config` (unknown keys, types and ranges refused, naming
file, key, value and what is allowed); stage the archive contents (generated entry handler, the `handlers`
package, a handler module of your own, labels, extra files, model-config.yaml); pack them with
torch-model-archiver; preflight the packed archive in the in-process TorchServe worker on the model's sample
inputs; only then put it in the store, with make's dependency file beside it. A version other than the YAML's
goes to `<name>_v<version>.mar`.

    staging.py    the archive's contents laid out in a folder; torch-model-archiver
    preflight.py  the packed archive answers its samples (and refuses a bad request) before it is stored
    worker.py     the one in-process TorchServe worker (preflight, raw bench, tests, the Ray engine)
    mar.py        the one archive reader (Archive.open), store file names, safe extraction
    depfile.py    model_store/<name>.mar.d: what an archive was made of, for make
    kserve.py     KServe's storage layout from the store (`make kserve-layout`)
    __main__.py   python -m toolkit.archive
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import yaml

from handlers.config import load_model_yaml
from handlers.errors import ModelConfigError
from toolkit.archive.depfile import sample_files, write_depfile
from toolkit.archive.mar import archive_file_name
from toolkit.archive.preflight import preflight
from toolkit.archive.staging import resolve, run_archiver, stage


def build(config_path: Path, store: Path, version: str | None = None, check: bool = True) -> Path:
    """Validate, stage, archive and preflight one model YAML; the .mar goes into `store` only once the
    preflight passed, with make's dependency file beside it. Returns the .mar path."""
    name = config_path.stem
    config = load_model_yaml(config_path)
    if config.archive is None:
        raise ModelConfigError(f"{config_path}: missing the 'archive:' section (model_file, version)")
    version = version or config.archive.version
    target = store / archive_file_name(name, version, config.archive.version)
    with tempfile.TemporaryDirectory() as tmp:
        staged = stage(name, config, version, Path(tmp))
        samples = resolve(config.archive.samples, "archive.samples") if config.archive.samples else None
        packed = run_archiver(staged, Path(tmp) / "out" / target.name)
        if check:
            print(f"preflight {name}: {preflight(packed, samples, config.archive.no_samples)}")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(packed, target)
    write_depfile(target, [config_path, *staged.inputs, *sample_files(samples)])
    return target


def build_variant(
    base_yaml: Path, name: str, store: Path, top: dict | None = None, handler: dict | None = None, check: bool = False
) -> Path:
    """Archive a variant of a model YAML as `<store>/<name>.mar`: TorchServe keys `top` and `handler:` keys
    `handler` replaced, everything else (model file, labels, archive version) as in `base_yaml`. The variant is
    validated by the same schema; preflight only with `check`. Returns the .mar path."""
    data = yaml.safe_load(base_yaml.read_text(encoding="utf-8"))
    data.update(top or {})
    data["handler"].update(handler or {})
    with tempfile.TemporaryDirectory(prefix="variant-") as tmp:
        path = Path(tmp) / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return build(path, store, check=check)
