"""make's dependency file of an archive: `model_store/<name>.mar.d`, what the archive tool read to build it.

The Makefile includes these (`-include model_store/*.mar.d`), the auto-dependency idiom of C compilers
(`gcc -MD -MP`): the archive depends on its YAML, model file, labels, extra files, samples, handler module, the
`handlers` package it packs and the archive tool's own modules, so touching any of them re-archives that model
and nothing else. A file that a stamped build step wrote (a demo model's `build/models/<name>/`) is tracked
through that step's `.built` stamp, the target make knows how to remake. Each prerequisite also gets an empty
rule of its own, so a deleted input makes the archive stale instead of stopping make.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

from toolkit.paths import ROOT

CODE_PACKAGES = ("handlers", "toolkit")  # the project code whose modules the archive tool imported
STAMP = ".built"  # the Makefile's mark of a build folder written whole by one rule (build/models/<name>/)


def sample_files(samples_dir: Path | None) -> list[Path]:
    """Every file of the samples folder (the preflight reads them all)."""
    return sorted(p for p in samples_dir.iterdir() if p.is_file()) if samples_dir else []


def tool_modules() -> list[Path]:
    """The project's source files this process imported (the archive tool and what it runs)."""
    roots = [ROOT / package for package in CODE_PACKAGES]
    files = {Path(module.__file__).resolve() for module in list(sys.modules.values())
             if getattr(module, "__file__", None)}
    return sorted(path for path in files if path.suffix == ".py" and any(path.is_relative_to(r) for r in roots))


def _tracked(path: Path) -> Path:
    """What make tracks for `path`: the `.built` stamp of the build step that wrote it (a demo model's folder,
    rewritten whole by one make rule), else the file itself."""
    for folder in path.parents:
        if (folder / STAMP).is_file() and folder.is_relative_to(ROOT / "build"):
            return folder / STAMP
    return path


def _make_path(path: Path) -> str:
    """A path as make reads it: relative to the project root when inside it, spaces escaped."""
    path = _tracked(Path(path).resolve())
    text = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
    return text.replace(" ", "\\ ")


def depfile_text(target: Path, inputs: Iterable[Path], modules: Iterable[Path] | None = None) -> str:
    """`target: inputs... modules...` plus an empty rule per prerequisite, as make reads it; `modules` defaults
    to the project modules this process imported (`tool_modules`: the archive tool's own)."""
    modules = tool_modules() if modules is None else modules
    prerequisites = sorted({_make_path(p) for p in [*inputs, *modules]})
    lines = [f"{_make_path(target)}: \\"]
    lines += [f"  {item} \\" for item in prerequisites[:-1]] + [f"  {prerequisites[-1]}", ""]
    lines += [f"{item}:" for item in prerequisites]
    return "\n".join(lines) + "\n"


def write_depfile(target: Path, inputs: Iterable[Path]) -> Path:
    """Write `<target>.d` beside the archive (see `depfile_text`)."""
    depfile = target.with_name(target.name + ".d")
    depfile.write_text(depfile_text(target, inputs), encoding="utf-8")
    return depfile
