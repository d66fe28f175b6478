"""Pipeline text as one onnx-ir pass, for compilers that run their own pass manager.

:func:`build_pipeline` turns ``"canonicalize,fuse"`` (presets, options, ``fixpoint(...)``)
into an ``onnx_ir.passes`` pass that drops into ``onnx_ir.passes.PassManager``,
``onnx_ir.passes.Sequential`` or onnxscript's optimizer flow (a sequence of onnx-ir passes)::

    import onnx_ir as ir
    import irpass

    pipeline = irpass.build_pipeline("canonicalize,fuse")
    ir.passes.PassManager([ir.passes.common.InlinePass(), pipeline])(model)

It runs the same passes as irpass's :class:`~irpass.manager.PipelineRunner`, without what the
runner adds around them: no verification, measurement, dumps, reproducers or rollback. A pass
that raises leaves the model as onnx-ir's contract says (every irpass pass checks before it
rewrites); the error propagates to the caller's manager.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Sequence

import onnx_ir as ir

from irpass import registry
from irpass.context import PassContext
from irpass.pass_base import IrpassPass
from irpass.pipeline import Step, expand_presets, format_pipeline, parse_pipeline, resolve_options

__all__ = ["DEFAULT_MAX_FIXPOINT_ITERATIONS", "FixpointPass", "PipelinePass", "build_pass",
           "build_pipeline"]

logger = logging.getLogger(__name__)

#: Bound on the repetitions of a ``fixpoint(...)`` group (the runner's default too).
DEFAULT_MAX_FIXPOINT_ITERATIONS = 10


def build_pass(step: Step, context: PassContext | None = None) -> IrpassPass:
    """Instantiate the pass a (non-fixpoint, non-preset) step names, with checked options."""
    cls = registry.get_pass(step.name)
    options = resolve_options(step.name, cls.Options, step.options_dict())
    return cls(options, context)


class FixpointPass(ir.passes.InPlacePass):
    """Repeat a group of in-place passes until one round modifies nothing (bounded).

    Reports ``modified`` when any round changed the model; when the bound is reached with the
    model still changing it logs a warning and stops (the model is valid, only not minimal).
    """

    def __init__(self, passes: Sequence[ir.passes.PassBase], max_iterations: int) -> None:
        if max_iterations < 1:
            raise ValueError(f"max_iterations must be >= 1, got {max_iterations}")
        self.body = ir.passes.Sequential(*passes)
        self.max_iterations = max_iterations

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Run the group until a round reports no modification."""
        modified = False
        for _ in range(self.max_iterations):
            if not self.body(model).modified:
                return ir.passes.PassResult(model, modified)
            modified = True
        logger.warning(
            "fixpoint(%s) still changed the model after %d rounds; stopping",
            ",".join(str(p) for p in self.body.passes),
            self.max_iterations,
        )
        return ir.passes.PassResult(model, modified)

    def __repr__(self) -> str:
        return f"FixpointPass({list(self.body.passes)!r}, max_iterations={self.max_iterations})"


class PipelinePass(ir.passes.Sequential):
    """The passes of a pipeline, in order; an ``onnx_ir.passes`` pass (in place).

    Attributes:
        text: The canonical pipeline text it was built from (presets not expanded).
        irpass_passes: Every irpass pass instance in it, in run order (fixpoint members once).
    """

    def __init__(self, text: str, passes: Sequence[ir.passes.PassBase],
                 irpass_passes: Sequence[IrpassPass]) -> None:
        super().__init__(*passes)
        self.text = text
        self.irpass_passes = list(irpass_passes)

    def stats(self) -> dict[str, dict[str, int]]:
        """Per pass name, what its rewrites counted over every run so far (e.g. rules)."""
        out: dict[str, collections.Counter[str]] = {}
        for pass_ in self.irpass_passes:
            out.setdefault(pass_.name, collections.Counter()).update(pass_.stats)
        return {name: dict(sorted(counts.items())) for name, counts in out.items() if counts}

    def __repr__(self) -> str:
        return f"PipelinePass({self.text!r})"


def build_pipeline(
    pipeline: str | Sequence[Step],
    context: PassContext | None = None,
    *,
    max_fixpoint_iterations: int = DEFAULT_MAX_FIXPOINT_ITERATIONS,
) -> PipelinePass:
    """Build pipeline text (or parsed steps) into one in-place ``onnx_ir.passes`` pass.

    Presets are expanded and every option is checked here, so a wrong name or option fails
    before any model is touched. ``context`` reaches every pass (lossy passes read calibration
    data and the target from it).

    Raises:
        PipelineError: the text does not parse, or names an unknown pass or preset.
        PassOptionError: an option is unknown or of the wrong type.
    """
    steps = parse_pipeline(pipeline) if isinstance(pipeline, str) else list(pipeline)
    built: list[IrpassPass] = []

    def build(group: Sequence[Step]) -> list[ir.passes.PassBase]:
        passes: list[ir.passes.PassBase] = []
        for step in group:
            if step.is_fixpoint:
                passes.append(FixpointPass(build(step.children), max_fixpoint_iterations))
            else:
                pass_ = build_pass(step, context)
                built.append(pass_)
                passes.append(pass_)
        return passes

    return PipelinePass(format_pipeline(steps), build(expand_presets(steps)), built)
