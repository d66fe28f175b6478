"""Helpers shared by the pruning tests (imported by module name: pytest puts this directory
on sys.path, and the basename is unique in tests/)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import onnx_ir as ir

from irpass.analysis.channels import (
    ChannelAnalysis,
    ChannelGroup,
    analyze_channels,
    constant_array,
)
from irpass.passes.pruning.prune import PruneOptions, PrunePass
from irpass.passes.pruning.selection import Selection
from irpass.testing import assert_equivalent, inputs_to_random_initializers, model_from_text


def build(text: str, weights: Iterable[str] = (), seed: int = 0) -> ir.Model:
    """Parse ONNX text and turn the named inputs into seeded random initializers."""
    return inputs_to_random_initializers(model_from_text(text), list(weights), seed)


def group_with(analysis: ChannelAnalysis, name: str, axis: int) -> ChannelGroup:
    """The group holding tensor ``name``'s ``axis`` (fails when there is none)."""
    group = analysis.group_of(name, axis)
    assert group is not None, f"no channel group holds {name!r} axis {axis}"
    return group


def classes_of(analysis: ChannelAnalysis, name: str, axis: int) -> np.ndarray:
    """Class index of every position of tensor ``name``'s ``axis``."""
    for tensor_axis in group_with(analysis, name, axis).axes:
        if tensor_axis.value.name == name and tensor_axis.axis == axis:
            return tensor_axis.classes
    raise AssertionError(name)


def analyze(model: ir.Model, **options: Any) -> ChannelAnalysis:
    """The channel analysis (the model is left as it is)."""
    return analyze_channels(model, **options)


def zero_removed_inputs(model: ir.Model, analysis: ChannelAnalysis, selection: Selection) -> None:
    """Zero every consumer weight slice that reads a channel the selection removes.

    The result computes what the pruned model computes (removed channels contribute nothing),
    with the original shapes: the reference for exact surgery checks.
    """
    for group in analysis.groups:
        removed = selection.removed.get(group.id)
        if removed is None:
            continue
        for tensor_axis in group.axes_with_role("weight_in"):
            value = tensor_axis.value
            constant = constant_array(value)
            if constant is None:
                continue
            array = np.array(constant)
            moved = np.moveaxis(array, tensor_axis.axis, 0)
            moved[np.isin(tensor_axis.classes, removed)] = 0
            if value.const_value is not None:
                value.const_value = ir.tensor(array, name=value.name)
                continue
            # a Constant / ConstantOfShape output: feed its users from an initializer instead
            masked = ir.Value(name=f"{value.name}_masked", const_value=ir.tensor(array))
            model.graph.register_initializer(masked)
            value.replace_all_uses_with(masked)


def prune_and_check(model: ir.Model, *, exact: bool = True, **options: Any) -> PrunePass:
    """Prune ``model`` in place and check it: checker, ONNX Runtime, and (``exact``) equal to
    the original with the removed channels' consumer weights zeroed. Returns the pass."""
    reference = model.clone()
    options.setdefault("round_to", 1)
    opts = PruneOptions(**options)
    analysis, selection = PrunePass(opts).plan(reference)
    zero_removed_inputs(reference, analysis, selection)
    pass_ = PrunePass(opts)
    result = pass_(model)
    assert result.modified, "nothing was pruned"
    assert pass_.stats["channels_removed"] == selection.channels_removed
    if exact:
        assert_equivalent(reference, model, tolerance_scale=10.0)
    else:
        assert_equivalent(model, model)  # checker + ONNX Runtime run it
    return pass_
