"""Per-op pruning surgery, in a registry keyed by op type.

A handler gets a node and the :class:`~.base.Surgery` (which positions of every channel axis
are kept) and rewrites what the op holds: weights, biases and norm parameters are sliced
(:meth:`Surgery.slice_inputs`), and op-specific parameters follow — ``group`` of a depthwise
Conv, Split sizes, Slice bounds, Reshape / Expand target shapes, Resize sizes. Ops without a
handler of their own get :func:`~.base.slice_constants` (elementwise operands such as a
per-channel scale).
"""

from __future__ import annotations

from irpass.passes.pruning.handlers import layout_ops, normalization, weighted
from irpass.passes.pruning.handlers.base import (
    HANDLERS,
    Handler,
    Surgery,
    handler_for,
    register,
    slice_constants,
)

__all__ = [
    "HANDLERS",
    "Handler",
    "Surgery",
    "handler_for",
    "layout_ops",
    "normalization",
    "register",
    "slice_constants",
    "weighted",
]
