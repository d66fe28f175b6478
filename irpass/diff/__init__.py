"""Structural diff of two ONNX graphs: which nodes were added, removed or changed.

:func:`diff_models` matches the nodes of graph A to the nodes of graph B and describes every
difference as data (:class:`GraphDiff`, JSON-ready through :meth:`GraphDiff.to_dict`).

Matching runs in phases, each only over nodes still unmatched, cheapest and most certain first;
every pair records the phase that found it (``method``) so a reader can judge it:

1. ``name``: equal, unique, non-empty node names.
2. ``outputs``: same op type and an equal output tensor name (exporters keep tensor names when
   node names are empty, e.g. the light model zoo).
3. ``structure``: propagation from matched anchors (graph inputs and outputs by name, matched
   nodes): the producers of matched inputs and the consumers of matched outputs pair up when
   their op types agree; *transparent* nodes present on only one side (QuantizeLinear,
   DequantizeLinear, Cast, Identity, BatchNormalization) are walked through, so a Conv still
   matches its counterpart after Q/DQ insertion or BN folding. Ties are broken by a
   similarity score (matched neighbours, Weisfeiler-Lehman neighbourhood hash, weight shapes,
   attributes).
4. ``neighbourhood``: a unique Weisfeiler-Lehman hash of the op-type neighbourhood (networkx)
   among the unmatched nodes of each side.
5. ``order`` (only with ``order_fallback=True``): remaining nodes of the same op type and
   output types aligned by topological order (difflib). Off by default: on real optimizer
   output (light-zoo Inception/DenseNet after BN folding) it pairs a removed node with an
   unrelated new one of the same shape, and such pairs then look like numeric divergence.

A matched pair lists its changes: op type, attributes, input/output shapes and dtypes, weight
shapes (pruned channels), weight dtypes and quantization (an input that now comes through a
DequantizeLinear), and weight values when both are small enough to compare. The diff also
carries the op-histogram delta, the cost delta (params, bytes, MACs through
:mod:`irpass.analysis.cost` when present), I/O signature changes, opset changes, and the
*changed regions*: small merged subgraphs around the changes for the HTML report to draw.
"""

from __future__ import annotations

from irpass.diff.compare import attach_diff, diff_models, model_summary_cost
from irpass.diff.model import (
    CONSTANT_OPS,
    TRANSPARENT_OPS,
    VALUE_COMPARE_LIMIT,
    Change,
    GraphDiff,
    IOChange,
    NodeInfo,
    NodeMatch,
    TensorInfo,
    WeightInfo,
    shapes_agree,
)

__all__ = [
    "CONSTANT_OPS",
    "TRANSPARENT_OPS",
    "VALUE_COMPARE_LIMIT",
    "Change",
    "GraphDiff",
    "IOChange",
    "NodeInfo",
    "NodeMatch",
    "TensorInfo",
    "WeightInfo",
    "attach_diff",
    "diff_models",
    "model_summary_cost",
    "shapes_agree",
]
