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
