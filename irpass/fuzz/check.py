"""Run passes on a model and check what every pass promises, whatever the model.

One :class:`Case` per registered built-in pass (default options, plus the option variants in
:data:`VARIANTS`) and per preset pipeline. :func:`check_case` runs a case on a fresh copy of
a model and returns a :class:`Finding` when a promise is broken:

- ``raised``: the pass raised on a valid model (a pass may refuse a rewrite, not crash);
- ``warning``: it let a numpy ``RuntimeWarning`` escape, or left the model in a state
  onnx-ir warns about when saving it (users would see either printed);
- ``unreported``: it said it changed nothing, yet the computation differs (nodes,
  initializers, inputs or outputs; shape annotations, ``value_info`` and the dims of
  graph outputs, are not counted);
- ``invalid``: the ONNX checker rejects the result;
- ``interface``: graph inputs or outputs changed (names, element types, defaults), or an
  input with a default is no longer read (the default frozen into a constant);
- ``ort``: ONNX Runtime cannot load or run the result;
- ``mismatch``: a lossless pass changed the outputs beyond the dtype tolerance
  (:func:`irpass.metrics.compare_outputs`) on seeded inputs, overridable inputs fed too;
- ``outputs``: a lossy pass changed the output names or shapes, or made finite outputs
  non-finite.

The reference outputs are computed once per model (:class:`Reference`), with the symbolic
batch dimension set to 2 so that a rewrite that bakes in a batch of 1 shows.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import onnx
import onnx_ir as ir

from irpass import registry
from irpass.context import Feed, PassContext
from irpass.errors import VerificationError
from irpass.ir import graph_protos
from irpass.manager import PipelineRunner, RunOptions, build_pass
from irpass.metrics import compare_outputs
from irpass.pipeline import parse_pipeline
from irpass.verify import check_structure, make_session, random_feeds, run_model

__all__ = ["PRESETS", "VARIANTS", "Case", "Finding", "Reference", "cases", "check_case"]

#: Option variants run besides each pass's defaults (pipeline text).
VARIANTS = (
    "fold_constants(max_output_bytes=0)",
    "fold_constants(fold_weights=false,shape_inference=true)",
    "fold_batchnorm(lone=mul_add)",
    "decompose_ops(decompose=[HardSwish,HardSigmoid,Gelu,LayerNormalization,BatchNormalization])",
    "inputs_to_initializers(lift_constants=true)",
    "cse(max_tensor_elements=0)",
    "quantize(mode=int8w)",
    "quantize(mode=int4w,block_size=16)",
    "quantize(mode=fp16)",
    "quantize(rules=tensorrt,never_slower=false)",
    "quantize(rules=nnapi,never_slower=false,per_channel=false)",
    "prune(ratio=0.5,round_to=1)",
    "prune(importance=activation,scope=local,round_to=1)",
    "prune(importance=bn,repair=false,round_to=2)",
)
#: Preset pipelines run as a whole through the pipeline runner (passes interacting).
PRESETS = ("canonicalize", "fuse", "canonicalize,fuse")


@dataclasses.dataclass(frozen=True)
class Case:
    """One thing to run: a single pass step, or a pipeline through the runner."""

    text: str
    lossless: bool
    pipeline: bool = False


@dataclasses.dataclass(frozen=True)
class Finding:
    """A broken promise: which case, what kind (see the module docstring), the detail."""

    case: str
    kind: str
    message: str


def cases(variants: Sequence[str] = VARIANTS, presets: Sequence[str] = PRESETS) -> list[Case]:
    """Every built-in pass with default options, the variants of those registered, presets."""
    found = [
        Case(cls.name, cls.lossless)
        for cls in registry.list_passes()
        if cls.__module__.startswith("irpass.passes.")
    ]
    names = {case.text for case in found}
    for text in variants:
        step = parse_pipeline(text)[0]
        if step.name in names:
            found.append(Case(text, registry.get_pass(step.name).lossless))
    for text in presets:
        steps = parse_pipeline(text)
        if all(registry.get_preset(s.name) or s.name in names for s in steps):
            found.append(Case(text, lossless=True, pipeline=True))
    return found


def _feeds(session: object, seeds: Sequence[int], batch: int) -> list[dict[str, np.ndarray]]:
    return [
        random_feeds(session, seed=s, dim_values={"N": batch}, overridable=True)  # type: ignore[arg-type]
        for s in seeds
    ]


class Reference:
    """A model's baseline: its serialized IR form, feeds, and ONNX Runtime outputs."""

    def __init__(self, proto: onnx.ModelProto, seeds: Sequence[int] = (0, 1), batch: int = 2):
        self.proto = proto
        self.baseline = _computation(ir.to_proto(ir.from_proto(proto)))
        self.interface = _interface(proto)
        session = make_session(proto)
        self.feeds = _feeds(session, seeds, batch)
        self.outputs = [run_model(session, feed) for feed in self.feeds]

    def calibration(self) -> Iterator[Feed]:
        """The feeds again, as calibration data for lossy passes."""
        yield from self.feeds


