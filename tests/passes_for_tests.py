"""Small passes used only by the core tests (registered under names starting with ``t_``)."""

from __future__ import annotations

import dataclasses

import onnx_ir as ir

from irpass.errors import PipelineError
from irpass.pass_base import IrpassPass, all_graphs, option
from irpass.registry import get_pass, register


def _register(cls):
    try:
        if get_pass(cls.name) is not None:
            return get_pass(cls.name)
    except PipelineError:
        pass
    return register(cls)


@dataclasses.dataclass(frozen=True)
class _ScaleOptions:
    factor: float = option(0.5, "multiply the first float initializer by this")


@_register
class ScaleFirstWeightPass(IrpassPass):
    """Scale the first float initializer (lossy on purpose)."""

    name = "t_scale_weight"
    lossless = False
    Options = _ScaleOptions

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        for value in model.graph.initializers.values():
            tensor = value.const_value
            if tensor is not None and tensor.dtype == ir.DataType.FLOAT:
                value.const_value = ir.tensor(tensor.numpy() * self.options.factor, name=value.name)
                self.stats["scaled"] += 1
                return ir.passes.PassResult(model, True)
        return ir.passes.PassResult(model, False)


@_register
class LyingLosslessPass(ScaleFirstWeightPass):
    """Changes outputs while claiming to be lossless (a bug the manager must catch)."""

    name = "t_lying_lossless"
    lossless = True


@_register
class RaisingPass(IrpassPass):
    """Always raises after renaming nothing."""

    name = "t_raise"
    lossless = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        raise RuntimeError("boom")


@_register
class RemoveIdentityOncePass(IrpassPass):
    """Removes one Identity node per call (so a fixpoint needs several iterations)."""

    name = "t_remove_one_identity"
    lossless = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        for graph in all_graphs(model):
            for node in graph:
                if node.op_type == "Identity" and node.outputs[0] not in graph.outputs:
                    node.outputs[0].replace_all_uses_with(node.inputs[0])
                    graph.remove(node, safe=True)
                    self.stats["identity_removed"] += 1
                    return ir.passes.PassResult(model, True)
        return ir.passes.PassResult(model, False)



@_register
class CountCalibrationPass(IrpassPass):
    """Counts the calibration samples the context hands over (reads data, changes nothing)."""

    name = "t_count_calibration"
    lossless = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        source = self.context.calibration_data
        if source is None:
            self.stats["no_calibration_data"] += 1
            return ir.passes.PassResult(model, False)
        for feed in source():
            self.stats["calibration_samples"] += int(next(iter(feed.values())).shape[0])
            self.stats["calibration_batches"] += 1
        if self.context.calibration_is_random:
            self.stats["random"] += 1
        return ir.passes.PassResult(model, False)


@dataclasses.dataclass(frozen=True)
class _DropHiddenOptions:
    ratio: float = option(0.5, "fraction of hidden units to remove (the last ones)")


@_register
class DropHiddenUnitsPass(IrpassPass):
    """Removes the last hidden units between Gemm(transB=1) -> Relu -> Gemm(transB=1) pairs.

    A crude, real lossy pass (fewer parameters, lower accuracy as the ratio grows) that the
    search tests use before the real pruning pass is involved.
    """

    name = "t_drop_hidden"
    lossless = False
    Options = _DropHiddenOptions

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified = False
        for first in list(model.graph):
            relu = _sole_consumer(first)
            second = _sole_consumer(relu) if relu is not None else None
            if (first.op_type != "Gemm" or relu is None or relu.op_type != "Relu"
                    or second is None or second.op_type != "Gemm"):
                continue
            w1, b1, w2 = first.inputs[1], first.inputs[2], second.inputs[1]
            if any(v is None or v.const_value is None for v in (w1, b1, w2)):
                continue
            hidden = w1.const_value.shape[0]
            keep = max(1, hidden - round(self.options.ratio * hidden))
            if keep == hidden:
                continue
            for value, data in ((w1, w1.const_value.numpy()[:keep]),
                                (b1, b1.const_value.numpy()[:keep]),
                                (w2, w2.const_value.numpy()[:, :keep])):
                value.const_value = ir.tensor(data.copy(), name=value.name)
                value.shape = ir.Shape(data.shape)
            for value in (first.outputs[0], relu.outputs[0]):
                value.shape = None
            self.stats["hidden_units_removed"] += hidden - keep
            modified = True
        return ir.passes.PassResult(model, modified)


def _sole_consumer(node: ir.Node) -> ir.Node | None:
    uses = list(node.outputs[0].uses())
    return uses[0][0] if len(uses) == 1 else None


@_register
class SleepPass(IrpassPass):
    """Touches the file named by IRPASS_TEST_MARKER, then sleeps (for interruption tests)."""

    name = "t_sleep"
    lossless = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        import os
        import pathlib
        import time

        pathlib.Path(os.environ["IRPASS_TEST_MARKER"]).write_text("running")
        time.sleep(60)
        return ir.passes.PassResult(model, False)


@_register
class FreezeInputsSilentlyPass(IrpassPass):
    """Drops every overridable graph input (a lossless pass must not do that unasked)."""

    name = "t_freeze_inputs"
    lossless = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        kept = [v for v in graph.inputs if v.name not in graph.initializers]
        changed = len(kept) != len(graph.inputs)
        graph.inputs.clear()
        graph.inputs.extend(kept)
        return ir.passes.PassResult(model, changed)
