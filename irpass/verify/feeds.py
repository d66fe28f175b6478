"""Verification inputs the model accepts, derived from the graph instead of from dtypes alone.

Random inputs of the right dtype are not enough for real models: token ids index an embedding
table of a few rows, a scalar selects an ``If`` branch only for the values it is compared with,
a reflect ``Pad`` needs more than one sample, and a detector's upsampling path only lines up for
image sizes that are multiples of its total stride. This module reads those facts off the graph:

- :func:`input_hints` traces every real graph input through value-preserving ops (Cast,
  Reshape, Squeeze, ...) to the nodes that constrain its *values*, and asks the rule registered
  for each consumer's op type (:func:`register_value_rule`). Built-in rules: Gather /
  GatherElements / GatherND indices within the table, OneHot indices below the depth,
  comparisons with constants (the constants are the plausible values), If conditions (both
  branches), integer Div/Mod divisors (never zero). Other rules (Resize sizes, Reshape shapes,
  Slice bounds, ...) plug in through the same registry.
- :func:`input_specs` adds what the graph says about *shapes*: which symbolic dimensions are
  batch-like, which are spatial axes of an image input, and the values worth trying for each
  (1 first; then multiples of the total stride for spatial axes, a few hundred for
  sequence / sample axes).
- :func:`make_feeds` draws one seeded feed for a binding of the symbolic dimensions.
- :func:`find_feeds` searches for bindings the model actually runs with (config A: batch 1 and
  the smallest working values; config B: batch > 1 and a second value for every other symbolic
  dimension, for spatial axes the next multiple of the total stride) by running the model,
  and returns the feeds together with the outputs those runs produced, so the reference
  outputs cost nothing extra. When nothing runs it raises an error
  that names the inputs, what was tried and why it failed.
- :func:`parse_input_shapes` reads ``--input-shapes name:1x3x320x320,...``.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import ml_dtypes
import numpy as np
import onnx_ir as ir

from irpass.errors import DataError, UnsupportedModelError, VerificationError

__all__ = [
    "DimKey",
    "FeedPlan",
    "FeedSearch",
    "InputSpec",
    "ValueHint",
    "ValueRule",
    "find_feeds",
    "input_hints",
    "input_specs",
    "make_feeds",
    "overridable_inputs",
    "parse_input_shapes",
    "real_inputs",
    "register_value_rule",
]

logger = logging.getLogger(__name__)

#: Integers drawn without a hint come from [0, DEFAULT_INT_HIGH): small, valid as counts,
#: booleans-as-ints and most masks.
DEFAULT_INT_HIGH = 4
#: Bound on the bindings tried per configuration (each attempt runs the model once).
MAX_ATTEMPTS = 5
#: Tensors in a generated sequence input.
SEQUENCE_LENGTH = 2
#: Words string inputs are drawn from (few, so that equality tests and lookups sometimes hit).
_WORDS = ("a", "monday", "the", "abc", "x y", "ONNX")
#: Values tried for a symbolic dimension that is neither batch-like nor spatial.
SEQUENCE_CANDIDATES = (1, 256, 512)
#: Names exporters give the batch dimension.
_BATCH_NAMES = re.compile(r"^(n|b|bs|batch|batch_?size|batches|num_?batch(es)?|N)$", re.IGNORECASE)

#: A dim_param that really names a dimension (exporters write '?' or '-1' for "unknown").
_NAMED = re.compile(r"^[A-Za-z_][\w.\-/:]*$")
#: A symbolic dimension: its name, or (input name, axis) when it has none.
DimKey = "str | tuple[str, int]"


@dataclasses.dataclass
class ValueHint:
    """What the graph says about the values of one input.

    Attributes:
        low: Smallest allowed value (inclusive), or None.
        high: Bound the values stay below (exclusive), or None.
        choices: Plausible values (e.g. the constants the input is compared with); when not
            empty, values are drawn from these.
        nonzero: Zero is not allowed (the input divides).
        value: The one value the graph implies (e.g. a Reshape target equal to the declared
            output shape, the axes a Squeeze removes); fed as is when its shape fits.
        reasons: Why, one line per rule that contributed (shown in errors and reports).
    """

    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()
    nonzero: bool = False
    value: np.ndarray | None = None
    reasons: list[str] = dataclasses.field(default_factory=list)

    def merge(self, other: ValueHint) -> None:
        """Intersect ranges, collect choices and reasons."""
        if other.low is not None:
            self.low = other.low if self.low is None else max(self.low, other.low)
        if other.high is not None:
            self.high = other.high if self.high is None else min(self.high, other.high)
        for choice in other.choices:
            if choice not in self.choices:
                self.choices = (*self.choices, choice)
        self.nonzero = self.nonzero or other.nonzero
        if self.value is None:  # the first consumer that pins the value decides
            self.value = other.value
        self.reasons.extend(r for r in other.reasons if r not in self.reasons)


#: A value rule: (consumer node, index of the traced value among its inputs) -> hint or None.
ValueRule = Callable[[ir.Node, int], "ValueHint | None"]

_RULES: dict[str, list[ValueRule]] = {}


def register_value_rule(op_type: str, rule: ValueRule) -> ValueRule:
    """Register ``rule`` for nodes of ``op_type`` (default ONNX domain) that read a graph input.

    The rule receives the consumer node and the input index through which the traced graph
    input (possibly after value-preserving ops) reaches it; it returns a :class:`ValueHint` or
    None when it has nothing to say. Several rules may be registered for one op type.
    """
    _RULES.setdefault(op_type, []).append(rule)
    return rule


# -- what the graph knows about a value ---------------------------------------------------


def _const(value: ir.Value | None) -> np.ndarray | None:
    if value is None or value.is_graph_input():
        return None
    tensor = value.const_value
    if tensor is None:
        tensor = ir.convenience.get_const_tensor(value)
    if tensor is None:
        return None
    try:
        return np.asarray(tensor.numpy())
    except Exception:  # unreadable external data, string tensors
        return None


def _static_dims(value: ir.Value | None) -> list[int | None] | None:
    if value is None:
        return None
    array = _const(value)
    if array is not None:
        return list(array.shape)
    if value.shape is None:
        return None
    return [d if isinstance(d, int) else None for d in value.shape]


def _attr_int(node: ir.Node, name: str, default: int) -> int:
    attr = node.attributes.get(name)
    return default if attr is None else int(attr.as_int())


def _gather_rule(node: ir.Node, index: int) -> ValueHint | None:
    """Gather/GatherElements indices (input 1) stay within the data's extent along ``axis``."""
    if index != 1:
        return None
    dims = _static_dims(node.inputs[0])
    if not dims:
        return None
    axis = _attr_int(node, "axis", 0) % len(dims)
    extent = dims[axis]
    if extent is None or extent <= 0:
        return None
    name = node.inputs[0].name if node.inputs[0] is not None else "?"
    return ValueHint(
        low=0, high=extent, reasons=[f"indexes {node.op_type} {name!r} with {extent} entries"]
    )