def _computation(proto: onnx.ModelProto) -> bytes:
    """The serialized model without shape annotations: what it computes."""
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    for graph in graph_protos(copy.graph):
        del graph.value_info[:]
        for output in graph.output:
            if output.type.HasField("tensor_type"):
                output.type.tensor_type.ClearField("shape")
    return copy.SerializeToString()


def _interface(proto: onnx.ModelProto) -> list[tuple[str, str, int, bool, bool]]:
    """Inputs and outputs: kind, name, element type, has a default value, default is read.

    An input whose outputs do not depend on it may become unread (a shape fed statically);
    an input with a default that becomes unread was frozen into a constant.
    """
    graph = proto.graph
    defaults = {t.name for t in graph.initializer}
    read = {name for g in graph_protos(graph) for node in g.node for name in node.input}
    read |= {v.name for v in graph.output}
    return [
        (
            kind,
            v.name,
            v.type.tensor_type.elem_type,
            kind == "input" and v.name in defaults,
            kind == "input" and v.name in defaults and v.name in read,
        )
        for kind, values in (("input", graph.input), ("output", graph.output))
        for v in values
    ]


class _OnnxIrWarnings(logging.Handler):
    """Collects what onnx-ir logs at WARNING or above while the block runs."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def __enter__(self) -> _OnnxIrWarnings:
        logging.getLogger("onnx_ir").addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("onnx_ir").removeHandler(self)


def _run(model: ir.Model, case: Case, context: PassContext) -> bool:
    """Run ``case`` on ``model`` in place; return whether it reports a change."""
    if case.pipeline:
        report = PipelineRunner(case.text, context, RunOptions(verify="none")).run(model).report
        failed = [record for record in report.passes if record.error]
        if failed:
            raise RuntimeError(f"{failed[0].step}: {failed[0].error}")
        return any(record.modified for record in report.passes)
    step = parse_pipeline(case.text)[0]
    result = build_pass(step, context)(model)
    if result.model is not model:
        raise RuntimeError("an in-place pass returned another model object")
    return bool(result.modified)


def check_case(reference: Reference, case: Case) -> tuple[bool, Finding | None]:
    """Run ``case`` on a fresh copy of the reference model; (modified, finding or None)."""
    model = ir.from_proto(reference.proto)
    context = PassContext(
        seed=0, calibration_data=reference.calibration, calibration_is_random=True
    )

    def finding(kind: str, message: str) -> tuple[bool, Finding]:
        return modified, Finding(case.text, kind, message.strip().splitlines()[0][:500])

    modified = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            modified = _run(model, case, context)
    except Exception as exc:  # a valid model must never make a pass crash
        return finding("raised", f"{type(exc).__name__}: {exc}")
    runtime = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    if runtime:
        where = f"{runtime[0].filename}:{runtime[0].lineno}"
        return finding("warning", f"{runtime[0].message} ({where})")
    with _OnnxIrWarnings() as logged:
        proto = ir.to_proto(model)
    if logged.messages:
        return finding("warning", f"onnx-ir on save: {logged.messages[0]}")
    if not modified:
        if _computation(proto) != reference.baseline:
            return finding("unreported", "reported no change but the model differs")
        return False, None
    interface = _interface(proto)
    if interface != reference.interface:
        lost = [entry for entry in reference.interface if entry not in interface]
        gained = [entry for entry in interface if entry not in reference.interface]
        return finding("interface", f"{lost} became {gained}")
    try:
        check_structure(proto, full_check=True)
    except VerificationError as exc:
        return finding("invalid", exc.message)
    try:
        session = make_session(proto)
        outputs = [run_model(session, feed) for feed in reference.feeds]
    except VerificationError as exc:
        return finding("ort", exc.message)
    for expected, actual in zip(reference.outputs, outputs, strict=True):
        if case.lossless:
            mismatches = compare_outputs(expected, actual)
            if mismatches:
                return finding("mismatch", str(mismatches[0]))
            continue
        for name, value in expected.items():
            got = actual.get(name)
            if got is None or np.shape(got) != np.shape(value):
                return finding("outputs", f"output {name!r} missing or reshaped")
            if value.dtype.kind == "f" and np.isfinite(value).all() and not np.isfinite(got).all():
                return finding("outputs", f"output {name!r} became non-finite")
    return True, None
