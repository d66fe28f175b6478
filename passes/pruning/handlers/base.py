"""The surgery plan and the handler registry.

:class:`Surgery` knows, for every channel axis of a pruned group, which positions stay
(``keep`` masks, from the analysis' class maps and the selection). It rewrites constants in
place of whatever holds them (an initializer, a Constant node, the shape of a ConstantOfShape),
so a weight shared by two nodes of one group is sliced once, and counts what it removed.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Mapping

import numpy as np
import onnx_ir as ir

from irpass.analysis.channels import constant_array
from irpass.analysis.shapes import ValueInfo, inferred_values

__all__ = ["HANDLERS", "Handler", "Surgery", "handler_for", "register", "slice_constants"]

Handler = Callable[[ir.Node, "Surgery"], None]

#: op type -> surgery for nodes of that type (default: :func:`slice_constants`).
HANDLERS: dict[str, Handler] = {}


def register(*op_types: str) -> Callable[[Handler], Handler]:
    """Decorator: register a handler for ``op_types`` (each type has at most one handler)."""

    def add(handler: Handler) -> Handler:
        for op_type in op_types:
            if op_type in HANDLERS:
                raise ValueError(f"a pruning handler for {op_type} is already registered")
            HANDLERS[op_type] = handler
        return handler

    return add


def handler_for(node: ir.Node) -> Handler:
    """The handler of ``node``'s op type (default-domain ops), else :func:`slice_constants`."""
    if node.domain in ("", "ai.onnx"):
        return HANDLERS.get(node.op_type, slice_constants)
    return slice_constants


def slice_constants(node: ir.Node, surgery: Surgery) -> None:
    """Slice every constant input of ``node`` along its pruned channel axes."""
    surgery.slice_inputs(node)


