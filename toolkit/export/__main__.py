"""Turn a ``state_dict`` checkpoint of a known architecture into TorchScript (and optionally ONNX).

The checkpoint must be a plain ``torch.save(model.state_dict(), path)`` file; it is read with
``torch.load(..., weights_only=True)`` (no pickled code is executed). Known architectures are the
keys of ``toolkit.export.architectures.ARCHITECTURES`` (``mnist_cnn``, ``tabular_mlp``); for
``tabular_mlp`` the feature ``mean``/``std`` buffers come from the checkpoint.

Checks: the saved TorchScript file is reloaded and its outputs must equal the eager module's on
random inputs of the architecture's shape (``torch.allclose``, rtol 1e-5, atol 1e-6); with
``--onnx`` the ONNX model (input "input", output "output", dynamic axis "batch") is checked with
``onnx.checker`` and run in onnxruntime (CPU) against the TorchScript outputs (max abs diff 1e-4).

Example:
    python -m toolkit.export --arch mnist_cnn --checkpoint ckpt.pth --out model.pt \\
        --onnx model.onnx

Exit status: 0 on success; 2 for a bad argument, an unknown architecture, an unreadable checkpoint
or a state_dict that does not fit (the message names missing/unexpected keys); 1 when an export
check fails.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from toolkit.export.architectures import (
    ARCHITECTURES,
    StateDictMismatchError,
    UnknownArchitectureError,
)
from toolkit.export.torchscript import CheckpointError, ExportCheckError, export_checkpoint


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options (``--arch`` is validated in ``main`` to give the library's error text)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", required=True, help=f"architecture name, one of: {', '.join(ARCHITECTURES)}")
    parser.add_argument("--checkpoint", required=True, type=Path, help="state_dict file (torch.save)")
    parser.add_argument("--out", required=True, type=Path, help="TorchScript output path (.pt)")
    parser.add_argument("--onnx", type=Path, default=None, help="also export ONNX to this path")
    parser.add_argument("--n-check", type=int, default=32, help="random inputs used for the checks")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random check inputs")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the export; print what was written, or the error on stderr; return the exit status."""
    args = parse_args(argv)
    if args.n_check < 2:
        print("error: --n-check must be >= 2", file=sys.stderr)
        return 2
    if not args.checkpoint.is_file():
        print(f"error: checkpoint not found: {args.checkpoint}", file=sys.stderr)
        return 2
    try:
        report = export_checkpoint(args.arch, args.checkpoint, args.out, args.onnx, args.n_check, args.seed)
    except (UnknownArchitectureError, CheckpointError, StateDictMismatchError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ExportCheckError as exc:
        print(f"export check failed: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {report.torchscript_path} (TorchScript == eager on {args.n_check} random inputs, "
          f"max abs diff {report.torchscript_max_abs_diff:.2e})")
    if report.onnx_path is not None:
        print(f"wrote {report.onnx_path} (onnxruntime vs TorchScript max abs diff {report.onnx_max_abs_diff:.2e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
