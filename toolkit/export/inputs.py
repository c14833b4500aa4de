"""`--example-input [DTYPE:]D1,D2,...`: one positional model input per item, without the batch dimension, and the
random batches built from it for exporting and checking."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from toolkit.export.errors import ExportUsageError

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64,
    "int64": torch.int64, "int32": torch.int32, "int16": torch.int16, "int8": torch.int8, "uint8": torch.uint8,
    "bool": torch.bool,
}
# Integer inputs are drawn from [0, INT_HIGH): valid indices of any embedding and valid 0/1 masks.
INT_HIGH = 2


@dataclass(frozen=True)
class InputSpec:
    """One positional input: its dtype and its shape per item (the batch dimension excluded)."""

    dtype: torch.dtype
    shape: tuple[int, ...]

    @classmethod
    def parse(cls, text: str) -> InputSpec:
        """`[DTYPE:]D1,D2,...`, e.g. `1,28,28` (float32) or `int64:64`; ExportUsageError names what is wrong."""
        dtype_name, _, dims = text.rpartition(":")
        dtype_name = dtype_name or "float32"
        if dtype_name not in DTYPES:
            raise ExportUsageError(f"--example-input {text!r}: unknown dtype {dtype_name!r}; "
                                   f"one of {', '.join(DTYPES)}")
        try:
            shape = tuple(int(d) for d in dims.split(","))
        except ValueError:
            shape = ()
        if not shape or any(d < 1 for d in shape):
            raise ExportUsageError(f"--example-input {text!r}: expected [DTYPE:]D1,D2,... (positive sizes of one "
                                   "item, without the batch dimension), e.g. 3,224,224 or int64:128")
        return cls(DTYPES[dtype_name], shape)

    def random(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """A random batch (batch, *shape): normal floats, integers in [0, INT_HIGH), random booleans."""
        size = (batch, *self.shape)
        if self.dtype.is_floating_point:
            return torch.randn(size, generator=generator).to(self.dtype)
        values = torch.randint(0, INT_HIGH, size, generator=generator)
        return values.bool() if self.dtype == torch.bool else values.to(self.dtype)

    def __str__(self) -> str:
        return f"{str(self.dtype).removeprefix('torch.')}:{','.join(map(str, self.shape))}"


def random_batch(specs: Sequence[InputSpec], batch: int, seed: int,
                 device: torch.device | str = "cpu") -> tuple[torch.Tensor, ...]:
    """One random batch of every positional input, reproducible from `seed`, on `device`."""
    generator = torch.Generator().manual_seed(seed)
    return tuple(spec.random(batch, generator).to(device) for spec in specs)
