"""Command line of the archive builder: `python -m toolkit.archive [--model NAME] [--version V]` (`make archive`)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from handlers.errors import ModelConfigError
from toolkit.archive import __doc__ as ARCHIVE_DOC
from toolkit.archive import build
from toolkit.errors import PreflightError
from toolkit.paths import MODEL_CONFIGS, MODEL_STORE, ROOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=ARCHIVE_DOC, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model name (config/models/<name>.yaml); default: every model")
    parser.add_argument("--config", type=Path, help="a model YAML elsewhere (its file name gives the model name)")
    parser.add_argument("--version", help="archive version (default: archive.version in the YAML)")
    parser.add_argument("--config-dir", type=Path, default=MODEL_CONFIGS)
    parser.add_argument("--store", type=Path, default=MODEL_STORE)
    parser.add_argument("--no-preflight", action="store_true", help="skip the offline handler check")
    args = parser.parse_args(argv)
    if args.config:
        paths = [args.config]
    elif args.model:
        paths = [args.config_dir / f"{args.model}.yaml"]
    else:
        paths = sorted(args.config_dir.glob("*.yaml"))
    try:
        for path in paths:
            if not path.is_file():
                raise ModelConfigError(f"{path}: no such model YAML")
            mar = build(path, args.store, args.version, check=not args.no_preflight)
            print(f"archived {path.stem} -> {mar.relative_to(ROOT) if mar.is_relative_to(ROOT) else mar}")
    except (ModelConfigError, PreflightError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as exc:
        print(f"error: torch-model-archiver failed:\n{exc.stderr or exc.stdout}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