def _gather_nd_rule(node: ir.Node, index: int) -> ValueHint | None:
    """GatherND indices stay below the smallest indexed data dimension."""
    if index != 1:
        return None
    dims = _static_dims(node.inputs[0])
    batch = _attr_int(node, "batch_dims", 0)
    indexed = [d for d in (dims or [])[batch:] if d is not None]
    if not indexed:
        return None
    extent = min(indexed)
    return ValueHint(low=0, high=extent, reasons=[f"indexes GatherND with extent {extent}"])


def _one_hot_rule(node: ir.Node, index: int) -> ValueHint | None:
    if index != 0:
        return None
    depth = _const(node.inputs[1] if len(node.inputs) > 1 else None)
    if depth is None or depth.size != 1:
        return None
    high = int(depth.reshape(()))
    return ValueHint(low=0, high=high, reasons=[f"OneHot indices below depth {high}"])


def _compare_rule(node: ir.Node, index: int) -> ValueHint | None:
    """Compared with a constant: the constant (and its neighbours for ordering) are plausible."""
    other = node.inputs[1 - index] if len(node.inputs) == 2 else None
    array = _const(other)
    if array is None or array.size == 0 or array.size > 8:
        return None
    values = [v.item() for v in np.unique(array.reshape(-1))]
    if node.op_type == "Equal":
        choices = tuple(values)
    else:  # ordering: values on both sides of each constant
        step: float = 1 if array.dtype.kind in "iu" else 0.5
        choices = tuple(c for v in values for c in (v - step, v, v + step))
    return ValueHint(
        choices=choices, reasons=[f"compared with {values} by {node.op_type} {node.name!r}"]
    )


