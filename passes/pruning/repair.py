"""Training-free repair: refit the consumers of pruned channels on calibration activations.

A consumer ``y = W x + b`` (Conv with ``group=1``, Gemm, MatMul with a constant weight) that
lost input channels ``R`` is repaired in two steps, both on calibration data:

1. bias fold: the removed channels' mean contribution moves into the bias::

       b' = b + sum_{c in R} W[:, c] * mean(x_c)        (for a Conv: the mean of every
                                                          kernel tap, padding included)

2. ridge least squares: with ``X`` the consumer's input in the *pruned* model (so upstream
   errors are compensated, not compounded) and ``Y`` its output in the *original* model
   (kept output channels only), solve::

       min_{W', b'} ||Y - X W' - b'||^2 + lambda ||W' - W_fold||^2

   ``lambda = max(ridge, features / (4 rows)) * mean(diag(X^T X))``: with few calibration rows
   for many input features the shrinkage grows, so the refit does not memorize the
   calibration set. Shrinking towards the bias-folded weights rather than towards zero keeps
   a layer near its trained solution where the data say little.

Only ``X^T X``, ``X^T Y`` and ``Y^T Y`` are accumulated (streamed batch by batch with
``irpass.analysis.activations.iter_activations``), so memory is bounded by the layer's
fan-in, not by the data. The original model runs once; its target rows (at most
``rows_per_batch`` per batch and layer: a seeded subset of a convolution's positions) wait in
a temporary folder. Consumers are refitted in topological waves, each one pass through the
pruned model with every upstream wave already repaired. Each layer's relative
reconstruction error ``||Y - Y_hat||^2 / ||Y||^2`` on the calibration data is reported
before repair, after the fold and after the refit; the refit never increases it on that data
(the ridge objective is minimized, and ``W_fold`` has no penalty).

Left alone, with the reason recorded: grouped / depthwise convolutions, ConvTranspose, a
weight shared with another node, Gemm with ``alpha``/``beta`` other than 1 or ``transA``,
non-float weights, values inside subgraphs, and refits wider than ``max_features`` inputs
(those still get the bias fold).
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import tempfile
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import networkx as nx
import numpy as np
import onnx_ir as ir
from numpy.lib.stride_tricks import sliding_window_view

from irpass.analysis.activations import iter_activations
from irpass.analysis.channels import constant_array, node_label
from irpass.analysis.layout import weight_layout

__all__ = ["LayerRepair", "conv_patches", "repair_consumers"]

logger = logging.getLogger(__name__)

Masks = Mapping[tuple[ir.Value, int], np.ndarray]
FeedSource = Callable[[], Iterable[Mapping[str, np.ndarray]]]


@dataclasses.dataclass
class LayerRepair:
    """What repair did to one consumer (one entry of the report's per-layer table)."""

    node: str
    inputs_kept: int
    inputs_total: int
    outputs: int
    samples: int = 0
    error_pruned: float | None = None
    error_bias_fold: float | None = None
    error_refit: float | None = None
    status: str = "refit"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dataclasses.asdict(self)


def conv_patches(x: np.ndarray, node: ir.Node, kernel: tuple[int, ...]) -> np.ndarray:
    """im2col: rows ``[positions, C * prod(kernel)]`` with ``conv(x) = rows @ W.reshape(M, -1).T``.

    Honours ``pads`` / ``auto_pad``, ``strides`` and ``dilations`` of a Conv node (any number
    of spatial dims); columns are ordered channel-major like the flattened weight.
    """
    nd = len(kernel)
    spatial = x.shape[2:]
    strides = _ints(node, "strides") or [1] * nd
    dilations = _ints(node, "dilations") or [1] * nd
    extent = [(k - 1) * d + 1 for k, d in zip(kernel, dilations, strict=True)]
    pads = _ints(node, "pads") or [0] * (2 * nd)
    auto_pad = node.attributes.get_string("auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = [0] * (2 * nd)
        for i in range(nd):
            out = -(-spatial[i] // strides[i])
            total = max((out - 1) * strides[i] + extent[i] - spatial[i], 0)
            small, large = total // 2, total - total // 2
            pads[i], pads[i + nd] = (small, large) if auto_pad == "SAME_UPPER" else (large, small)
    elif auto_pad == "VALID":
        pads = [0] * (2 * nd)
    padded = np.pad(x, [(0, 0), (0, 0)] + [(pads[i], pads[i + nd]) for i in range(nd)])
    windows = sliding_window_view(padded, extent, axis=tuple(range(2, 2 + nd)))
    index = (slice(None), slice(None), *(slice(None, None, s) for s in strides))
    index += tuple(slice(None, None, d) for d in dilations)
    windows = windows[index]  # [N, C, *out, *kernel]
    order = (0, *range(2, 2 + nd), 1, *range(2 + nd, 2 + 2 * nd))
    moved = windows.transpose(order)
    return moved.reshape(-1, x.shape[1] * int(np.prod(kernel)))


def _ints(node: ir.Node, name: str) -> list[int] | None:
    attr = node.attributes.get(name)
    return None if attr is None else [int(v) for v in attr.as_ints()]


@dataclasses.dataclass
class _Layer:
    node: ir.Node
    kind: str  # conv | dense
    x: ir.Value
    y: ir.Value  # the output the refit matches (a MatMul's bias Add, when it has one)
    x_axis: int
    y_axis: int
    out_axis: int  # output axis of the weight tensor
    in_mask: np.ndarray
    out_mask: np.ndarray
    weight: np.ndarray  # pruned, as [outputs, input features] (conv: [M', C' * k])
    bias: np.ndarray  # pruned bias (zeros when none)
    bias_value: ir.Value | None  # where the bias lives (None: added for Conv / Gemm)
    intercept: bool  # whether the layer can hold a bias
    kernel: tuple[int, ...]
    report: LayerRepair
    original_weight: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))


def _as_matrix(weight: np.ndarray, out_axis: int) -> np.ndarray:
    """A weight as [outputs, input features] (conv: channel-major, then kernel taps)."""
    moved = np.moveaxis(weight, out_axis, 0)
    return moved.reshape(moved.shape[0], -1).astype(np.float64)


def _trailing_bias(node: ir.Node, outputs: int) -> tuple[ir.Value, ir.Value] | None:
    """``(Add output, bias constant)`` when a MatMul's only consumer adds a private bias."""
    y = node.outputs[0]
    uses = list(y.uses())
    if len(uses) != 1 or y.is_graph_output():
        return None
    add, _ = uses[0]
    if add.op_type != "Add" or add.domain not in ("", "ai.onnx") or len(add.inputs) != 2:
        return None
    other = add.inputs[1] if add.inputs[0] is y else add.inputs[0]
    array = constant_array(other)
    if other is None or array is None or array.size != outputs or len(other.uses()) != 1:
        return None
    if array.ndim and array.shape[-1] != outputs:
        return None
    return add.outputs[0], other


def _find_layers(model: ir.Model, masks: Masks, report: list[LayerRepair]) -> list[_Layer]:
    """Consumers of pruned channels in the main graph; the others are reported as skipped."""
    layers = []
    for node in model.graph:
        layout = weight_layout(node)
        if layout is None or layout.weight_input != 1:
            continue
        x, w, y = node.inputs[0], node.inputs[1], node.outputs[0]
        weight = constant_array(w)
        if x is None or w is None or weight is None:
            continue
        # the data rank: a Conv's is its weight's, a Gemm's is 2, a MatMul's axes are negative
        rank = weight.ndim if node.op_type in ("Conv", "ConvTranspose") else 2
        x_axis = layout.act_in_axis if layout.act_in_axis < 0 else layout.act_in_axis - rank
        in_mask = masks.get((x, x_axis))
        if in_mask is None or in_mask.all():
            continue
        entry = LayerRepair(node_label(node), int(in_mask.sum()), int(in_mask.size), 0)
        report.append(entry)
        reason = _unsupported(node, layout, w, weight)
        if reason:
            entry.status = f"skipped: {reason}"
            continue
        y_axis = layout.act_out_axis if layout.act_out_axis < 0 else layout.act_out_axis - rank
        outputs = int(weight.shape[layout.out_axis])
        out_mask = masks.get((y, y_axis), np.ones(outputs, dtype=bool))
        entry.outputs = int(out_mask.sum())
        bias_value = node.inputs[2] if len(node.inputs) > 2 else None
        intercept = True
        target = y
        if node.op_type == "MatMul":
            trailing = _trailing_bias(node, outputs)
            intercept = trailing is not None
            if trailing is not None:
                target, bias_value = trailing
        bias = constant_array(bias_value) if bias_value is not None else None
        if bias_value is not None and bias is None:
            entry.status = "skipped: the bias is not a constant"
            continue
        matrix = _as_matrix(weight, layout.out_axis)
        kernel = tuple(weight.shape[2:]) if node.op_type == "Conv" else ()
        bias64 = np.zeros(outputs) if bias is None else bias.reshape(-1).astype(np.float64)
        layers.append(
            _Layer(
                node,
                "conv" if node.op_type == "Conv" else "dense",
                x,
                target,
                x_axis,
                y_axis,
                layout.out_axis,
                in_mask,
                out_mask,
                matrix,
                bias64,
                bias_value,
                intercept,
                kernel,
                entry,
            )
        )
    return layers


def _unsupported(node: ir.Node, layout: Any, w: ir.Value, weight: np.ndarray) -> str | None:
    if node.op_type == "ConvTranspose":
        return "ConvTranspose"
    if layout.groups != 1:
        return "grouped convolution"
    if weight.dtype.kind != "f":
        return "non-float weight"
    if len(w.uses()) > 1 or w.is_graph_output():
        return "weight shared with another node"
    attrs = node.attributes
    if node.op_type == "Gemm" and (
        (attrs["transA"].as_int() if "transA" in attrs else 0)
        or (attrs["alpha"].as_float() if "alpha" in attrs else 1.0) != 1.0
        or (attrs["beta"].as_float() if "beta" in attrs else 1.0) != 1.0
    ):
        return "Gemm with transA, alpha or beta"
    if node.op_type == "MatMul" and weight.ndim != 2:
        return "batched MatMul weight"
    return None


def _waves(model: ir.Model, layers: list[_Layer]) -> list[list[_Layer]]:
    """Group layers so that no layer is upstream of another in its wave."""
    graph = nx.DiGraph()
    for node in model.graph:
        for value in node.outputs:
            for user, _ in value.uses():
                graph.add_edge(id(node), id(user))
    by_id = {id(layer.node): layer for layer in layers}
    level: dict[int, int] = {}
    for layer in layers:  # graph order is topological
        upstream = nx.ancestors(graph, id(layer.node)) if id(layer.node) in graph else set()
        level[id(layer.node)] = 1 + max(
            (level[u] for u in upstream if u in by_id and u in level), default=-1
        )
    waves: dict[int, list[_Layer]] = {}
    for layer in layers:
        waves.setdefault(level[id(layer.node)], []).append(layer)
    return [waves[k] for k in sorted(waves)]


def _features(layer: _Layer, x: np.ndarray) -> np.ndarray:
    """Rows of layer inputs: conv patches, or the channel axis moved last and flattened."""
    if layer.kind == "conv":
        return conv_patches(x, layer.node, layer.kernel)
    moved = np.moveaxis(x, layer.x_axis, -1)
    return moved.reshape(-1, moved.shape[-1])


def _targets(layer: _Layer, y: np.ndarray) -> np.ndarray:
    moved = np.moveaxis(y, layer.y_axis, -1)
    return moved.reshape(-1, moved.shape[-1])[:, layer.out_mask]


@dataclasses.dataclass
class _Stats:
    xtx: np.ndarray | None = None
    xty: np.ndarray | None = None
    yty: float = 0.0
    removed_sum: np.ndarray | None = None
    rows: int = 0

    @property
    def removed_mean(self) -> np.ndarray:
        assert self.removed_sum is not None
        return self.removed_sum / max(self.rows, 1)


def _fits(layer: _Layer, max_features: int) -> bool:
    return _features_width(layer) + int(layer.intercept) <= max_features


def _record_targets(
    original: ir.Model,
    layers: list[_Layer],
    source: FeedSource,
    max_samples: int | None,
    rows_per_batch: int,
    folder: pathlib.Path,
) -> dict[int, _Stats]:
    """One pass through the original model: each layer's target rows go to ``folder``.

    Per batch and layer, at most ``rows_per_batch`` rows are kept (a seeded random subset of a
    convolution's positions); the removed input channels' sums feed the bias fold.
    """
    names = sorted({n for layer in layers for n in (layer.x.name, layer.y.name) if n})
    stats = {id(layer.node): _Stats() for layer in layers}
    batches = iter_activations(original, names, source, max_samples=max_samples)
    for number, batch in enumerate(batches):
        rng = np.random.default_rng(number)
        for index, layer in enumerate(layers):
            entry = stats[id(layer.node)]
            y = _targets(layer, np.asarray(batch[layer.y.name or ""], dtype=np.float64))
            rows = np.arange(y.shape[0])
            if rows.size > rows_per_batch:  # convolutions: a random subset of positions
                rows = np.sort(rng.choice(rows.size, rows_per_batch, replace=False))
            y = y[rows]
            x = np.asarray(batch[layer.x.name or ""], dtype=np.float32)
            removed = np.moveaxis(np.moveaxis(x, layer.x_axis, 0)[~layer.in_mask], 0, layer.x_axis)
            removed_rows = _features(layer, removed)[rows].sum(axis=0, dtype=np.float64)
            entry.removed_sum = removed_rows + (
                0 if entry.removed_sum is None else entry.removed_sum
            )
            entry.yty += float((y**2).sum())
            entry.rows += y.shape[0]
            np.save(folder / f"{index}_{number}_rows.npy", rows)
            np.save(folder / f"{index}_{number}_y.npy", y.astype(np.float32))
    return stats


def _accumulate_wave(
    pruned: ir.Model,
    layers: list[_Layer],
    wave: list[_Layer],
    stats: dict[int, _Stats],
    source: FeedSource,
    max_samples: int | None,
    max_features: int,
    folder: pathlib.Path,
) -> None:
    """One pass through the pruned model (upstream waves repaired): sum X'X and X'Y."""
    fitted = [layer for layer in wave if _fits(layer, max_features)]
    names = sorted({layer.x.name for layer in fitted if layer.x.name})
    if not names:
        return
    for number, batch in enumerate(
        iter_activations(pruned, names, source, max_samples=max_samples)
    ):
        for layer in fitted:
            index = layers.index(layer)
            rows = np.load(folder / f"{index}_{number}_rows.npy")
            y = np.load(folder / f"{index}_{number}_y.npy")
            features = _features(layer, np.asarray(batch[layer.x.name or ""], np.float32))[rows]
            if layer.intercept:
                features = np.concatenate([features, np.ones((rows.size, 1), np.float32)], 1)
            entry = stats[id(layer.node)]
            # float32 products per batch (fast BLAS), float64 sums across batches
            xtx, xty = features.T @ features, features.T @ y
            entry.xtx = xtx.astype(np.float64) + (0 if entry.xtx is None else entry.xtx)
            entry.xty = xty.astype(np.float64) + (0 if entry.xty is None else entry.xty)


def _features_width(layer: _Layer) -> int:
    kernel = int(np.prod(layer.kernel)) if layer.kernel else 1
    return int(layer.in_mask.sum()) * kernel


def _error(theta: np.ndarray, stats: _Stats) -> float:
    """Relative squared error of ``rows @ theta`` against the targets, from the sums."""
    assert stats.xtx is not None and stats.xty is not None
    residual = (
        stats.yty
        - 2 * float((theta * stats.xty).sum())
        + float((theta * (stats.xtx @ theta)).sum())
    )
    return max(residual, 0.0) / stats.yty if stats.yty > 0 else 0.0


def _removed_columns(layer: _Layer) -> np.ndarray:
    """Weight columns (original layout, kept outputs) that read removed input channels."""
    kernel = int(np.prod(layer.kernel)) if layer.kernel else 1
    return np.repeat(~layer.in_mask, kernel)


def _solve(layer: _Layer, stats: _Stats, ridge: float, fit: bool) -> tuple[np.ndarray, np.ndarray]:
    """New (weight, bias) for the layer; fills in its report entry."""
    report = layer.report
    report.samples = stats.rows
    if layer.intercept:
        removed_weight = layer.original_weight[:, _removed_columns(layer)]
        folded_bias = layer.bias + removed_weight @ stats.removed_mean
    else:
        folded_bias = layer.bias
    if not fit or stats.xtx is None or stats.xty is None:
        report.status = "bias fold only: too many input features to refit"
        return layer.weight, folded_bias

    def stacked(bias: np.ndarray) -> np.ndarray:
        weight = layer.weight.T
        return np.vstack([weight, bias[None, :]]) if layer.intercept else weight

    theta_fold = stacked(folded_bias)
    report.error_pruned = _error(stacked(layer.bias), stats)
    report.error_bias_fold = _error(theta_fold, stats) if layer.intercept else None
    if not layer.intercept:
        report.status = "refit without bias (the layer has none)"
    size = stats.xtx.shape[0]
    features = size - int(layer.intercept)
    diag = np.diag(stats.xtx)[:features]
    # few rows for many features over-fit the calibration set: shrink more when rows are few
    scale = max(ridge, 0.25 * features / max(stats.rows, 1))
    strength = scale * (float(diag.mean()) if diag.size else 1.0) + 1e-12
    penalty = np.eye(size) * strength
    if layer.intercept:
        penalty[-1, -1] = 0.0
    baseline = _error(theta_fold, stats)
    try:
        theta = np.linalg.solve(stats.xtx + penalty, stats.xty + penalty @ theta_fold)
    except np.linalg.LinAlgError:
        report.status = "bias fold only: singular system"
        report.error_refit = baseline
        return layer.weight, folded_bias
    report.error_refit = _error(theta, stats)
    if report.error_refit > baseline:  # float rounding only: keep the better solution
        report.error_refit = baseline
        return layer.weight, folded_bias
    if layer.intercept:
        return theta[:-1].T, theta[-1]
    return theta.T, layer.bias


def _write(layer: _Layer, weight: np.ndarray, bias: np.ndarray) -> None:
    """Store the refitted weight (and bias: into its constant, or a new Conv / Gemm input)."""
    node = layer.node
    w_value = node.inputs[1]
    current = constant_array(w_value)
    assert w_value is not None and current is not None
    dtype = current.dtype
    moved_shape = np.moveaxis(current, layer.out_axis, 0).shape
    new_weight = np.moveaxis(weight.reshape(moved_shape), 0, layer.out_axis)
    w_value.const_value = ir.tensor(
        np.ascontiguousarray(new_weight.astype(dtype)), name=w_value.name
    )
    if not layer.intercept:
        return
    if layer.bias_value is not None:
        old = constant_array(layer.bias_value)
        assert old is not None
        _store(layer.bias_value, bias.astype(dtype).reshape(old.shape))
        return
    graph = node.graph
    assert graph is not None
    name = f"{node.name or 'layer'}_bias"
    while name in graph.initializers:
        name += "_"
    array = bias.astype(dtype)
    value = ir.Value(name=name, const_value=ir.tensor(array, name=name))
    value.shape = ir.Shape(array.shape)
    value.dtype = ir.DataType.from_numpy(dtype)
    graph.register_initializer(value)
    node.resize_inputs(3)
    node.replace_input_with(2, value)


def _store(value: ir.Value, array: np.ndarray) -> None:
    producer = value.producer()
    if producer is None:
        value.const_value = ir.tensor(array, name=value.name)
    else:  # a Constant node
        for key in list(producer.attributes):
            del producer.attributes[key]
        producer.attributes["value"] = ir.AttrTensor("value", ir.tensor(array))


def repair_consumers(
    original: ir.Model,
    pruned: ir.Model,
    masks: Masks,
    source: FeedSource,
    *,
    ridge: float = 1e-2,
    max_samples: int | None = None,
    max_features: int = 4096,
    rows_per_batch: int = 512,
    progress: Callable[[str], None] | None = None,
) -> list[LayerRepair]:
    """Repair every consumer of pruned channels in ``pruned`` (in place); returns the report.

    Args:
        original: The model before pruning (same value names as ``pruned``).
        pruned: The pruned model, modified in place.
        masks: ``(value, axis) -> kept positions`` of the pruning (values of ``pruned``).
        source: Calibration feeds (read once for the original model's targets, which are kept
            in a temporary folder, then once per wave).
        ridge: Ridge strength relative to the mean diagonal of ``X^T X``.
        max_samples: Bound on the calibration samples used.
        max_features: Widest layer input (channels x kernel taps + 1) refitted by least
            squares; wider layers only get the bias fold.
        rows_per_batch: Rows (samples x output positions) per batch and layer that enter the
            sums; a convolution's positions beyond that are subsampled (seeded).
        progress: Called with a message per wave.
    """
    report: list[LayerRepair] = []
    layers = []
    for layer in _find_layers(pruned, masks, report):
        weight = _original_weight(original, layer)
        if weight is None:
            layer.report.status = "skipped: the weight is not an initializer"
            continue
        layer.original_weight = weight
        layers.append(layer)
    if not layers:
        return report
    with tempfile.TemporaryDirectory(prefix="irpass-repair-") as tmp:
        folder = pathlib.Path(tmp)
        message = f"repair: targets of {len(layers)} layer(s) from the original model"
        logger.info(message)
        if progress is not None:
            progress(message)
        stats = _record_targets(original, layers, source, max_samples, rows_per_batch, folder)
        for number, wave in enumerate(_waves(pruned, layers), 1):
            message = f"repair wave {number}: {len(wave)} layer(s)"
            logger.info(message)
            if progress is not None:
                progress(message)
            _accumulate_wave(pruned, layers, wave, stats, source, max_samples, max_features, folder)
            for layer in wave:
                entry = stats[id(layer.node)]
                if not entry.rows:
                    layer.report.status = "skipped: no calibration data reached the layer"
                    continue
                weight, bias = _solve(layer, entry, ridge, _fits(layer, max_features))
                _write(layer, weight, bias)
    return report


def _original_weight(original: ir.Model, layer: _Layer) -> np.ndarray | None:
    """The layer's weight before pruning, as [kept outputs, all input features]."""
    w_value = layer.node.inputs[1]
    name = w_value.name if w_value is not None else None
    value = original.graph.initializers.get(name or "")
    array = constant_array(value) if value is not None else None
    return None if array is None else _as_matrix(array, layer.out_axis)[layer.out_mask]
