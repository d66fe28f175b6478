"""Fusion passes: lossless rewrites that remove work and leave clean Conv/Gemm blocks.

The ``fuse`` preset runs them to a fixpoint. ``decompose_ops`` (the reverse direction, for
targets that lack an op) is not part of it: it belongs after fusion, driven by the target.
"""

from __future__ import annotations

from irpass.registry import register_preset

__all__ = ["FUSE_PIPELINE"]

#: The passes of the ``fuse`` preset, in the order each round applies them.
FUSE_PIPELINE = (
    "fixpoint("
    "remove_noops,fold_pad,fold_batchnorm,fold_channel_affine,matmul_add_to_gemm,"
    "fold_transpose_into_gemm,simplify_transposes,collapse_reshapes,"
    "fuse_activations,fuse_layernorm"
    ")"
)

register_preset(
    "fuse",
    FUSE_PIPELINE,
    "lossless layer fusion to a fixpoint: BatchNorm and per-channel affine folding, "
    "MatMul+Add->Gemm, transpose/reshape/pad folding, HardSwish/GELU/LayerNorm recognition, "
    "no-op removal",
)
