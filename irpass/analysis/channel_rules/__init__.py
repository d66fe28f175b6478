"""Channel rules: how each ONNX op carries channel positions from its inputs to its outputs.

Rules are plain data (``RULES``: op type -> function), used by :mod:`irpass.analysis.channels`.
A rule reads the element-id maps of its inputs, couples what the op couples and gives its
outputs their maps. Axes are negative (counted from the end) so broadcasting keeps them. An
input axis a rule does not read is frozen by the caller, so a rule that leaves something out
errs on the safe side. Each rule's docstring is its spec, one line.

``INVERSE`` holds, for shape-only ops (Unsqueeze, Reshape, Transpose, Cast, Slice, ...), which
input axis an output axis comes from, so that a value computed from a constant (a BN scale
unsqueezed to ``[C, 1, 1]``) can be traced back to the constant that surgery slices.

Modules: ``pointwise`` (activations, broadcasting arithmetic), ``normalization``,
``weighted`` (Conv, ConvTranspose, Gemm, MatMul), ``reductions`` (pools, Reduce*, ArgMax),
``indexing`` (Concat, Split, Slice, Transpose, Squeeze, Pad, Resize, Expand, Gather, Shape),
``reshape`` (Reshape, Flatten and target-shape tracing).
"""

from __future__ import annotations

from irpass.analysis.channel_rules import (
    indexing,
    normalization,
    pointwise,
    reductions,
    reshape,
    weighted,
)
from irpass.analysis.channel_rules._base import (
    INVERSE,
    RULES,
    Constants,
    Context,
    slice_params,
    split_sizes,
    unknown,
)
from irpass.analysis.channel_rules.reshape import (
    ShapeSource,
    factor_dims,
    shape_entries,
    shape_sources,
)

__all__ = [
    "INVERSE",
    "RULES",
    "Constants",
    "Context",
    "ShapeSource",
    "factor_dims",
    "indexing",
    "normalization",
    "pointwise",
    "reductions",
    "reshape",
    "shape_entries",
    "shape_sources",
    "slice_params",
    "split_sizes",
    "unknown",
    "weighted",
]
