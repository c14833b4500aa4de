"""The one reader of model archives (.mar, zip files), and the names archives have in a store.

    Archive.open(path)      manifest + validated model YAML, read in one pass over the zip
    read_manifest(path)     the manifest alone, of any archive (also one with a function handler, no YAML)
    read_entry(path, name)  one entry's bytes (e.g. the model file the manifest names)
    archive.extract(dir)    every entry, refusing ZipSlip (absolute paths, `..`, symbolic links, names that
                            only share a string prefix with the target: `/out` vs `/out-evil`)
    archive_file_name       `<name>.mar` for the YAML's own version, `<name>_v<version>.mar` for another
    store_archives(store)   the archives of a model store, in name order

Everything that opens a `.mar` (the engines, the KServe layout, the in-process worker, the tests) goes through
`Archive`, so an archive is validated the same way wherever it is served.
"""

from __future__ import annotations

import json
import re
import stat
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import yaml

from handlers.config import ModelYaml, worker_config
from handlers.errors import ModelConfigError
from handlers.manifest import model_version
from toolkit.errors import UnsafeArchiveError

MANIFEST = "MAR-INF/MANIFEST.json"
VERSIONED = re.compile(r"_v[0-9][^/]*\.mar$")


def archive_file_name(name: str, version: str, default_version: str) -> str:
    """The store file of model `name` at `version`: `<name>.mar` when it is the YAML's own
    (`default_version`), else `<name>_v<version>.mar`."""
    return f"{name}.mar" if version == default_version else f"{name}_v{version}.mar"


def is_default_archive(path: Path) -> bool:
    """Whether a store file is a model's default archive (`<name>.mar`), not a `<name>_v<version>.mar`."""
    return not VERSIONED.search(Path(path).name)


def store_archives(store: Path, names: Sequence[str] | None = None) -> list[Path]:
    """The archives of `store`: the files `names` (in that order) or every `*.mar`, sorted by name."""
    store = Path(store)
    return [store / name for name in names] if names is not None else sorted(store.glob("*.mar"))


def _check_entry(info: zipfile.ZipInfo, target: Path) -> Path:
    """The extraction path of one entry, or UnsafeArchiveError naming it."""
    name = info.filename
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or (pure.parts and pure.parts[0].endswith(":")):
        raise UnsafeArchiveError(f"archive entry {name!r} is an absolute path")
    if ".." in pure.parts:
        raise UnsafeArchiveError(f"archive entry {name!r} contains '..'")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise UnsafeArchiveError(f"archive entry {name!r} is a symbolic link")
    destination = (target / Path(*pure.parts)).resolve()
    if not destination.is_relative_to(target):
        raise UnsafeArchiveError(f"archive entry {name!r} resolves outside {target}")
    return destination


def safe_extract(archive: Path, target: Path) -> list[Path]:
    """Extract every entry of `archive` under `target`, after checking all of them. Returns the files written."""
    target = target.resolve()
    with zipfile.ZipFile(archive) as zf:
        plan = [(info, _check_entry(info, target)) for info in zf.infolist()]
        written = []
        for info, destination in plan:
            if info.is_dir():
                destination.mkdir(parents=True, exist_ok=True)
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(destination, "wb") as dst:
                dst.write(src.read())
            written.append(destination)
    return written


def _read(path: Path) -> tuple[dict, object]:
    """The manifest and the raw model-config (None when the manifest names none), in one pass over the zip."""
    try:
        with zipfile.ZipFile(path) as zf:
            manifest = json.loads(zf.read(MANIFEST))
            config_file = manifest.get("model", {}).get("configFile")
            return manifest, (yaml.safe_load(zf.read(config_file)) if config_file else None)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, yaml.YAMLError) as exc:
        raise ModelConfigError(f"{Path(path).name}: not a readable model archive ({exc})") from None


def read_manifest(path: str | Path) -> dict:
    """The manifest of any `.mar`, also one not built by this toolkit (a function handler, no model YAML)."""
    return _read(Path(path))[0]


def read_entry(path: str | Path, name: str) -> bytes:
    """The bytes of entry `name` of the `.mar` at `path`; ModelConfigError names the archive and the entry when
    it cannot be read."""
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.read(name)
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise ModelConfigError(f"{Path(path).name}: no readable entry {name!r} ({exc})") from None


def model_name(path: str | Path) -> str | None:
    """The model name in a `.mar`'s manifest, None if the archive cannot be read."""
    try:
        return str(read_manifest(path)["model"]["modelName"])
    except (ModelConfigError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class Archive:
    """One `.mar`: its path, the manifest's model entry and its model-config.yaml validated by the project's
    schema. Build it with `Archive.open` (one pass over the zip)."""

    path: Path
    manifest: dict
    config: ModelYaml

    @classmethod
    def open(cls, path: str | Path) -> Archive:
        """Read and validate `path`. ModelConfigError names the archive when it has no manifest, no
        model-config.yaml or one the schema refuses (a mistyped key is refused here, not ignored)."""
        path = Path(path).resolve()
        manifest, raw = _read(path)
        return cls(path, manifest, worker_config(raw, f"{path.name}: model-config"))

    @property
    def name(self) -> str:
        return str(self.manifest["model"]["modelName"])

    @property
    def version(self) -> str:
        return model_version(self.manifest)

    @property
    def handler_entry(self) -> str:
        """The manifest's `handler`: the entry module TorchServe's loader imports."""
        return str(self.manifest["model"]["handler"])

    def extract(self, target: Path) -> Path:
        """Every entry under `target` (ZipSlip refused, see the module docstring); returns `target`."""
        safe_extract(self.path, target)
        return Path(target).resolve()
