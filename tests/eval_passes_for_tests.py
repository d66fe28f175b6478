"""A deliberately lossy pass for the evaluation tests (registered as ``t_eval_damage``)."""

from __future__ import annotations

import dataclasses

import onnx_ir as ir

from irpass.errors import PipelineError
from irpass.pass_base import IrpassPass, option
from irpass.registry import get_pass, register


@dataclasses.dataclass(frozen=True)
class _DamageOptions:
    factor: float = option(0.3, "scale applied to the first float weight")


class DamageWeightPass(IrpassPass):
    """Scales the first float weight (a deliberately lossy test pass)."""

    name = "t_eval_damage"
    lossless = False
    Options = _DamageOptions

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        for value in model.graph.initializers.values():
            tensor = value.const_value
            if tensor is not None and tensor.dtype == ir.DataType.FLOAT and tensor.size > 1:
                value.const_value = ir.tensor(
                    tensor.numpy() * self.options.factor, name=value.name
                )
                return ir.passes.PassResult(model, True)
        return ir.passes.PassResult(model, False)


try:
    get_pass(DamageWeightPass.name)
except PipelineError:
    register(DamageWeightPass)