def _if_rule(node: ir.Node, index: int) -> ValueHint | None:
    if index != 0:
        return None
    return ValueHint(choices=(True, False), reasons=[f"condition of If {node.name!r}"])


def _divisor_rule(node: ir.Node, index: int) -> ValueHint | None:
    if index != 1:
        return None
    return ValueHint(nonzero=True, reasons=[f"divisor of {node.op_type} {node.name!r}"])


for _op in ("Gather", "GatherElements"):
    register_value_rule(_op, _gather_rule)
register_value_rule("GatherND", _gather_nd_rule)
register_value_rule("OneHot", _one_hot_rule)
for _op in ("Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual"):
    register_value_rule(_op, _compare_rule)
register_value_rule("If", _if_rule)
for _op in ("Div", "Mod"):
    register_value_rule(_op, _divisor_rule)

#: Ops whose output holds (a subset or rearrangement of) the values of input 0, unchanged.
_VALUE_PRESERVING = frozenset(
    {
        "Identity",
        "Cast",
        "CastLike",
        "Reshape",
        "Squeeze",
        "Unsqueeze",
        "Flatten",
        "Expand",
        "Transpose",
        "Slice",
        "Tile",
        "Split",
        "Concat",
        "Gather",
        "GatherElements",
    }
)


def _reaches(value: ir.Value, limit: int = 64) -> Iterable[tuple[ir.Node, int]]:
    """(consumer, input index) pairs the values of ``value`` reach, through value-preserving ops.

    Consumers inside If/Loop/Scan bodies count (onnx-ir records them as uses of the outer value).
    """
    seen: set[int] = set()
    stack = [value]
    while stack and len(seen) < limit:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        for node, index in current.uses():
            yield node, index
            if node.domain not in ("", "ai.onnx") or node.op_type not in _VALUE_PRESERVING:
                continue
            # Gather's indices (input 1) do not carry their values to the output; Concat's all do
            if node.op_type in ("Gather", "GatherElements") and index != 0:
                continue
            if node.op_type not in ("Concat",) and index != 0:
                continue
            stack.extend(node.outputs)


def real_inputs(graph: ir.Graph) -> list[ir.Value]:
    """Graph inputs a caller feeds (inputs that also have an initializer are weights)."""
    return [v for v in graph.inputs if v.name not in graph.initializers]


def input_hints(model: ir.Model) -> dict[str, ValueHint]:
    """A :class:`ValueHint` per real graph input (empty where the graph says nothing)."""
    hints: dict[str, ValueHint] = {}
    for value in real_inputs(model.graph):
        hint = ValueHint()
        for node, index in _reaches(value):
            if node.domain not in ("", "ai.onnx"):
                continue
            for rule in _RULES.get(node.op_type, ()):
                try:
                    found = rule(node, index)
                except Exception as exc:  # a rule must never take verification down
                    logger.debug("value rule for %s failed: %s", node.op_type, exc)
                    found = None
                if found is not None:
                    hint.merge(found)
        hints[value.name or ""] = hint
    return hints


# -- shapes --------------------------------------------------------------------------------


@dataclasses.dataclass
class InputSpec:
    """One real graph input: dtype, declared shape, value hint and per-axis dimension keys.

    ``dims[i]`` is an int for a static axis, else the :data:`DimKey` shared by every axis with
    the same symbolic name. For a sequence or optional input, ``dtype`` and ``dims`` describe
    its tensors and ``containers`` lists the wrappers, outermost first (``("optional",
    "sequence")`` for ``optional(seq(tensor))``).
    """

    name: str
    dtype: np.dtype
    dims: list[Any]
    hint: ValueHint
    containers: tuple[str, ...] = ()

    @property
    def rank(self) -> int:
        """Number of axes."""
        return len(self.dims)


_STRIDED = {
    "Conv",
    "ConvInteger",
    "QLinearConv",
    "MaxPool",
    "AveragePool",
    "LpPool",
}


