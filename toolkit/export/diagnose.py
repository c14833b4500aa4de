"""Why an export failed, in one line with the fix, from the exception torch raised.

torch.export traces the forward with symbolic shapes: a Python `if` on a tensor's values cannot be traced (it
needs `torch.cond`, or TorchScript, which compiles Python control flow), and an operation that fixes the batch
size (`x.view(8, -1)`) contradicts the dynamic batch dimension. TorchScript compiles a subset of Python, ONNX a
subset of operators, and AOTInductor needs a C++ compiler.
"""

from __future__ import annotations

import re

from toolkit.export.formats import Format

_USER_FRAME = re.compile(r'File "([^"]+)", line (\d+)(?:, in \w+)?\n\s*(.+)')
_SUGGESTED = re.compile(r"specialized it to be a constant \((\d+)\)")


def where(text: str) -> str:
    """` at FILE:LINE (`code`)` for the last user frame a torch error quotes, else empty."""
    frames = [m for m in _USER_FRAME.finditer(text) if "/torch/" not in m.group(1)]
    if not frames:
        return ""
    path, line, code = frames[-1].groups()
    return f" at {path.rsplit('/', 1)[-1]}:{line} (`{code.strip()[:80]}`)"


def first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0][:200] if lines else ""


def explain(exc: BaseException, fmt: Format) -> str:
    """One line: what in the model stopped the export in `fmt`, and what to do."""
    text, kind = str(exc), type(exc).__name__
    if "data-dependent" in text or kind == "GuardOnDataDependentSymNode":
        return (f"the forward branches on tensor values (data-dependent control flow{where(text)}), which "
                "torch.export cannot trace: rewrite the branch with torch.cond, or use --format torchscript")
    if "Constraints violated" in text and "batch" in text:
        fixed = _SUGGESTED.search(text)
        size = f" to {fixed.group(1)}" if fixed else ""
        return (f"the forward fixes the batch size{size}{where(text)}, so it cannot vary: use x.shape[0], "
                "x.flatten(1) or reshape(x.shape[0], -1) instead of a literal batch size")
    if fmt is Format.TORCHSCRIPT:
        return (f"torch.jit.script cannot compile the model ({first_line(text)}{where(text)}); TorchScript is "
                "deprecated: use --format aoti or --format exported")
    if fmt is Format.ONNX:
        return f"torch.onnx cannot export the model ({kind}: {first_line(text)}): use --format aoti or exported"
    if fmt is Format.AOTI and ("CppCompileError" in kind or "InvalidCxxCompiler" in kind or "g++" in text):
        return (f"AOTInductor could not compile the model to C++ ({kind}: {first_line(text)}): it needs a C++ "
                "compiler (g++) at export time, or use --format exported")
    return f"{fmt} export failed ({kind}: {first_line(text)}{where(text)})"
