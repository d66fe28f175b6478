"""Merge initializers with equal dtype, shape and content into one.

    <float[64] a = {0.02, ...}, float[64] b = {0.02, ...}>  y = Add(Mul(x, a), b)
    -> <float[64] a = {...}>                                 y = Add(Mul(x, a), a)

Each graph (main graph and every If/Loop/Scan body) is deduplicated on its own. Candidates are
first grouped by (dtype, shape), so only tensors that could be equal are looked at; within a
group a fingerprint of ~4096 sampled elements narrows the candidates and an exact comparison
of the bit patterns decides (no hash-collision risk, -0.0 and 0.0 stay apart). On a model whose
weights all have distinct shapes nothing is read at all. Left alone: initializers that are
graph inputs (a caller may override them) or graph outputs, and tensors whose data is not
loaded.

onnx-ir's ``DeduplicateInitializersPass`` skips tensors above 1024 elements and its hashed
variant hashes every tensor; the light model zoo needs the large ones merged (every weight is
0.02, so same-shaped weights merge and CSE can then merge the parallel convolutions).
"""

from __future__ import annotations

import collections
import hashlib
import logging

import numpy as np
import onnx_ir as ir

from irpass.pass_base import IrpassPass
from irpass.registry import register

__all__ = ["DeduplicateInitializersPass"]

logger = logging.getLogger(__name__)


_SAMPLE = 4096


def _fingerprint(tensor: ir.TensorProtocol) -> bytes:
    """A cheap key: a hash of at most ~4096 evenly spaced elements (equal data, equal key)."""
    if tensor.dtype == ir.DataType.STRING:
        return hashlib.sha256(b"\0".join(tensor.string_data())).digest()  # type: ignore[attr-defined]
    flat = tensor.numpy().reshape(-1)
    step = max(1, flat.size // _SAMPLE)
    return hashlib.sha256(np.ascontiguousarray(flat[::step]).tobytes()).digest()


def _equal(a: ir.TensorProtocol, b: ir.TensorProtocol) -> bool:
    if a.dtype == ir.DataType.STRING:
        return list(a.string_data()) == list(b.string_data())  # type: ignore[attr-defined]
    x, y = a.numpy(), b.numpy()
    if x.dtype.kind in "fc":  # compare bit patterns: -0.0 != 0.0 and NaN payloads matter
        x = x.view(np.dtype(f"u{x.dtype.itemsize}")) if x.dtype.itemsize in (1, 2, 4, 8) else x
        y = y.view(np.dtype(f"u{y.dtype.itemsize}")) if y.dtype.itemsize in (1, 2, 4, 8) else y
    return bool(np.array_equal(x, y))


def _dedup_graph(graph: ir.Graph) -> int:
    protected = set(graph.inputs) | set(graph.outputs)
    groups: dict[tuple[object, ...], list[ir.Value]] = collections.defaultdict(list)
    for value in graph.initializers.values():
        tensor = value.const_value
        if tensor is None or value in protected:
            continue
        groups[(tensor.dtype, tuple(tensor.shape))].append(value)
    merged = 0
    for values in groups.values():
        if len(values) < 2:
            continue
        kept_by_key: dict[bytes, list[ir.Value]] = collections.defaultdict(list)
        for value in values:
            assert value.const_value is not None
            candidates = kept_by_key[_fingerprint(value.const_value)]
            kept = next(
                (k for k in candidates if _equal(k.const_value, value.const_value)),  # type: ignore[arg-type]
                None,
            )
            if kept is None:
                candidates.append(value)
                continue
            value.replace_all_uses_with(kept)
            assert value.name is not None
            del graph.initializers[value.name]
            merged += 1
            logger.debug("initializer %s merged into %s", value.name, kept.name)
    return merged


@register
class DeduplicateInitializersPass(IrpassPass):
    """Merge initializers of equal dtype, shape and content (per graph, any size)."""

    name = "dedup_initializers"
    lossless = True
    recurses_into_subgraphs = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Deduplicate the initializers of every graph."""
        merged = sum(_dedup_graph(graph) for graph in list(model.graphs()))
        if merged:
            self.stats["initializers_merged"] += merged
        return ir.passes.PassResult(model, modified=merged > 0)