def total_stride(model: ir.Model) -> int:
    """The largest product of strides along any path (how much a vision model downsamples)."""
    factor: dict[int, int] = {}
    for value in real_inputs(model.graph):
        factor[id(value)] = 1
    best = 1
    for node in model.graph:
        incoming = [factor.get(id(v), 0) for v in node.inputs if v is not None]
        here = max(incoming, default=0)
        if here == 0:
            continue
        if node.op_type in _STRIDED:
            strides = node.attributes.get("strides")
            if strides is not None:
                here *= max([int(s) for s in strides.as_ints()] or [1])
        for out in node.outputs:
            factor[id(out)] = here
        best = max(best, here)
    return min(best, 64)


def _spatial_axes(dims: Sequence[Any]) -> set[int]:
    """Axes of an image-like input: NCHW / NCDHW with few static channels, or NHWC."""
    rank = len(dims)
    if rank not in (4, 5):
        return set()
    channels_first = dims[1]
    if isinstance(channels_first, int) and channels_first <= 4:
        return set(range(2, rank))
    channels_last = dims[-1]
    if isinstance(channels_last, int) and channels_last <= 4:
        return set(range(1, rank - 1))
    if all(not isinstance(d, int) for d in dims[2:]):
        return set(range(2, rank))
    return set()


def overridable_inputs(model: ir.Model) -> list[ir.Value]:
    """Float graph inputs with a default value (an initializer), for IR >= 4 models.

    Feeding them random values makes a rewrite that froze one into a constant show up; integer
    ones keep their defaults (they are often shapes). IR < 4 lists every weight as an input.
    """
    if model.ir_version < 4:
        return []
    graph = model.graph
    return [
        v
        for v in graph.inputs
        if v.name in graph.initializers and v.dtype is not None and v.dtype.is_floating_point()
    ]


def input_specs(model: ir.Model, overridable: bool = False) -> list[InputSpec]:
    """The inputs to feed, with dimension keys and value hints (see :func:`input_hints`).

    With ``overridable``, float inputs that have a default value are included
    (:func:`overridable_inputs`).
    """
    hints = input_hints(model)
    specs = []
    values = real_inputs(model.graph) + (overridable_inputs(model) if overridable else [])
    for value in values:
        name = value.name or ""
        dtype = value.dtype.numpy() if value.dtype is not None else np.dtype(np.float32)
        dims: list[Any] = []
        for axis, dim in enumerate(value.shape if value.shape is not None else []):
            if isinstance(dim, int) and dim >= 0:
                dims.append(dim)
            elif value.const_value is not None:
                dims.append(int(value.const_value.shape.numpy()[axis]))
            elif isinstance(dim, ir.SymbolicDim) and dim.value and _NAMED.match(dim.value):
                dims.append(str(dim.value))
            else:
                dims.append((name, axis))
        spec = InputSpec(name, np.dtype(dtype), dims, hints.get(name, ValueHint()))
        spec.containers = _containers(value.type)
        specs.append(spec)
    return specs


def _containers(type_: ir.TypeProtocol | None) -> tuple[str, ...]:
    """The optional/sequence wrappers around an input's tensors, outermost first."""
    found: list[str] = []
    while isinstance(type_, (ir.OptionalType, ir.SequenceType)):
        found.append("optional" if isinstance(type_, ir.OptionalType) else "sequence")
        type_ = type_.elem_type
    return tuple(found)


@dataclasses.dataclass
class _DimInfo:
    key: Any
    batch: bool
    spatial: bool
    where: list[str]


def _dim_infos(specs: Sequence[InputSpec]) -> dict[Any, _DimInfo]:
    infos: dict[Any, _DimInfo] = {}
    for spec in specs:
        spatial = _spatial_axes(spec.dims)
        for axis, dim in enumerate(spec.dims):
            if isinstance(dim, int):
                continue
            info = infos.setdefault(dim, _DimInfo(dim, False, False, []))
            named = isinstance(dim, str)
            if (axis == 0 and spec.rank >= 2) or (named and _BATCH_NAMES.match(dim)):
                info.batch = True
            elif spec.rank >= 3 and 0 < axis < spec.rank - 1 and len(_symbolic(spec.dims)) == 1:
                info.batch = True  # the one free axis of a state tensor [layers, batch, hidden]
            if axis in spatial:
                info.spatial = True
            info.where.append(f"{spec.name}[{axis}]")
    for info in infos.values():
        if info.batch and info.spatial:
            info.spatial = False
    return infos


def _symbolic(dims: Sequence[Any]) -> list[Any]:
    return [d for d in dims if not isinstance(d, int)]


