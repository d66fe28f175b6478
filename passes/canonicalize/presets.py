"""The ``canonicalize`` preset: bring any model into the form later passes expect.

    inputs_to_initializers   IR < 4 weights-as-inputs become constants (else nothing folds),
                             Constant nodes become initializers (lift_constants)
    upgrade_opset            opset 7..16 -> 17 (per-channel QDQ needs >= 13)
    infer_shapes             types and shapes for the size-aware folder
    unwrap_legacy_softmax    the converter's pre-13 Softmax wrapper -> Softmax where exact
    fixpoint(                repeat until nothing changes:
      resolve_reshape_shapes   run-time computed Reshape shapes -> constants (batch -> -1)
      fold_constants           constant subgraphs -> initializers (weights always)
      eliminate_identity       Identity, inference Dropout
      merge_concats            Concat(Concat(a, b), c) on one axis -> Concat(a, b, c)
      merge_slices             Slice(Slice(x)) -> one Slice (different axes, or step 1)
      eliminate_dead           unused nodes / initializers / functions / opsets
      dedup_initializers       equal weights -> one value (so CSE can see equal nodes)
      cse                      equal nodes -> one node
    )

No second ``infer_shapes`` at the end: folding and merging only remove nodes, and new
initializers carry their shapes (on the light zoo it never changed anything, at up to 0.4 s).
The order inside the fixpoint matters: dedup before cse (equal weights must be one value before
two Convs on them compare equal), fold before the eliminations (folding leaves dead producers).
"""

from __future__ import annotations

from irpass.registry import register_preset

__all__ = ["CANONICALIZE"]

CANONICALIZE = (
    "inputs_to_initializers(lift_constants=true),upgrade_opset,infer_shapes,"
    "unwrap_legacy_softmax,"
    "fixpoint(resolve_reshape_shapes,fold_constants,eliminate_identity,merge_concats,"
    "merge_slices,eliminate_dead,dedup_initializers,cse)"
)

register_preset(
    "canonicalize",
    CANONICALIZE,
    "Lossless clean-up every pipeline starts with: weights and Constant nodes as initializers, "
    "opset 17, shapes, the converter's Softmax wrappers unwrapped, then Reshape-shape "
    "resolution, constant folding, Identity/Dropout removal, Concat and Slice merging, "
    "dead-code removal, initializer dedup and CSE to a fixpoint.",
)
