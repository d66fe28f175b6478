"""The diff's entry point: :func:`diff_models`, and the cost summary of each side."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import onnx_ir as ir

from irpass.analysis.cost import model_cost, shapes_to_count
from irpass.diff.changes import io_changes, node_changes
from irpass.diff.match import Matcher, Side
from irpass.diff.model import GraphDiff, NodeMatch
from irpass.diff.regions import changed_regions
from irpass.run_report import RunReport
from irpass.validate import validate_model

__all__ = ["attach_diff", "diff_models", "model_summary_cost"]

logger = logging.getLogger(__name__)


def _typed_values(model: ir.Model) -> dict[str, tuple[Any, Any]]:
    """Map every named value to (shape, dtype), the form ``irpass.analysis.cost`` consumes."""
    out: dict[str, tuple[Any, Any]] = {}
    for graph in model.graphs():
        for value in list(graph.inputs) + list(graph.initializers.values()):
            if value.name:
                out[value.name] = (value.shape, value.dtype)
        for node in graph:
            for value in node.outputs:
                if value.name:
                    out[value.name] = (value.shape, value.dtype)
    return out


def model_summary_cost(
    model: ir.Model,
    inferred: ir.Model | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, Any]:
    """Cost of a model as a dict (:func:`irpass.analysis.cost.model_cost`'s totals and ops).

    MACs and activation memory are counted at ``input_shapes`` for the inputs it names and at
    the declared sizes with symbolic dims set to 1 for the others (listed in
    ``symbolic_set_to_one``); ``cost_shapes`` records the shapes used. ``inferred`` is a
    shape-inferred copy of ``model`` whose value types are used when no input declares a
    shape. When the analysis fails the dict is empty (the diff then shows no cost rows) and a
    warning names the failure.
    """
    try:
        shapes, defaulted = shapes_to_count(model, input_shapes)
        if shapes:
            cost = model_cost(model, input_shapes=shapes)
        else:
            cost = model_cost(model, _typed_values(inferred) if inferred is not None else None)
    except Exception as exc:  # a diff is still useful without costs
        logger.warning("cost analysis failed (%s); the diff shows no costs", exc)
        return {}
    # totals and op histogram; per-layer rows would make a diff as large as the model
    data = dict(cost.summary())
    data["cost_shapes"] = shapes or None
    data["symbolic_set_to_one"] = defaulted
    return data


def _prepare(model: ir.Model, infer_shapes: bool) -> ir.Model:
    """Return a shallow copy (tensors shared) with inferred shapes; the caller's model is kept."""
    if not infer_shapes:
        return model
    from onnx_ir.passes.common import ShapeInferencePass

    copy = model.clone()
    try:
        ShapeInferencePass(check_type=False, strict_mode=False, data_prop=True)(copy)
    except Exception as exc:  # shapes are a bonus, the diff works without them
        logger.debug("shape inference failed: %s", exc)
    return copy


def diff_models(
    a: ir.Model,
    b: ir.Model,
    *,
    a_label: str = "A",
    b_label: str = "B",
    infer_shapes: bool = True,
    compare_values: bool = True,
    with_cost: bool = True,
    max_region_nodes: int = 60,
    max_regions: int = 12,
    order_fallback: bool = False,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> GraphDiff:
    """Match the main-graph nodes of ``a`` and ``b`` and describe every difference.

    Neither model is modified (shape inference runs on shallow copies). ``compare_values``
    also flags weights of equal shape whose values differ (up to
    :data:`VALUE_COMPARE_LIMIT` elements each). ``order_fallback`` adds the low-confidence
    ``order`` phase (see the module docstring). MACs and activation memory are counted at
    ``input_shapes`` (symbolic dims not given count as 1; see :func:`model_summary_cost`).
    Subgraph bodies are summarised as attributes (node counts), not matched node by node.
    Both models are validated first (:func:`irpass.validate.validate_model`), so a malformed
    graph is an :class:`~irpass.errors.UnsupportedModelError` naming the node, not a crash.
    """
    validate_model(a, a_label)
    validate_model(b, b_label)
    pa, pb = _prepare(a, infer_shapes), _prepare(b, infer_shapes)
    inferred_a, inferred_b = (pa, pb) if infer_shapes else (None, None)
    cost_a = model_summary_cost(a, inferred_a, input_shapes) if with_cost else {}
    cost_b = model_summary_cost(b, inferred_b, input_shapes) if with_cost else {}
    side_a, side_b = Side("A", pa.graph), Side("B", pb.graph)
    matcher = Matcher(side_a, side_b)
    matcher.run(order_fallback)

    matches: list[NodeMatch] = []
    changed: set[int] = set()
    for i, j in sorted(matcher.a_to_b.items()):
        changes = node_changes(side_a.nodes[i], side_b.nodes[j], side_a.infos[i],
                                side_b.infos[j], compare_values)
        if changes:
            changed.add(i)
        matches.append(NodeMatch(side_a.infos[i], side_b.infos[j], matcher.method[i], changes))
    removed = [side_a.infos[i] for i in matcher.free_a()]
    added = [side_b.infos[j] for j in matcher.free_b()]

    opsets: dict[str, tuple[int | None, int | None]] = {}
    for domain in sorted(set(a.opset_imports) | set(b.opset_imports)):
        va, vb = a.opset_imports.get(domain), b.opset_imports.get(domain)
        if va != vb:
            opsets[domain or "ai.onnx"] = (va, vb)

    regions, omitted = changed_regions(matcher, changed, max_region_nodes, max_regions)
    return GraphDiff(
        a_label=a_label,
        b_label=b_label,
        matches=matches,
        removed=removed,
        added=added,
        io_changes=io_changes(pa.graph, pb.graph),
        opset_changes=opsets,
        cost_a=cost_a,
        cost_b=cost_b,
        regions=regions,
        nodes_a=side_a.infos,
        nodes_b=side_b.infos,
        regions_omitted=omitted,
    )


def attach_diff(original: ir.Model, optimized: ir.Model, report: RunReport) -> None:
    """Attach the diff of a whole run (input -> output) to its report; a warning if it fails.

    MACs are counted at the run summary's shapes (``report.cost_shapes``).
    """
    try:
        report.diff = diff_models(
            original,
            optimized,
            a_label="input",
            b_label="output",
            input_shapes=report.cost_shapes,
        ).to_dict()
    except Exception as exc:  # the optimized model is valid and verified without a diff
        logger.warning("could not diff the input and output models: %s", exc)
        report.warnings.append(f"no graph diff in the report: {type(exc).__name__}: {exc}")