class Surgery:
    """Which positions survive, and the edits that make the graph agree.

    Args:
        model: The model to rewrite in place.
        keep: ``(value, negative axis) -> bool mask`` for every channel axis of every group
            being pruned (all-True masks are allowed and mean "unchanged").
    """

    def __init__(self, model: ir.Model, keep: Mapping[tuple[ir.Value, int], np.ndarray]) -> None:
        self.model = model
        self.opset = int(model.opset_imports.get("", model.opset_imports.get("ai.onnx", 1)))
        self._keep: dict[ir.Value, dict[int, np.ndarray]] = collections.defaultdict(dict)
        for (value, axis), mask in keep.items():
            self._keep[value][axis] = np.asarray(mask, dtype=bool)
        self._sliced: set[ir.Value] = set()
        self._info: dict[str, ValueInfo] | None = None  # shapes inferred on first need
        self.stats: collections.Counter[str] = collections.Counter()

    # -- queries --------------------------------------------------------------------------
    def keep(self, value: ir.Value | None, axis: int) -> np.ndarray | None:
        """Mask of kept positions of ``value``'s ``axis`` (None when it is not a channel axis)."""
        if value is None:
            return None
        return self._keep.get(value, {}).get(axis)

    def changed(self, value: ir.Value | None, axis: int) -> bool:
        """Whether ``value`` loses positions on ``axis``."""
        mask = self.keep(value, axis)
        return mask is not None and not bool(mask.all())

    def pruned_axes(self, value: ir.Value | None) -> dict[int, np.ndarray]:
        """Axes of ``value`` that lose positions, with their masks."""
        if value is None:
            return {}
        return {a: m for a, m in self._keep.get(value, {}).items() if not m.all()}

    def const(self, value: ir.Value | None) -> np.ndarray | None:
        """Contents of a constant input (as currently in the model)."""
        return constant_array(value)

    def dims(self, value: ir.Value | None) -> list[int | str | None] | None:
        """Dims of ``value`` as declared, else as ONNX shape inference finds them."""
        if value is None:
            return None
        shape = value.shape
        if shape is None:
            if self._info is None:
                self._info = inferred_values(self.model)
            shape = self._info.get(value.name or "", (None, None))[0]
        if shape is None:
            return None
        return [d if isinstance(d, int) else (d.value or None) for d in shape]

    # -- edits ----------------------------------------------------------------------------
    def slice_inputs(self, node: ir.Node) -> None:
        """Slice each constant input of ``node`` along its pruned axes (once per constant)."""
        for value in node.inputs:
            if value is not None and self.pruned_axes(value) and constant_array(value) is not None:
                self.slice_constant(value)

    def slice_constant(self, value: ir.Value) -> None:
        """Drop the pruned positions of a constant (initializer, Constant, ConstantOfShape)."""
        if value in self._sliced:
            return
        axes = self.pruned_axes(value)
        array = constant_array(value)
        if array is None:
            raise ValueError(f"{value.name!r} is not a constant; it cannot be sliced")
        pruned = array
        for axis, mask in sorted(axes.items()):
            pruned = np.compress(mask, pruned, axis=axis)
        self._write(value, pruned)
        self._sliced.add(value)
        self.stats["params_removed"] += int(array.size - pruned.size)

    def unsliced_constants(self) -> list[ir.Value]:
        """Constants that lose positions but that no handler sliced (a surgery bug)."""
        return [
            value
            for value, axes in self._keep.items()
            if value not in self._sliced
            and any(not m.all() for m in axes.values())
            and constant_array(value) is not None
        ]

    def update_shapes(self) -> None:
        """Set the declared size of every pruned axis of every non-constant value."""
        for value, axes in self._keep.items():
            if value.shape is None or value in self._sliced:
                continue
            dims = list(value.shape)
            for axis, mask in axes.items():
                if -axis <= len(dims) and isinstance(dims[axis], int):
                    dims[axis] = int(mask.sum())
            value.shape = ir.Shape(dims)

    def replace_input(self, node: ir.Node, index: int, array: np.ndarray, base: str) -> None:
        """Feed ``node``'s input ``index`` from a new initializer holding ``array``."""
        graph = node.graph
        if graph is None:
            raise ValueError(f"node {node.name!r} is not in a graph")
        name = _unique_name(graph, base)
        value = ir.Value(name=name, const_value=ir.tensor(np.asarray(array), name=name))
        value.shape = ir.Shape(np.asarray(array).shape)
        value.dtype = ir.DataType.from_numpy(np.asarray(array).dtype)
        graph.register_initializer(value)
        if index >= len(node.inputs):
            node.resize_inputs(index + 1)
        old = node.inputs[index]
        node.replace_input_with(index, value)
        self.stats["params_added"] += int(np.asarray(array).size)
        if old is not None:
            self._drop_if_unused(old)

    def _drop_if_unused(self, value: ir.Value) -> None:
        """Remove a constant nothing reads any more (a replaced shape or bounds tensor)."""
        if value.uses() or value.is_graph_output() or value.is_graph_input():
            return
        array = constant_array(value)
        producer = value.producer()
        graph = value.graph
        if producer is None and graph is not None and value.name in graph.initializers:
            del graph.initializers[str(value.name)]
        elif producer is not None and producer.op_type == "Constant" and producer.graph is not None:
            producer.graph.remove(producer, safe=True)
        else:
            return
        self.stats["params_removed"] += 0 if array is None else int(array.size)

    def set_ints_attribute(self, node: ir.Node, name: str, values: Iterable[int]) -> None:
        """Set (or replace) an integer-list attribute."""
        node.attributes[name] = ir.AttrInt64s(name, [int(v) for v in values])

    def set_int_attribute(self, node: ir.Node, name: str, value: int) -> None:
        """Set (or replace) an integer attribute."""
        node.attributes[name] = ir.AttrInt64(name, int(value))

    def _write(self, value: ir.Value, array: np.ndarray) -> None:
        producer = value.producer()
        if producer is None:
            value.const_value = ir.tensor(array, name=value.name)
        elif producer.op_type == "Constant":
            for key in list(producer.attributes):
                del producer.attributes[key]
            producer.attributes["value"] = ir.AttrTensor("value", ir.tensor(array))
        elif producer.op_type == "ConstantOfShape":
            shape = np.array(array.shape, dtype=np.int64)
            self.replace_input(producer, 0, shape, (value.name or "pruned") + "_shape")
        else:
            raise ValueError(f"cannot rewrite the constant {value.name!r} ({producer.op_type})")
        value.shape = ir.Shape(array.shape)
        if value.dtype is None:  # a shape without a type is dropped with a warning on save
            value.dtype = ir.DataType.from_numpy(array.dtype)


def _unique_name(graph: ir.Graph, base: str) -> str:
    taken = set(graph.initializers)
    for node in graph:
        taken.update(v.name for v in node.outputs if v.name)
    taken.update(v.name for v in graph.inputs if v.name)
    name, n = base, 1
    while name in taken:
        name = f"{base}_{n}"
        n += 1
    return name
