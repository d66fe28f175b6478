"""Give dynamic graph inputs fixed shapes (NNAPI takes no dynamic shapes; Core ML prefers none).

::

    g (float[batch, 3, H, W] x) => (float[batch, 10] y)
    fix_input_shapes(shapes=["x:1x3x224x224"])
    -> g (float[1, 3, 224, 224] x) => (float[1, 10] y)

Every symbolic dim named in a fixed input (``batch``, ``H``, ``W``) takes its value wherever
else it appears (other inputs, outputs, intermediate values, subgraphs), so the whole graph
agrees; shape inference and constant folding then resolve what the dims fed (Shape -> Gather ->
Reshape chains fold away). A static dim that contradicts the given shape, a wrong rank or an
unknown input name is an error and leaves the model unchanged.

On inputs of the fixed shapes the model computes exactly what it computed before; it just no
longer accepts other shapes. Run it before verification inputs are derived (``irpass optimize
--target android`` does this as its first step, with ``--input-shapes`` or the data's shapes).
"""

from __future__ import annotations

import dataclasses

import onnx_ir as ir

from irpass.pass_base import IrpassPass, option
from irpass.registry import register

__all__ = ["FixInputShapesPass", "format_shape_spec", "parse_shape_spec"]


def parse_shape_spec(spec: str) -> tuple[str, tuple[int, ...]]:
    """``"x:1x3x224x224"`` -> ``("x", (1, 3, 224, 224))`` (trtexec's ``--shapes`` syntax)."""
    name, sep, dims = spec.rpartition(":")
    if not sep or not name:
        raise ValueError(f"shape {spec!r} must look like name:1x3x224x224")
    try:
        shape = tuple(int(d) for d in dims.split("x")) if dims else ()
    except ValueError:
        raise ValueError(f"shape {spec!r}: dims must be integers separated by 'x'") from None
    if any(d < 0 for d in shape):
        raise ValueError(f"shape {spec!r}: dims must not be negative")
    return name, shape


def format_shape_spec(name: str, shape: tuple[int, ...]) -> str:
    """The inverse of :func:`parse_shape_spec`."""
    return f"{name}:{'x'.join(str(d) for d in shape)}"


@dataclasses.dataclass(frozen=True)
class FixInputShapesOptions:
    """Options of fix_input_shapes."""

    shapes: tuple[str, ...] = option((), "input shapes as name:1x3x224x224 (trtexec syntax)")

    def __post_init__(self) -> None:
        names = [parse_shape_spec(s)[0] for s in self.shapes]
        if len(set(names)) != len(names):
            raise ValueError("an input is named twice in shapes")


def _plan(graph: ir.Graph, shapes: dict[str, tuple[int, ...]]) -> dict[str, int]:
    """Check the requested shapes against the inputs; return symbolic dim name -> value."""
    inputs = {v.name: v for v in graph.inputs}
    params: dict[str, int] = {}
    for name, shape in shapes.items():
        value = inputs.get(name)
        if value is None:
            raise ValueError(
                f"fix_input_shapes: the model has no input {name!r}; inputs: "
                + ", ".join(str(n) for n in inputs)
            )
        declared = value.shape
        if declared is None:
            continue
        if len(declared) != len(shape):
            raise ValueError(
                f"fix_input_shapes: input {name!r} has rank {len(declared)}, "
                f"the shape {list(shape)} has rank {len(shape)}"
            )
        for axis, (dim, wanted) in enumerate(zip(declared, shape, strict=True)):
            if isinstance(dim, int):
                if dim != wanted:
                    raise ValueError(
                        f"fix_input_shapes: input {name!r} dim {axis} is {dim}, not {wanted}"
                    )
            elif dim.value is not None:
                if params.setdefault(dim.value, wanted) != wanted:
                    raise ValueError(
                        f"fix_input_shapes: dim {dim.value!r} is given both "
                        f"{params[dim.value]} and {wanted}"
                    )
    return params


def _substitute(shape: ir.Shape, params: dict[str, int]) -> ir.Shape | None:
    dims: list[int | str | None] = []
    changed = False
    for dim in shape:
        if not isinstance(dim, int) and dim.value in params:
            dims.append(params[dim.value])
            changed = True
        else:
            dims.append(dim if isinstance(dim, int) else dim.value)
    return ir.Shape(dims) if changed else None


@register
class FixInputShapesPass(IrpassPass):
    """Fix dynamic input dims to given values and propagate the dim names through the graph."""

    name = "fix_input_shapes"
    lossless = True
    recurses_into_subgraphs = True
    Options = FixInputShapesOptions

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Check every requested shape first, then rewrite declared shapes."""
        shapes = dict(parse_shape_spec(s) for s in self.options.shapes)
        params = _plan(model.graph, shapes)
        modified = False
        for value in model.graph.inputs:
            shape = shapes.get(str(value.name))
            if shape is not None and (value.shape is None or tuple(value.shape) != shape):
                value.shape = ir.Shape(shape)
                self.stats["inputs"] += 1
                modified = True
        if params:
            for graph in model.graphs():
                values = [*graph.inputs, *graph.outputs]
                values += [out for node in graph for out in node.outputs]
                for value in values:
                    if value.shape is None:
                        continue
                    new = _substitute(value.shape, params)
                    if new is not None:
                        value.shape = new
                        self.stats["values"] += 1
                        modified = True
        return ir.passes.PassResult(model, modified=modified)
