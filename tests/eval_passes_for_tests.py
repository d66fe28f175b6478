"""A deliberately lossy pass for the evaluation tests (``t_eval_damage``, registered by the
``test_passes`` fixture)."""

from __future__ import annotations

import dataclasses

import onnx_ir as ir

from irpass.pass_base import IrpassPass, option


@dataclasses.dataclass(frozen=True)
class _DamageOptions:
    factor: float = option(0.05, "scale applied to the largest float weight")


class DamageWeightPass(IrpassPass):
    """Scales the largest float weight (a deliberately lossy test pass)."""

    name = "t_eval_damage"
    lossless = False
    Options = _DamageOptions

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        weights = [
            value
            for value in model.graph.initializers.values()
            if value.const_value is not None
            and value.const_value.dtype == ir.DataType.FLOAT
            and value.const_value.size > 1
        ]
        if not weights:
            return ir.passes.PassResult(model, False)
        # the largest weight, so the damage does not depend on initializer order
        value = max(weights, key=lambda v: (v.const_value.size, v.name))
        scaled = value.const_value.numpy() * self.options.factor
        value.const_value = ir.tensor(scaled, name=value.name)
        return ir.passes.PassResult(model, True)

