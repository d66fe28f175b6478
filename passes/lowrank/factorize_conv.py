"""Factorize Conv layers into a thin Conv and a 1x1 Conv (or kx1 and 1xk), by truncated SVD.

Channel SVD (default). Seen as a matrix, a Conv maps each receptive field ``x`` (C_in/g k...
values) to C_out/g outputs per group: ``W_g`` is ``W[group rows].reshape(C_out/g, -1)``. With
``W_g ~ A_g B_g`` at rank r::

    Conv(x, W[C_out, C_in/g, k...], bias, group=g, <attrs>)
      -> Conv(Conv(x, B[g*r, C_in/g, k...], group=g, <attrs>),     kxk, same strides/pads
              A[C_out, r, 1...], bias, group=g)                      1x1

A grouped Conv is factorized per group, exactly (both new Convs keep ``group=g``); a
depthwise Conv (one input channel per group) never saves anything and is left alone.

Spatial SVD (``spatial=true``, 2-D, group 1, kh and kw > 1). Seen as
``M[(o, j), (c, i)] = W[o, c, i, j]`` (C_out kw x C_in kh), ``M ~ A B`` gives::

    Conv(x, W, bias, strides=(sh, sw), dilations=(dh, dw), pads=(t, l, b, r))
      -> Conv(Conv(x, V[r, C_in, kh, 1], strides=(sh, 1), dilations=(dh, 1), pads=(t, 0, b, 0)),
              H[C_out, r, 1, kw], bias, strides=(1, sw), dilations=(1, dw), pads=(0, l, 0, r))

The zero columns the second Conv pads in are what the first Conv makes of zero columns (it has
no bias), so this is exact at full rank. Its data-aware mode whitens with the covariance of
the vertical (kh x 1) patches: the cross-terms between horizontal taps are not modelled.

The bias stays on the second Conv; data-aware bias correction adds the mean output error to
it. ``auto_pad=SAME_*`` is kept on the first Conv of the channel split; the spatial split needs
it as explicit pads, so it requires static input spatial sizes.

Left alone: ConvTranspose, Conv whose weight is not a private float constant, depthwise Convs,
spatial split of 1-D/3-D or grouped Convs (the channel split is used for them instead).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from typing import ClassVar

import numpy as np
import onnx_ir as ir

from irpass.analysis.layout import WeightLayout, weight_layout
from irpass.passes.lowrank.layer import Candidate, attr_ints, layer_name, private_constant
from irpass.passes.lowrank.moments import conv_patches, same_pads
from irpass.passes.lowrank.plan import LowRankPass
from irpass.registry import register

__all__ = [
    "ConvCandidate",
    "FactorizeConvPass",
    "SpatialConvCandidate",
    "conv_geometry",
    "find_conv_candidates",
]

logger = logging.getLogger(__name__)

#: Output positions per calibration sample whose receptive fields feed the input statistics.
STAT_POSITIONS = 64


def _attr_str(node: ir.Node, name: str, default: str) -> str:
    attr = node.attributes.get(name)
    if attr is None:
        return default
    value = attr.as_string()
    return value.decode() if isinstance(value, bytes) else str(value)


def conv_geometry(
    node: ir.Node, kernel: Sequence[int], spatial: Sequence[int] | None
) -> tuple[list[int], list[int], list[int] | None]:
    """(strides, dilations, pads) of a Conv; pads None when auto_pad needs unknown sizes."""
    dims = len(kernel)
    strides = attr_ints(node, "strides") or [1] * dims
    dilations = attr_ints(node, "dilations") or [1] * dims
    auto_pad = _attr_str(node, "auto_pad", "NOTSET")
    if auto_pad in ("NOTSET", ""):
        pads = attr_ints(node, "pads") or [0] * (2 * dims)
    elif auto_pad == "VALID":
        pads = [0] * (2 * dims)
    elif spatial is not None:
        pads = same_pads(spatial, kernel, strides, dilations, auto_pad)
    else:
        return strides, dilations, None
    return strides, dilations, pads


def _static_spatial(value: ir.Value) -> list[int] | None:
    shape = value.shape
    if shape is None or len(shape) < 3:
        return None
    dims = list(shape[2:])
    static = [d for d in dims if isinstance(d, int)]
    return static if len(static) == len(dims) else None


class ConvCandidate(Candidate):
    """Conv kxk (C_in -> C_out, group g) -> Conv kxk (C_in -> g r) + Conv 1x1 (g r -> C_out)."""

    kind: ClassVar[str] = "conv"

    @property
    def kernel(self) -> list[int]:
        """Kernel spatial shape."""
        return [int(k) for k in self.weight.shape[2:]]

    def _matrices(self) -> np.ndarray:
        # Conv weights are (out, in / g, k...) (layout axes 0 and 1): rows by group.
        groups = self.layout.groups
        w = self.weight.astype(np.float64)
        return w.reshape(groups, w.shape[self.layout.out_axis] // groups, -1)

    def vectors(self, activation: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """Receptive fields (im2col rows) of each group's input channels."""
        strides, dilations, pads = conv_geometry(self.node, self.kernel, activation.shape[2:])
        assert pads is not None
        groups = self.layout.groups
        per_group = activation.shape[1] // groups
        for g in range(groups):
            part = activation[:, g * per_group : (g + 1) * per_group]
            for rows in conv_patches(part, self.kernel, strides, dilations, pads,
                                     max_positions=STAT_POSITIONS):
                yield g, rows

    def rewrite(
        self,
        factors: Sequence[tuple[np.ndarray, np.ndarray]],
        correction: np.ndarray | None,
        taken: set[str],
    ) -> list[ir.Node]:
        """A thin kxk Conv (original attributes) and a 1x1 Conv with the bias."""
        groups = self.layout.groups
        rank = factors[0][1].shape[0]
        c_in_per_group = self.weight.shape[1]
        first_w = np.concatenate([b for _, b in factors]).reshape(
            groups * rank, c_in_per_group, *self.kernel)
        second_w = np.concatenate([a for a, _ in factors]).reshape(
            self.weight.shape[0], rank, *([1] * len(self.kernel)))
        # The thin kxk Conv keeps every attribute (strides, pads, auto_pad, group, ...).
        attrs = [ir.Attr(a.name, a.type, a.value) for a in self.node.attributes.values()]
        first = ir.Node("", "Conv",
                        [self.activation, self.initializer(first_w, ".lowrank_b", taken)],
                        attrs, name=f"{self.name}/lowrank_in")
        bias = _bias_with(self, correction, taken)
        second_attrs: dict[str, object] = {"kernel_shape": [1] * len(self.kernel)}
        if groups > 1:
            second_attrs["group"] = groups
        inputs = [first.outputs[0], self.initializer(second_w, ".lowrank_a", taken)]
        second = self.make_node("Conv", inputs + ([bias] if bias is not None else []),
                            "/lowrank_out", second_attrs)
        nodes = [first, second]
        self.replace_with(nodes)
        return nodes


