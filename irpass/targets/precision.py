"""Which precision a run realizes on a target, how, and why when it is not the one asked for.

:func:`plan_precision` starts from the requested precision (or the target's default) and steps
down with a stated reason when:

- INT8 is asked for without calibration data: quantizing on guessed ranges is never silent, the
  target's ``fallback_precision`` (FP16 on TensorRT and Core ML, FP32 on CPUs and NNAPI) runs;
- the pipeline that realizes a precision names passes this installation does not have (the
  quantization package), or it ran and failed (:func:`step_down`, after the pass was rolled
  back): a precision the backend sets at build time (TensorRT's ``--fp16``) still holds,
  anything else falls back.

The reasons end up in the run's warnings, the summary and ``manifest.json``.
"""

from __future__ import annotations

import dataclasses

from irpass import registry
from irpass.errors import PipelineError, TargetError
from irpass.pipeline import Step, parse_pipeline
from irpass.targets.profile import Target

__all__ = ["PrecisionPlan", "missing_passes", "plan_precision", "step_down"]


@dataclasses.dataclass
class PrecisionPlan:
    """The precision a run aims for and the pipeline text that realizes it."""

    requested: str
    effective: str
    stage: str
    reasons: list[str] = dataclasses.field(default_factory=list)
    at_build: bool = False
    #: Latency of the result against the model before the stage (never-slower targets).
    measured: dict[str, object] | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (manifest)."""
        return dataclasses.asdict(self)


def _names(steps: list[Step] | tuple[Step, ...]) -> list[str]:
    names = []
    for step in steps:
        names += _names(step.children) if step.is_fixpoint else [step.name]
    return names


def missing_passes(pipeline: str) -> list[str]:
    """Passes a pipeline names that are neither registered passes nor presets."""
    if not pipeline:
        return []
    missing = []
    for name in _names(parse_pipeline(pipeline)):
        if registry.get_preset(name) is not None:
            continue
        try:
            registry.get_pass(name)
        except PipelineError:
            missing.append(name)
    return missing


def plan_precision(
    target: Target,
    requested: str | None,
    has_calibration: bool,
    build_time: tuple[str, ...] = (),
) -> PrecisionPlan:
    """Decide the precision for ``target``; ``build_time`` lists what its backend sets itself."""
    wanted = requested or target.default_precision
    if wanted not in target.precisions:
        raise TargetError(
            f"target {target.name} runs {', '.join(target.precisions)}, not {wanted}",
            hint=f"choose --precision {'|'.join(target.precisions)}",
        )
    plan = PrecisionPlan(requested=wanted, effective=wanted, stage="")
    if wanted == "int8" and not has_calibration:
        plan.effective = target.fallback_precision
        plan.reasons.append(
            f"int8 needs calibration data (--calib-data, e.g. a sample of the training set); "
            f"without it {target.name} runs {plan.effective}"
        )
    return _settle(target, plan, build_time)


def step_down(
    target: Target, plan: PrecisionPlan, why: str, build_time: tuple[str, ...] = ()
) -> PrecisionPlan:
    """After ``plan.stage`` failed (``why``): the backend's build-time precision or the next one.

    Returns a new plan whose ``stage`` is what to run instead ("" when nothing is left to run).
    """
    new = dataclasses.replace(plan, reasons=list(plan.reasons), stage="", at_build=False)
    if plan.effective in build_time:
        new.at_build = True
        new.reasons.append(
            f"{plan.stage} failed ({why}); the ONNX model stays as it was and the "
            f"{target.backend} engine builder sets {plan.effective}"
        )
        return new
    new.effective = _lower(target, plan.effective)
    new.reasons.append(f"{plan.stage} failed ({why}); {target.name} runs {new.effective}")
    return _settle(target, new, build_time)


def _lower(target: Target, precision: str) -> str:
    lower = target.fallback_precision if precision == "int8" else "fp32"
    if lower == precision or lower not in target.precisions:
        lower = "fp32" if "fp32" in target.precisions else target.precisions[-1]
    if lower == precision:
        raise TargetError(
            f"no precision of target {target.name} can be realized here",
            hint="add fp32 (with an empty precision stage) to the profile's precisions",
        )
    return lower


def _settle(target: Target, plan: PrecisionPlan, build_time: tuple[str, ...]) -> PrecisionPlan:
    """Step down until the plan's precision has a stage this installation can run."""
    while True:
        stage = target.precision_pipelines[plan.effective]
        missing = missing_passes(stage)
        if not missing:
            plan.stage = stage
            plan.at_build = not stage and plan.effective in build_time
            return plan
        if plan.effective in build_time:
            plan.at_build = True
            plan.reasons.append(
                f"{plan.effective}: this installation has no {', '.join(missing)} pass, so the "
                f"ONNX model stays fp32 and the {target.backend} engine builder sets "
                f"{plan.effective}"
            )
            return plan
        lower = _lower(target, plan.effective)
        plan.reasons.append(
            f"{plan.effective} needs the {', '.join(missing)} pass, which this installation "
            f"does not have; {target.name} runs {lower}"
        )
        plan.effective = lower
