"""Export your own model for serving, checked against eager.

    python -m toolkit.export --model my_model.py:build [--checkpoint ckpt.pth] --example-input 3,224,224 \\
        --format aoti --out build/my_model.pt2 [--device cpu|cuda] [--atol 1e-4]

--model        FILE.py:FACTORY or package.module:FACTORY: a callable returning the nn.Module (no arguments)
--checkpoint   a state_dict, or a checkpoint dict holding one under `state_dict` or `model`, read with
               torch.load(weights_only=True) (no pickled code runs)
--example-input [DTYPE:]D1,D2,...  one per positional input: its shape per item, without the batch dimension
               (dtype default float32; e.g. int64:128 for token ids). The batch dimension is dynamic.
--format       aoti (AOTInductor package .pt2, compiled for --device: the fastest, needs g++ at export time),
               exported (ExportedProgram .pt2, portable, no compiler), torchscript (legacy, deprecated by PyTorch),
               onnx (ONNX Runtime; weights in <out>.data)
The written file is loaded by the backend a worker would choose for it and compared with eager on random inputs
at batch sizes 1 and 8 (max abs diff printed, refused above --atol). Failures name the cause and the fix in one
line (e.g. data-dependent control flow: torch.cond, or --format torchscript).

Demo models: `--arch mnist_cnn|tabular_mlp --checkpoint ckpt.pth --out model.pt [--onnx model.onnx]` (TorchScript,
the legacy form), or `--arch NAME --checkpoint ckpt.pth --format FORMAT --out PATH` (the example input is known).
Exit status: 0 written and checked; 2 a bad argument, model, checkpoint or example input; 1 the export failed or
disagrees with eager.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from toolkit.errors import exit_status
from toolkit.export.architectures import ARCHITECTURES, INPUT_SHAPES, StateDictMismatchError, UnknownArchitectureError
from toolkit.export.exporter import (
    DEFAULT_ATOL,
    ExportRequest,
    check_device,
    check_out_path,
    export_model,
    parse_inputs,
)
from toolkit.export.formats import Format
from toolkit.export.model_spec import build_model
from toolkit.export.torchscript import CheckpointError, ExportCheckError, export_checkpoint


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m toolkit.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="FILE.py:FACTORY or package.module:FACTORY")
    which.add_argument("--arch", help=f"a demo architecture: {', '.join(ARCHITECTURES)}")
    parser.add_argument("--checkpoint", type=Path, help="state_dict file (torch.save(model.state_dict(), path))")
    parser.add_argument("--example-input", action="append", default=[], metavar="[DTYPE:]D1,D2,...",
                        help="one positional input per item, without the batch dimension (repeat per input)")
    parser.add_argument("--format", choices=[f.value for f in Format], help="the serving format")
    parser.add_argument("--out", required=True, type=Path, help="output path (.pt2 for aoti)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="export (and compile) for")
    parser.add_argument("--atol", type=float, default=DEFAULT_ATOL, help="largest abs difference from eager")
    parser.add_argument("--onnx", type=Path, default=None, help="--arch without --format: also write ONNX here")
    parser.add_argument("--n-check", type=int, default=32, help="--arch without --format: random check inputs")
    parser.add_argument("--seed", type=int, default=0, help="--arch without --format: seed of the check inputs")
    return parser


def legacy_arch(args: argparse.Namespace) -> int:
    """`--arch NAME --checkpoint CKPT --out model.pt [--onnx]`: the demo models' TorchScript (and ONNX) export."""
    if args.checkpoint is None or not args.checkpoint.is_file():
        print(f"error: checkpoint not found: {args.checkpoint}", file=sys.stderr)
        return 2
    if args.n_check < 2:
        print("error: --n-check must be >= 2", file=sys.stderr)
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


def model_and_inputs(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[str, list[str]]:
    """The factory spec and example inputs: given, or the demo architecture's."""
    if args.arch is None:
        if not args.example_input:
            parser.error("--model needs --example-input (one per positional input of the forward)")
        return args.model, args.example_input
    if args.arch not in ARCHITECTURES:
        parser.error(f"unknown architecture {args.arch!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    shape = ",".join(map(str, INPUT_SHAPES[args.arch]))
    return f"toolkit.export.architectures:{ARCHITECTURES[args.arch].__name__}", args.example_input or [shape]


def export(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.format is None:
        parser.error("--model needs --format (aoti, exported, torchscript or onnx)")
    spec, inputs = model_and_inputs(args, parser)
    fmt = Format(args.format)
    check_out_path(fmt, args.out)
    request = ExportRequest(build_model(spec, args.checkpoint), parse_inputs(inputs), fmt, args.out,
                            check_device(args.device), args.atol)
    print(export_model(request).summary(args.atol))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the export; print what was written, or one `error: ...` line on stderr; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.arch is not None and args.format is None:
        return legacy_arch(args)
    return exit_status(lambda: export(args, parser))


if __name__ == "__main__":
    sys.exit(main())
