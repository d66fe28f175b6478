"""Float-equivalent rescaling that makes int8 grids fit better: CLE and SmoothQuant.

**Cross-layer equalization** (Nagel et al., data-free quantization) for ``A -> [Relu] -> B``
where A's output channel ``c`` is B's input channel ``c`` (Conv / Gemm / MatMul, B grouped
only depthwise): with ``r1[c]`` the range of A's weights of output channel ``c`` and ``r2[c]``
that of B's weights reading it, ``s = sqrt(r1 / r2)`` and::

    W_A[c] /= s[c];  b_A[c] /= s[c];  W_B[:, c] *= s[c]      (Relu(x / s) = Relu(x) / s)

leaves the function unchanged and gives both layers the range ``sqrt(r1 * r2)``, which is what
per-tensor weight grids (NNAPI MatMul/Gemm, ``per_channel=false``) need in depthwise-separable
nets. Repeated over the chain a few times. Pairs joined by anything but Relu (ReLU6 clips at a
fixed 6) are left alone.

**SmoothQuant** (Xiao et al.) for a linear op whose input ``X`` has a few loud channels (layer
norm outputs of transformers): with ``a[c] = max|X[c]|`` over the calibration data and
``w[c] = max|W[c, :]|`` over every linear op reading X, ``s = a**alpha / w**(1 - alpha)`` and::

    X / s  (folded into the producer)       W[c, :] * s   (folded into the weights)

moves quantization difficulty from the activation to the weights. ``1 / s`` is folded, never
inserted as a new op: into a LayerNormalization's scale and bias, or into the per-channel
constants of a Mul / Add / Sub chain (a decomposed layer norm), through Transpose, Unsqueeze,
Squeeze and Slice (channel axis tracked); any other producer leaves the op unsmoothed. Every
tensor on the folded path must be read by nothing else than the path (or the smoothed ops).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import onnx_ir as ir

from irpass.analysis.layout import WeightLayout, weight_layout
from irpass.analysis.shapes import inferred_values
from irpass.context import FeedSource

from .calibrate import calibrate
from .plan import QuantPlan

__all__ = ["cross_layer_equalize", "smooth_quant"]

logger = logging.getLogger(__name__)

_LINEAR = ("Conv", "Gemm", "MatMul")


def _const(value: ir.Value | None) -> np.ndarray | None:
    if value is None or value.is_graph_input():  # a default the user may override: not ours
        return None
    tensor = ir.convenience.get_const_tensor(value)
    return None if tensor is None else tensor.numpy()


def _set_const(node: ir.Node, slot: int, array: np.ndarray, name: str) -> None:
    """Give ``node`` a private initializer holding ``array`` at input ``slot``."""
    graph = node.graph
    assert graph is not None
    taken = set(graph.initializers)
    unique, index = name, 1
    while unique in taken:
        unique, index = f"{name}_{index}", index + 1
    value = ir.Value(
        name=unique, shape=ir.Shape(array.shape), type=ir.TensorType(ir.DataType.FLOAT)
    )
    value.const_value = ir.tensor(array.astype(np.float32), name=unique)
    graph.register_initializer(value)
    old = node.inputs[slot]
    node.replace_input_with(slot, value)
    if old is not None and old.name and old.name in graph.initializers and not old.uses():
        del graph.initializers[old.name]


def _only_reader(value: ir.Value, node: ir.Node) -> bool:
    return not value.is_graph_output() and all(user is node for user, _ in value.uses())


# ---------------------------------------------------------------------------------------- CLE
def _cle_pairs(model: ir.Model) -> list[tuple[ir.Node, ir.Node, WeightLayout, WeightLayout]]:
    pairs = []
    for first in model.graph:
        layout_a = weight_layout(first)
        if (
            layout_a is None
            or first.op_type not in _LINEAR
            or _const(first.inputs[layout_a.weight_input]) is None
        ):
            continue
        if layout_a.groups != 1 and first.op_type != "Conv":
            continue
        out = first.outputs[0]
        users = list(out.uses())
        if len(users) != 1 or out.is_graph_output():
            continue
        middle, _ = users[0]
        if middle.op_type == "Relu":
            act_out = middle.outputs[0]
            users = list(act_out.uses())
            if len(users) != 1 or act_out.is_graph_output():
                continue
        second, slot = users[0]
        layout_b = weight_layout(second)
        if layout_b is None or second.op_type not in _LINEAR or slot != layout_b.data_input:
            continue
        if _const(second.inputs[layout_b.weight_input]) is None:
            continue
        weight_b = _const(second.inputs[layout_b.weight_input])
        assert weight_b is not None
        depthwise = second.op_type == "Conv" and layout_b.groups > 1
        if layout_b.groups != 1 and not (depthwise and weight_b.shape[1] == 1):
            continue
        if first.op_type == "Conv" and layout_a.groups != 1:
            weight_a = _const(first.inputs[1])
            assert weight_a is not None
            if weight_a.shape[1] != 1:  # grouped (not depthwise) producers are skipped
                continue
        pairs.append((first, second, layout_a, layout_b))
    return pairs


def _ranges(weight: np.ndarray, axis: int) -> np.ndarray:
    reduce = tuple(i for i in range(weight.ndim) if i != axis)
    return np.max(np.abs(weight), axis=reduce)


def cross_layer_equalize(model: ir.Model, iterations: int = 4) -> int:
    """Equalize every eligible pair (see the module docstring); returns how many pairs."""
    pairs = _cle_pairs(model)
    for _ in range(iterations):
        for first, second, layout_a, layout_b in pairs:
            weight_a = _const(first.inputs[layout_a.weight_input])
            weight_b = _const(second.inputs[layout_b.weight_input])
            assert weight_a is not None and weight_b is not None
            r1 = _ranges(weight_a, layout_a.out_axis)
            depthwise = layout_b.groups > 1
            r2 = _ranges(weight_b, layout_b.out_axis if depthwise else layout_b.in_axis)
            if r1.shape != r2.shape:
                continue
            with np.errstate(divide="ignore", invalid="ignore"):
                s = np.where((r1 > 0) & (r2 > 0), np.sqrt(r1 / r2), 1.0).astype(np.float32)
            shape_a = [1] * weight_a.ndim
            shape_a[layout_a.out_axis] = -1
            shape_b = [1] * weight_b.ndim
            shape_b[layout_b.out_axis if depthwise else layout_b.in_axis] = -1
            _set_const(
                first, layout_a.weight_input, weight_a / s.reshape(shape_a), f"{first.name}_w_cle"
            )
            _set_const(
                second, layout_b.weight_input, weight_b * s.reshape(shape_b), f"{second.name}_w_cle"
            )
            if layout_a.bias_input is not None:
                bias = _const(first.inputs[layout_a.bias_input])
                if bias is not None:
                    _set_const(first, layout_a.bias_input, bias / s, f"{first.name}_b_cle")
    return len(pairs)


# --------------------------------------------------------------------------------- SmoothQuant
Action = Callable[[np.ndarray], None]


@dataclasses.dataclass
class _Folder:
    """Plans how to divide a tensor by ``s`` along a channel axis in its producers."""

    ranks: dict[str, int]

    def rank(self, value: ir.Value) -> int | None:
        if value.shape is not None:
            return len(value.shape)
        return self.ranks.get(value.name or "")

    def plan(self, value: ir.Value, axis: int, readers: set[int]) -> list[Action] | None:
        """Actions that divide ``value`` by ``s`` (given later), or None when impossible."""
        rank = self.rank(value)
        if rank is None:
            return None
        axis %= rank
        node = value.producer()
        if node is None or value.is_graph_output():
            return None
        if any(id(user) not in readers for user, _ in value.uses()):
            return None
        mine = {id(node)}
        op = node.op_type
        if op == "LayerNormalization":
            norm_axis = int(node.attributes["axis"].as_int()) if "axis" in node.attributes else -1
            if norm_axis % rank != rank - 1 or axis != rank - 1:
                return None
            return self._scale_consts(node, [1, 2], rank, axis)
        if op in ("Add", "Sub"):
            actions: list[Action] = []
            for slot in (0, 1):
                operand = node.inputs[slot]
                if operand is None:
                    return None
                if _const(operand) is not None:
                    scaled = self._scale_consts(node, [slot], rank, axis)
                    if scaled is None:
                        return None
                    actions += scaled
                else:
                    inner = self._operand(operand, axis, rank, mine)
                    if inner is None:
                        return None
                    actions += inner
            return actions
        if op == "Mul":
            for slot in (1, 0):
                if _const(node.inputs[slot]) is not None:
                    return self._scale_consts(node, [slot], rank, axis)
            for slot in (0, 1):
                operand = node.inputs[slot]
                if operand is None:
                    continue
                inner = self._operand(operand, axis, rank, mine)
                if inner is not None:
                    return inner
            return None
        if op == "Transpose":
            perm = node.attributes.get("perm")
            if perm is None:
                return None
            source = node.inputs[0]
            return None if source is None else self.plan(source, list(perm.as_ints())[axis], mine)
        if op in ("Unsqueeze", "Squeeze"):
            axes = _const(node.inputs[1]) if len(node.inputs) > 1 else None
            source = node.inputs[0]
            source_rank = self.rank(source) if source is not None else None
            if axes is None or source is None or source_rank is None:
                return None
            if op == "Unsqueeze":
                inserted = sorted(int(a) % rank for a in axes.reshape(-1))
                if axis in inserted:
                    return None
                return self.plan(source, axis - sum(1 for a in inserted if a < axis), mine)
            removed = sorted(int(a) % source_rank for a in axes.reshape(-1))
            source_axis = axis
            for a in removed:
                if a <= source_axis:
                    source_axis += 1
            return self.plan(source, source_axis, mine)
        if op == "Slice":
            source = node.inputs[0]
            bounds = [_const(node.inputs[i]) if len(node.inputs) > i else None for i in range(1, 5)]
            starts, ends, axes, steps = bounds
            if source is None or starts is None or ends is None:
                return None
            axes = np.arange(starts.size) if axes is None else axes.reshape(-1) % rank
            steps = np.ones(starts.size, np.int64) if steps is None else steps.reshape(-1)
            dim = source.shape[axis] if source.shape is not None else None
            whole = dim if isinstance(dim, int) else 10**9  # "to the end" as exporters write it
            for k in np.nonzero(axes == axis)[0]:  # the channel axis must be kept whole
                if starts.reshape(-1)[k] != 0 or steps[k] != 1 or ends.reshape(-1)[k] < whole:
                    return None
            return self.plan(source, axis, mine)
        return None

    def _operand(
        self, operand: ir.Value, axis: int, rank: int, readers: set[int]
    ) -> list[Action] | None:
        """Plan for an operand of a broadcasting op (its rank may be lower than the output's)."""
        operand_rank = self.rank(operand)
        if operand_rank is None or axis - (rank - operand_rank) < 0:
            return None  # the operand is broadcast along the channel axis: it cannot be divided
        return self.plan(operand, axis - (rank - operand_rank), readers)

    def _scale_consts(
        self, node: ir.Node, slots: Sequence[int], rank: int, axis: int
    ) -> list[Action] | None:
        actions: list[Action] = []
        for slot in slots:
            if slot >= len(node.inputs) or node.inputs[slot] is None:
                continue
            array = _const(node.inputs[slot])
            if array is None or array.ndim > rank:
                return None
            channel = axis - (rank - array.ndim)

            def act(
                s: np.ndarray,
                node: ir.Node = node,
                slot: int = slot,
                array: np.ndarray = array,
                channel: int = channel,
            ) -> None:
                if channel < 0:  # lower rank than the channel axis: broadcast it up first
                    array = array.reshape((1,) * (-channel) + array.shape)
                    channel = 0
                shape = [1] * array.ndim
                shape[channel] = -1
                _set_const(node, slot, array / s.reshape(shape), f"{node.name}_smoothed")

            actions.append(act)
        return actions


def _in_axis_shape(layout: WeightLayout, weight: np.ndarray) -> list[int]:
    shape = [1] * weight.ndim
    shape[layout.in_axis] = -1
    return shape


def smooth_quant(
    model: ir.Model, plan: QuantPlan, source: FeedSource, alpha: float, stats: Any
) -> int:
    """Smooth every eligible group of linear ops sharing an input; returns how many groups."""
    ranks = {
        name: len(shape) for name, (shape, _) in inferred_values(model).items() if shape is not None
    }
    folder = _Folder(ranks)
    by_name = {node.name: node for node in model.graph}
    groups: dict[str, list[tuple[ir.Node, WeightLayout]]] = {}
    for node_plan in plan.linear():
        node = by_name[node_plan.name]
        layout = weight_layout(node)
        if layout is None or layout.groups != 1:
            continue
        data = node.inputs[layout.data_input]
        if data is not None and data.name:
            groups.setdefault(data.name, []).append((node, layout))
    candidates = {}
    for name, members in groups.items():
        value = members[0][0].inputs[members[0][1].data_input]
        assert value is not None
        readers = {id(node) for node, _ in members}
        axis = members[0][1].act_in_axis
        if any(
            m[1].act_in_axis % (folder.rank(value) or 1) != axis % (folder.rank(value) or 1)
            for m in members
        ):
            continue
        actions = folder.plan(value, axis, readers)
        if actions:
            candidates[name] = (members, actions, axis)
    if not candidates:
        return 0
    measured = calibrate(
        model,
        list(candidates),
        source,
        channel_axes={n: c[2] for n, c in candidates.items()},
        bins=8,
    )
    smoothed = 0
    for name, (members, actions, _axis) in candidates.items():
        channels = measured.channels.get(name)
        if channels is None or channels.absmax is None:
            continue
        act_max = channels.absmax.astype(np.float64)
        weight_max = np.zeros_like(act_max)
        for node, layout in members:
            weight = _const(node.inputs[layout.weight_input])
            assert weight is not None
            per_in = _ranges(weight, layout.in_axis)
            if per_in.shape != weight_max.shape:
                break
            weight_max = np.maximum(weight_max, per_in)
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                s = np.where(
                    (act_max > 0) & (weight_max > 0),
                    act_max**alpha / weight_max ** (1.0 - alpha),
                    1.0,
                )
            s = np.clip(s, 1e-4, 1e4).astype(np.float32)
            for action in actions:
                action(s)
            for node, layout in members:
                weight = _const(node.inputs[layout.weight_input])
                assert weight is not None
                scaled = weight * s.reshape(_in_axis_shape(layout, weight))
                _set_const(node, layout.weight_input, scaled, f"{node.name}_w_smoothed")
            smoothed += 1
    stats["smoothed_inputs"] = smoothed
    return smoothed
