"""Reading model archives (.mar, zip files) safely: manifest, config, and extraction without ZipSlip.

Extraction refuses any entry that would land outside the target folder: absolute paths, `..` components,
symbolic links, and names that only share a string prefix with the target (`/out` vs `/out-evil`).
"""

from __future__ import annotations

import json
import stat
import zipfile
from pathlib import Path, PurePosixPath

import yaml

from toolkit.errors import UnsafeArchiveError


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


def read_manifest(archive: Path) -> dict:
    """MAR-INF/MANIFEST.json of an archive."""
    with zipfile.ZipFile(archive) as zf:
        return json.loads(zf.read("MAR-INF/MANIFEST.json"))


def model_name(archive: Path) -> str | None:
    """The model name in a .mar's manifest, None if the archive cannot be read."""
    try:
        return str(read_manifest(archive)["model"]["modelName"])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None


def read_model_config(archive: Path) -> dict:
    """The archive's model-config.yaml (the file the manifest names), loaded with the safe loader."""
    config_file = read_manifest(archive)["model"].get("configFile")
    if not config_file:
        return {}
    with zipfile.ZipFile(archive) as zf:
        return yaml.safe_load(zf.read(config_file))