def _bias_with(cand: Candidate, correction: np.ndarray | None, taken: set[str]) -> ir.Value | None:
    """The Conv's bias with ``correction`` (one value per output channel) added, if given."""
    bias = cand.node.inputs[2] if len(cand.node.inputs) > 2 else None
    if correction is None:
        return bias
    c = correction.reshape(-1)
    if bias is None:
        return cand.initializer(c, ".lowrank_c", taken)
    array = private_constant(bias, cand.node)
    # _candidate refuses Convs whose bias is not a private constant.
    assert not isinstance(array, str), array
    folded = (array.astype(np.float64) + c).astype(array.dtype)
    bias.const_value = ir.tensor(folded, name=bias.name)
    return bias


class SpatialConvCandidate(Candidate):
    """2-D Conv kh x kw -> Conv kh x 1 (C_in -> r) + Conv 1 x kw (r -> C_out)."""

    kind: ClassVar[str] = "conv_spatial"

    def __init__(
        self, node: ir.Node, layout: WeightLayout, weight: np.ndarray, pads: list[int]
    ) -> None:
        self.pads = pads
        super().__init__(node, layout, weight)

    def _matrices(self) -> np.ndarray:
        c_out, c_in, kh, kw = self.weight.shape
        w = self.weight.astype(np.float64).transpose(0, 3, 1, 2)
        return w.reshape(1, c_out * kw, c_in * kh)

    def _geometry(self) -> tuple[list[int], list[int]]:
        kh, kw = self.weight.shape[2:]
        strides, dilations, _ = conv_geometry(self.node, [kh, kw], None)
        return strides, dilations

    def mac_ratio(self, rank: int) -> float:
        """Both Convs' MACs over the original's; the kx1 Conv runs on every input column."""
        c_out, c_in, kh, kw = (int(d) for d in self.weight.shape)
        strides, _ = self._geometry()
        spatial = _static_spatial(self.activation)
        out_shape = self._output_shape
        if spatial is not None and out_shape is not None and isinstance(out_shape[-1], int):
            columns_in, columns_out = spatial[1], int(out_shape[-1])
        else:
            columns_in, columns_out = strides[1], 1  # per output column, sw input columns
        first = columns_in * rank * c_in * kh
        second = columns_out * c_out * rank * kw
        return (first + second) / (columns_out * c_out * c_in * kh * kw)

    def params_at(self, rank: int) -> int:
        """``r (C_in kh + C_out kw)``."""
        c_out, c_in, kh, kw = (int(d) for d in self.weight.shape)
        return rank * (c_in * kh + c_out * kw)

    def vectors(self, activation: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """Vertical patches (kh x 1) of every input column the first Conv reads."""
        kh = int(self.weight.shape[2])
        strides, dilations = self._geometry()
        top, _, bottom, _ = self.pads
        for rows in conv_patches(activation, [kh, 1], [strides[0], 1], [dilations[0], 1],
                                 [top, 0, bottom, 0], max_positions=STAT_POSITIONS):
            yield 0, rows

    def rewrite(
        self,
        factors: Sequence[tuple[np.ndarray, np.ndarray]],
        correction: np.ndarray | None,
        taken: set[str],
    ) -> list[ir.Node]:
        """Conv kh x 1 then Conv 1 x kw (bias, horizontal strides and pads)."""
        (a, b), = factors
        c_out, c_in, kh, kw = (int(d) for d in self.weight.shape)
        rank = b.shape[0]
        strides, dilations = self._geometry()
        top, left, bottom, right = self.pads
        vertical = b.reshape(rank, c_in, kh, 1)
        horizontal = a.reshape(c_out, kw, rank).transpose(0, 2, 1).reshape(c_out, rank, 1, kw)
        first = self.make_node(
            "Conv", [self.activation, self.initializer(vertical, ".lowrank_v", taken)],
            "/lowrank_in",
            {"kernel_shape": [kh, 1], "strides": [strides[0], 1],
             "dilations": [dilations[0], 1], "pads": [top, 0, bottom, 0]},
        )
        # Output channel o collects the errors of rows (o, j) over the kw horizontal taps.
        c = None if correction is None else correction.reshape(c_out, kw).sum(axis=1)
        bias = _bias_with(self, c, taken)
        inputs = [first.outputs[0], self.initializer(horizontal, ".lowrank_h", taken)]
        if bias is not None:
            inputs.append(bias)
        second = self.make_node(
            "Conv", inputs, "/lowrank_out",
            {"kernel_shape": [1, kw], "strides": [1, strides[1]],
             "dilations": [1, dilations[1]], "pads": [0, left, 0, right]},
        )
        nodes = [first, second]
        self.replace_with(nodes)
        return nodes


def find_conv_candidates(
    graph: ir.Graph, spatial: bool = False
) -> tuple[list[Candidate], dict[str, str]]:
    """Conv nodes of ``graph`` that can be factorized, and why the others cannot."""
    found: list[Candidate] = []
    refused: dict[str, str] = {}
    for node in graph:
        if node.op_type not in ("Conv", "ConvTranspose") or node.domain not in ("", "ai.onnx"):
            continue
        result = _candidate(node, spatial)
        if isinstance(result, str):
            refused[layer_name(node)] = result
            logger.debug("not factorizing %s: %s", node.name, result)
        else:
            found.append(result)
    return found, refused


def _candidate(node: ir.Node, spatial: bool) -> Candidate | str:
    if node.op_type == "ConvTranspose":
        return "ConvTranspose is not factorized"
    layout = weight_layout(node)
    if layout is None:
        return "weight of unknown rank"
    weight = private_constant(node.inputs[1], node)
    if isinstance(weight, str):
        return f"weight {weight}"
    if len(node.inputs) > 2 and node.inputs[2] is not None:
        bias = private_constant(node.inputs[2], node)
        if isinstance(bias, str):
            return f"bias {bias}"
    data = node.inputs[0]
    if data is None:
        return "no data input"
    if layout.groups > 1 and weight.shape[1] == 1:
        return "depthwise Conv (one input channel per group) cannot save anything"
    if weight.shape[0] % layout.groups:
        return f"{weight.shape[0]} output channels do not split into {layout.groups} groups"
    kernel = [int(k) for k in weight.shape[2:]]
    if spatial and len(kernel) == 2 and layout.groups == 1 and min(kernel) > 1:
        _, _, pads = conv_geometry(node, kernel, _static_spatial(data))
        if pads is not None:
            return SpatialConvCandidate(node, layout, weight, pads)
        logger.debug("%s: auto_pad needs static sizes for the spatial split; channel split",
                     node.name)
    if math.prod(weight.shape[1:]) < 2:
        return "a single input feature per output has nothing to factorize"
    return ConvCandidate(node, layout, weight)


@register
class FactorizeConvPass(LowRankPass):
    """Factorize Conv layers into a thin Conv and a 1x1 Conv (or kx1 + 1xk) by SVD.

    Options as in ``svd``; Gemm/MatMul layers are left alone (``factorize_gemm`` / ``svd``).
    """

    name = "factorize_conv"

    def find(self, graph: ir.Graph) -> tuple[list[Candidate], dict[str, str]]:  # noqa: D102
        return find_conv_candidates(graph, spatial=self.options.spatial)