def _candidates(info: _DimInfo, stride: int) -> list[int]:
    if info.batch:
        return [1]
    if info.spatial:
        step = max(stride, 8)
        return sorted({1, step, 2 * step, 224 if step <= 224 else 4 * step})
    return list(SEQUENCE_CANDIDATES)


def _dim_label(key: Any) -> str:
    return key if isinstance(key, str) else f"{key[0]}[{key[1]}]"


# -- drawing feeds -------------------------------------------------------------------------


def _draw(spec: InputSpec, shape: tuple[int, ...], rng: np.random.Generator, seed: int) -> Any:
    hint, dtype = spec.hint, spec.dtype
    if hint.value is not None and hint.value.shape == shape:
        return hint.value.astype(dtype)
    if hint.choices:
        choices = list(hint.choices)
        if dtype.kind in "iu" and hint.high is not None:
            choices = [c for c in choices if (hint.low or 0) <= c < hint.high] or choices
        if not shape:  # a scalar selector: rotate through the choices with the seed
            return np.array(choices[seed % len(choices)]).astype(dtype)
        picks = rng.integers(0, len(choices), size=shape)
        return np.asarray(choices, dtype=object)[picks].astype(dtype)
    if dtype.type.__module__ == ml_dtypes.__name__:
        return _draw_narrow(spec, shape, rng, seed)
    if dtype.kind == "b":
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if dtype.kind in "iu":
        low = int(hint.low) if hint.low is not None else 0
        high = int(hint.high) if hint.high is not None else low + DEFAULT_INT_HIGH
        if hint.nonzero and low <= 0 < high:
            low = 1 if high > 1 else low
        if high <= low:
            high = low + 1
        info = np.iinfo(dtype)
        low, high = max(low, int(info.min)), min(high, int(info.max) + 1)
        return rng.integers(low, high, size=shape).astype(dtype)
    if dtype.kind in "fc":
        data = rng.standard_normal(shape)
        if hint.low is not None or hint.high is not None:
            lo = float(hint.low) if hint.low is not None else -1.0
            hi = float(hint.high) if hint.high is not None else lo + 2.0
            data = rng.uniform(lo, hi, size=shape)
        if hint.nonzero:
            data = np.where(np.abs(data) < 1e-3, 1.0, data)
        return data.astype(dtype)
    if dtype.kind in "OUS":  # strings: short lowercase words, repeated so that some match
        words = np.array(_WORDS, dtype=object)
        return words[rng.integers(0, len(_WORDS), size=shape)]
    raise VerificationError(
        f"cannot make verification data for input {spec.name!r} of dtype {dtype}",
        hint="give real inputs with --verify-data",
    )


def _draw_narrow(
    spec: InputSpec, shape: tuple[int, ...], rng: np.random.Generator, seed: int
) -> np.ndarray:
    """bfloat16, float8, float4, int4, int2 (ml_dtypes): drawn as float32 / int64, then cast."""
    dtype = spec.dtype
    wide: np.dtype[Any]
    try:
        info: Any = ml_dtypes.finfo(dtype)
        wide = np.dtype(np.float32)
    except ValueError:
        info = ml_dtypes.iinfo(dtype)
        wide = np.dtype(np.int64)
    data = _draw(dataclasses.replace(spec, dtype=wide), shape, rng, seed)
    if wide.kind == "f" and float(info.min) >= 0:  # exponent-only types hold no sign or zero
        data = np.abs(data) + float(info.tiny)
    return np.clip(data, info.min, info.max).astype(dtype)


def _draw_value(
    spec: InputSpec, shape: tuple[int, ...], rng: np.random.Generator, seed: int, depth: int = 0
) -> Any:
    """A tensor, or the sequence (a list) / present optional that ``spec.containers`` wraps."""
    if depth == len(spec.containers):
        return np.asarray(_draw(spec, shape, rng, seed))
    if spec.containers[depth] == "optional":
        return _draw_value(spec, shape, rng, seed, depth + 1)
    return [_draw_value(spec, shape, rng, seed, depth + 1) for _ in range(SEQUENCE_LENGTH)]


