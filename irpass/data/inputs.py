"""What a model expects on each input (:class:`InputSpec`), read from its graph."""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np
import onnx_ir as ir

__all__ = ["InputSpec", "input_specs"]


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """What a model expects on one input: name, numpy dtype and shape (None = unknown dim)."""

    name: str
    dtype: np.dtype | None
    shape: tuple[int | str | None, ...] | None

    @property
    def rank(self) -> int | None:
        """Number of dimensions, or None when the model does not say."""
        return None if self.shape is None else len(self.shape)

    @property
    def batch(self) -> int | None:
        """The fixed size of axis 0, or None when it is dynamic or unknown."""
        if self.shape and isinstance(self.shape[0], int):
            return self.shape[0]
        return None

    def describe(self) -> str:
        """E.g. ``float32 [batch, 1, 16, 16]``."""
        dtype = self.dtype.name if self.dtype is not None else "any type"
        if self.shape is None:
            return f"{dtype} (any shape)"
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{dtype} [{dims}]"


def input_specs(model: ir.Model) -> list[InputSpec]:
    """The model's real inputs (graph inputs that are not initializers) in graph order."""
    specs = []
    for value in model.graph.inputs:
        if value.name in model.graph.initializers:
            continue
        dtype = None
        if value.dtype is not None:
            with contextlib.suppress(TypeError, ValueError):
                dtype = np.dtype(value.dtype.numpy())
        shape = None
        if value.shape is not None:
            shape = tuple(
                d if isinstance(d, int) else (d.value if isinstance(d, ir.SymbolicDim) else None)
                for d in value.shape
            )
        specs.append(InputSpec(str(value.name), dtype, shape))
    return specs
