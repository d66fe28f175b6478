"""Structural checks: a light one after every pass, the full ONNX checker once at the end.

:func:`check_light` walks the IR once (no serialization): every node input is defined before
use (graph input, initializer, an earlier node's output or, in a subgraph, a value of an
enclosing graph), no value is produced twice, value names are unique within a graph, graph
outputs are produced, every operator domain used is imported, and initializers hold tensors.
That is what passes get wrong; the rest of the ONNX checker's rules concern what exporters get
wrong and are checked by :func:`irpass.verify.session.check_structure` at the end.
"""

from __future__ import annotations

import onnx_ir as ir

from irpass.errors import VerificationError

__all__ = ["check_light"]


def _fail(message: str) -> VerificationError:
    return VerificationError(
        f"the model is malformed: {message}",
        hint="this is a bug in the pass that produced it; the reproducer holds its input",
    )


def _check_graph(graph: ir.Graph, outer: set[int], domains: set[str], where: str) -> None:
    defined: set[int] = set(outer)
    names: dict[str, str] = {}

    def define(value: ir.Value, what: str) -> None:
        if id(value) in defined and id(value) not in outer:
            raise _fail(f"{where}: value {value.name!r} is defined twice")
        defined.add(id(value))
        if value.name:
            if value.name in names:
                raise _fail(
                    f"{where}: name {value.name!r} is used by {names[value.name]} and by {what}"
                )
            names[value.name] = what

    for value in graph.inputs:
        define(value, "a graph input")
    for name, initializer in graph.initializers.items():
        if initializer.const_value is None:
            raise _fail(f"{where}: initializer {name!r} has no tensor")
        if id(initializer) not in defined:
            define(initializer, "an initializer")
    for node in graph:
        label = f"{node.op_type} node {node.name!r}"
        for index, read in enumerate(node.inputs):
            if read is not None and id(read) not in defined:
                raise _fail(
                    f"{where}: input {index} of {label} ({read.name!r}) is not defined before "
                    "the node (missing producer or nodes out of topological order)"
                )
        if node.domain not in domains and node.domain != "ai.onnx":
            raise _fail(f"{where}: {label} uses domain {node.domain!r}, which is not imported")
        for attr in node.attributes.values():
            subgraphs: list[ir.Graph] = []
            if attr.type == ir.AttributeType.GRAPH:
                subgraphs = [attr.as_graph()]
            elif attr.type == ir.AttributeType.GRAPHS:
                subgraphs = list(attr.as_graphs())
            for sub in subgraphs:
                _check_graph(sub, defined, domains, f"{where} > {label}.{attr.name}")
        for produced in node.outputs:
            define(produced, label)
    for value in graph.outputs:
        if id(value) not in defined:
            raise _fail(f"{where}: graph output {value.name!r} is never produced")


def check_light(model: ir.Model) -> None:
    """Raise :class:`VerificationError` naming the first structural defect of ``model``."""
    domains = set(model.opset_imports)
    if "" in domains:
        domains.add("ai.onnx")
    for function in model.functions.values():
        domains.add(function.domain)
    _check_graph(model.graph, set(), domains, "graph")