def make_feeds(specs: Sequence[InputSpec], dims: Mapping[Any, int], seed: int) -> dict[str, Any]:
    """One seeded feed: every input's symbolic dims bound by ``dims`` (missing keys -> 1).

    Tensor inputs get arrays, sequence inputs lists of :data:`SEQUENCE_LENGTH` arrays, optional
    inputs a present value.
    """
    rng = np.random.default_rng(seed)
    feeds: dict[str, Any] = {}
    for spec in specs:
        shape = tuple(d if isinstance(d, int) else int(dims.get(d, 1)) for d in spec.dims)
        feeds[spec.name] = _draw_value(spec, shape, rng, seed)
    return feeds


def parse_input_shapes(text: str, model: ir.Model) -> dict[str, tuple[int, ...]]:
    """``name:1x3x320x320,other:1x77`` -> shapes, checked against the model's real inputs.

    Names may contain ``:`` (the last one separates the shape). Static dimensions of the model
    must match; errors name the input and what the model declares.
    """
    specs = {s.name: s for s in input_specs(model)}
    shapes: dict[str, tuple[int, ...]] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, dims_text = item.rpartition(":")
        if not sep or not name:
            raise DataError(
                f"--input-shapes entry {item!r} is not NAME:DIMxDIMx...",
                hint="e.g. --input-shapes images:1x3x640x640,mask:1x77",
            )
        try:
            dims = tuple(int(d) for d in dims_text.lower().split("x")) if dims_text else ()
        except ValueError:
            raise DataError(
                f"--input-shapes {name!r}: {dims_text!r} is not a list of integers joined by 'x'",
                hint="e.g. --input-shapes images:1x3x640x640",
            ) from None
        spec = specs.get(name)
        if spec is None:
            raise DataError(
                f"--input-shapes names {name!r}, which is not an input of the model",
                hint="the model's inputs: " + ", ".join(specs) if specs else None,
            )
        if len(dims) != spec.rank or any(d <= 0 for d in dims):
            raise DataError(
                f"--input-shapes {name!r}: {list(dims)} does not fit the declared shape "
                f"{_declared(spec)}",
                hint="give one positive size per axis",
            )
        for axis, (want, got) in enumerate(zip(spec.dims, dims, strict=True)):
            if isinstance(want, int) and want != got:
                raise DataError(
                    f"--input-shapes {name!r}: axis {axis} is {got} but the model fixes it to "
                    f"{want} (declared {_declared(spec)})",
                    hint="only symbolic dimensions can be chosen",
                )
        shapes[name] = dims
    return shapes


def _declared(spec: InputSpec) -> str:
    return "[" + ",".join(str(d) if isinstance(d, int) else _dim_label(d) for d in spec.dims) + "]"


def _binding_from_shapes(
    specs: Sequence[InputSpec], shapes: Mapping[str, Sequence[int]]
) -> dict[Any, int]:
    binding: dict[Any, int] = {}
    for spec in specs:
        given = shapes.get(spec.name)
        if given is None:
            continue
        for dim, size in zip(spec.dims, given, strict=True):
            if isinstance(dim, int):
                continue
            if binding.get(dim, size) != size:
                raise DataError(
                    f"--input-shapes gives {_dim_label(dim)} two sizes ({binding[dim]} and {size})",
                    hint="inputs sharing a named dimension need the same size for it",
                )
            binding[dim] = size
    return binding


# -- search --------------------------------------------------------------------------------

Runner = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]


@dataclasses.dataclass
class FeedPlan:
    """Verification feeds the input model runs with, and its outputs on them.

    Attributes:
        feeds: One feed per (configuration, seed) pair checked after every pass.
        outputs: The input model's outputs on ``feeds`` (the reference).
        configs: The dimension binding of each feed, as ``{dim label: size}``.
        shapes: The input shapes of each feed, ``{input: shape}``.
        notes: What the search found out (shown in the report).
    """

    feeds: list[dict[str, np.ndarray]]
    outputs: list[dict[str, np.ndarray]]
    configs: list[dict[str, int]]
    shapes: list[dict[str, tuple[int, ...]]]
    notes: list[str] = dataclasses.field(default_factory=list)


def _attempts_a(infos: Mapping[Any, _DimInfo], stride: int) -> list[dict[Any, int]]:
    candidates = {key: _candidates(info, stride) for key, info in infos.items()}
    levels = max((len(c) for c in candidates.values()), default=1)
    attempts: list[dict[Any, int]] = []
    for level in range(levels):
        binding = {key: c[min(level, len(c) - 1)] for key, c in candidates.items()}
        if binding not in attempts:
            attempts.append(binding)
    return attempts[:MAX_ATTEMPTS]


