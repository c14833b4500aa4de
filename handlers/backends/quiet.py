"""The warnings torch 2.13 emits from its own internals, silenced only around the calls that trigger them (so
`pytest -W error` still catches any other): torch.jit's DeprecationWarning, which torch emits for our TorchScript
path and for its own modules that still define ScriptModules (torch.utils.mkldnn, imported when Inductor
compiles); the pytree `LeafSpec` FutureWarning of its decompositions; torch.onnx's note that inputs sharing the
batch dimension share its name."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

JIT_DEPRECATED = r"`torch\.jit\.\w+` is deprecated"


@contextmanager
def jit_deprecation_ignored() -> Iterator[None]:
    """Silence only torch's "`torch.jit.*` is deprecated" DeprecationWarning inside the block."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=JIT_DEPRECATED, category=DeprecationWarning)
        yield


@contextmanager
def torch_internal_warnings_ignored() -> Iterator[None]:
    """Silence the warnings of the module docstring inside the block (exporting, compiling)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=JIT_DEPRECATED, category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
        warnings.filterwarnings("ignore", message=r".*The axis name: \w+ will not be used", category=UserWarning)
        yield
