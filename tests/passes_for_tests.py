"""Small passes used only by the tests (names starting with ``t_``).

Importing this module registers nothing: tests take the ``test_passes`` fixture (tests/conftest.py),
which registers :data:`TEST_PASSES` for one test only; processes a test starts (search workers,
a CLI subprocess) import ``plugin_passes_for_tests``, a pass plugin as users write them.
"""

from __future__ import annotations

import dataclasses

import onnx_ir as ir

from irpass.pass_base import IrpassPass, option


@dataclasses.dataclass(frozen=True)
class _ScaleOptions:
    factor: float = option(0.5, "multiply the first float initializer by this")


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


class LyingLosslessPass(ScaleFirstWeightPass):
    """Changes outputs while claiming to be lossless (a bug the manager must catch)."""

    name = "t_lying_lossless"
    lossless = True


class RaisingPass(IrpassPass):
    """Always raises after renaming nothing."""

    name = "t_raise"
    lossless = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        raise RuntimeError("boom")


class RemoveIdentityOncePass(IrpassPass):
    """Removes one Identity node per call (so a fixpoint needs several iterations)."""

    name = "t_remove_one_identity"
    lossless = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        for graph in model.graphs():
            for node in graph:
                if node.op_type == "Identity" and node.outputs[0] not in graph.outputs:
                    node.outputs[0].replace_all_uses_with(node.inputs[0])
                    graph.remove(node, safe=True)
                    self.stats["identity_removed"] += 1
                    return ir.passes.PassResult(model, True)
        return ir.passes.PassResult(model, False)



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


class BatchLiarPass(IrpassPass):
    """Hard-codes the first computed Reshape shape to [1, 8]: right at batch 1 only."""

    name = "t_batch_liar"
    lossless = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        for node in model.graph:
            if node.op_type == "Reshape" and node.inputs[1].const_value is None:
                value = ir.Value(
                    name="liar_shape",
                    type=ir.TensorType(ir.DataType.INT64),
                    shape=ir.Shape([2]),
                    const_value=ir.tensor([1, 8], dtype=ir.DataType.INT64, name="liar_shape"),
                )
                model.graph.register_initializer(value)
                node.replace_input_with(1, value)
                return ir.passes.PassResult(model, True)
        return ir.passes.PassResult(model, False)


class KernelFlipPass(IrpassPass):
    """Flips the last Conv's kernels spatially: invisible when the Conv sees 1x1 images."""

    name = "t_kernel_flip"
    lossless = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        convs = [n for n in model.graph if n.op_type == "Conv"]
        if not convs or convs[-1].inputs[1] is None or convs[-1].inputs[1].const_value is None:
            return ir.passes.PassResult(model, False)
        weight = convs[-1].inputs[1]
        flipped = weight.const_value.numpy()[:, :, ::-1, ::-1].copy()
        weight.const_value = ir.tensor(flipped, name=weight.name)
        return ir.passes.PassResult(model, True)


class UnderReportingPass(ScaleFirstWeightPass):
    """Changes a weight (and so the outputs) but reports modified=False."""

    name = "t_underreport"
    lossless = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        super().call(model)
        return ir.passes.PassResult(model, False)


class DirtyPass(IrpassPass):
    """Leaves an unused initializer and an unused opset import behind (hygiene bugs)."""

    name = "t_dirty"
    lossless = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        junk = ir.Value(
            name="junk",
            type=ir.TensorType(ir.DataType.FLOAT),
            shape=ir.Shape([4]),
            const_value=ir.tensor([1.0, 2.0, 3.0, 4.0], dtype=ir.DataType.FLOAT, name="junk"),
        )
        model.graph.register_initializer(junk)
        model.opset_imports["com.example.unused"] = 1
        return ir.passes.PassResult(model, True)


class SmallChangePass(IrpassPass):
    """Changes element 1 of the weight ``w`` from 0.01 to 0.09 (others untouched)."""

    name = "t_small_change"
    lossless = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        value = model.graph.initializers["w"]
        array = value.const_value.numpy().copy()
        array[1] = 0.09
        value.const_value = ir.tensor(array, name="w")
        return ir.passes.PassResult(model, True)


#: Every test pass, for ``irpass.registry.registered``.
TEST_PASSES = (
    ScaleFirstWeightPass,
    LyingLosslessPass,
    RaisingPass,
    RemoveIdentityOncePass,
    CountCalibrationPass,
    DropHiddenUnitsPass,
    SleepPass,
    FreezeInputsSilentlyPass,
    BatchLiarPass,
    KernelFlipPass,
    UnderReportingPass,
    DirtyPass,
    SmallChangePass,
)