def _attempts_b(
    infos: Mapping[Any, _DimInfo], a: Mapping[Any, int], stride: int = 1
) -> list[dict[Any, int]]:
    """Batch > 1 and a second value for the other dims.

    First the batch doubled with spatial axes at the next size the graph suggests (a multiple
    of the total stride): config A's smallest image is often 1x1, and after the first strided
    layer a 2x2 image is 1x1 too, so every later 3x3 kernel would be checked by its centre tap
    only. Then all dims doubled, then one group at a time.
    """
    def larger(key: Any, size: int) -> int:
        bigger = [c for c in _candidates(infos[key], stride) if c > size]
        return bigger[0] if bigger else 2 * size

    representative = {
        key: (larger(key, size) if infos[key].spatial else 2 * size) for key, size in a.items()
    }
    doubled = {key: 2 * size for key, size in a.items()}
    batch_only = {key: (2 * size if infos[key].batch else size) for key, size in a.items()}
    others_only = {key: (size if infos[key].batch else 2 * size) for key, size in a.items()}
    attempts: list[dict[Any, int]] = []
    for binding in (representative, doubled, batch_only, others_only):
        if binding != dict(a) and binding not in attempts:
            attempts.append(binding)
    return attempts


def _shapes(specs: Sequence[InputSpec], feed: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Input shapes of a feed (a sequence input reports the shape of its first tensor)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for spec in specs:
        value = feed.get(spec.name)
        while isinstance(value, list):
            value = value[0] if value else None
        if value is not None:
            shapes[spec.name] = tuple(int(d) for d in np.shape(value))
    return shapes


def _labelled(binding: Mapping[Any, int]) -> dict[str, int]:
    return {_dim_label(k): int(v) for k, v in binding.items()}


def find_feeds(
    model: ir.Model,
    run: Runner,
    *,
    seeds: Sequence[int] = (0, 1),
    input_shapes: Sequence[Mapping[str, Sequence[int]]] = (),
    overridable: bool = False,
) -> FeedPlan:
    """Find feeds the model runs with: at least two configurations when it has symbolic dims.

    ``run`` executes the (input) model on a feed and raises :class:`VerificationError` when
    ONNX Runtime refuses it. ``input_shapes`` (from ``--input-shapes``; one mapping per
    configuration) replaces the search for the dimensions it binds; with a single mapping a
    second configuration with a larger batch is still tried. Each configuration is paired with
    a seed (configurations and seeds cycle until both are covered). ``overridable`` also feeds
    float inputs that have a default value (:func:`overridable_inputs`).

    Same as ``FeedSearch.prepare(model, ...).run(run)``.

    Raises:
        UnsupportedModelError: no generated feed runs; the message names the inputs with what
            was tried, the hint points to ``--input-shapes`` and ``--verify-data``.
        DataError: ``input_shapes`` do not fit the model.
    """
    search = FeedSearch.prepare(
        model, seeds=seeds, input_shapes=input_shapes, overridable=overridable
    )
    return search.run(run)


@dataclasses.dataclass
class FeedSearch:
    """What the search for feeds reads from the model, taken before any run.

    :meth:`run` reads the model no more, so it can run in another thread while passes rewrite
    the model (the verifier computes the reference outputs that way).

    Attributes:
        specs: The inputs fed (real inputs, plus overridable ones when asked).
        infos: What is known of each symbolic dimension.
        stride: Total stride of the image inputs (candidate spatial sizes are multiples).
        seeds: Seeds of the feeds, paired with configurations.
        given: Dimension bindings from ``--input-shapes``, one per configuration.
    """

    specs: list[InputSpec]
    infos: dict[Any, _DimInfo]
    stride: int
    seeds: list[int]
    given: list[dict[Any, int]]

    @classmethod
    def prepare(
        cls,
        model: ir.Model,
        *,
        seeds: Sequence[int] = (0, 1),
        input_shapes: Sequence[Mapping[str, Sequence[int]]] = (),
        overridable: bool = False,
    ) -> FeedSearch:
        """Read the inputs, their hints and dimensions; raise DataError for bad ``input_shapes``."""
        specs = input_specs(model, overridable=overridable)
        given = [_binding_from_shapes(specs, shapes) for shapes in input_shapes]
        return cls(specs, _dim_infos(specs), total_stride(model), list(seeds) or [0], given)

    @property
    def inputs(self) -> frozenset[str]:
        """Names of the inputs every feed sets."""
        return frozenset(spec.name for spec in self.specs)

    def run(self, run: Runner) -> FeedPlan:
        """Search by running the model (see :func:`find_feeds`)."""
        specs, infos, seeds = self.specs, self.infos, self.seeds
        notes: list[str] = []
        failures: list[tuple[dict[Any, int], str]] = []

        def attempt(
            binding: dict[Any, int], seed: int
        ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None:
            feed = make_feeds(specs, binding, seed)
            try:
                return feed, run(feed)
            except VerificationError as exc:
                failures.append((binding, exc.message))
                logger.debug("feeds %s do not run: %s", _labelled(binding), exc.message)
                return None

        first: tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None = None
        alternatives: list[dict[Any, int]] = []
        if self.given:
            chosen = list(self.given)
            first = attempt(chosen[0], seeds[0])
            if first is None:
                raise _no_feeds_error(specs, failures, given=True)
            if len(chosen) == 1 and any(infos[k].batch for k in chosen[0]):
                alternatives = [{k: (2 * v if infos[k].batch else v) for k, v in chosen[0].items()}]
        else:
            chosen = []
            for binding in _attempts_a(infos, self.stride):
                first = attempt(binding, seeds[0])
                if first is not None:
                    chosen.append(binding)
                    break
            if first is None:
                raise _no_feeds_error(specs, failures, given=False)
            if infos:
                alternatives = _attempts_b(infos, chosen[0], self.stride)
        second = None
        for binding in alternatives:  # config B: the first alternative that runs (next seed)
            second = attempt(binding, seeds[1 % len(seeds)])
            if second is not None:
                chosen.append(binding)
                break
        if alternatives and second is None:
            notes.append(
                "one input configuration ("
                + ", ".join(f"{k}={v}" for k, v in _labelled(chosen[0]).items())
                + "): the model refused a larger batch and other sizes"
            )
        plan = FeedPlan([], [], [], [], notes)
        for index in range(max(len(chosen), len(seeds))):
            binding, seed = chosen[index % len(chosen)], seeds[index % len(seeds)]
            result = first if index == 0 else second if index == 1 else None
            if result is None:
                result = attempt(binding, seed)
            if result is None and seed != seeds[0]:  # a value choice the model refuses
                result = attempt(binding, seeds[0])
            if result is None:
                if self.given:
                    raise _no_feeds_error(specs, failures, given=True)
                continue
            feed, outputs = result
            plan.feeds.append(feed)
            plan.outputs.append(outputs)
            plan.configs.append(_labelled(binding))
            plan.shapes.append(_shapes(specs, feed))
        return plan


def _no_feeds_error(
    specs: Sequence[InputSpec],
    failures: Sequence[tuple[dict[Any, int], str]],
    given: bool,
) -> UnsupportedModelError:
    last = failures[-1][1] if failures else "no attempt ran"
    parts = []
    for spec in specs:
        tried = []
        for dim in spec.dims:
            if isinstance(dim, int):
                continue
            values = sorted({b.get(dim, 1) for b, _ in failures})
            tried.append(f"{_dim_label(dim)} in {values}")
        what = f"input {spec.name!r} {_declared(spec)} ({spec.dtype})"
        if tried:
            what += " tried with " + "; ".join(tried)
        if spec.hint.reasons:
            what += " [values: " + "; ".join(spec.hint.reasons[:2]) + "]"
        parts.append(what)
    source = "the shapes given by --input-shapes" if given else "generated inputs"
    example = next((s for s in specs if any(not isinstance(d, int) for d in s.dims)), None)
    shape_hint = (
        f"--input-shapes {example.name}:"
        + "x".join(str(d) if isinstance(d, int) else "N" for d in example.dims)
        if example is not None
        else "--input-shapes NAME:1x3x224x224"
    )
    return UnsupportedModelError(
        f"ONNX Runtime cannot run the input model on {source}: " + "; ".join(parts)
        + f". Last failure: {last}",
        hint=f"give sizes the model accepts with {shape_hint}, or real inputs with "
        "--verify-data D (any data spec); --verify none checks structure only",
    )
