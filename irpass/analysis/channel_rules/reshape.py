"""Channel rules of Reshape and Flatten: runs of dims with equal products carry channels."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import onnx_ir as ir

from irpass.analysis.channel_rules._base import (
    INVERSE,
    Constants,
    Context,
    attr_int,
    const_ints,
    label,
    rule,
    slice_params,
)

Dims = list[int | str | None]


def factor_dims(in_dims: Dims, out_dims: Dims) -> list[tuple[list[int], list[int]]] | None:
    """Pair up runs of input and output dims with equal products (the reshape's structure).

    Equal dims (same number or same symbol) pair one-to-one; unit dims stand alone; other
    runs must be static. None when the dims cannot be related.
    """
    groups: list[tuple[list[int], list[int]]] = []
    i = j = 0
    while i < len(in_dims) or j < len(out_dims):
        a = in_dims[i] if i < len(in_dims) else None
        b = out_dims[j] if j < len(out_dims) else None
        if i < len(in_dims) and j < len(out_dims) and a is not None and a == b:
            groups.append(([i], [j]))
            i, j = i + 1, j + 1
        elif a == 1:
            groups.append(([i], []))
            i += 1
        elif b == 1:
            groups.append(([], [j]))
            j += 1
        else:
            gi, gj = [i], [j]
            if not isinstance(a, int) or not isinstance(b, int):
                return None
            pa, pb = a, b
            i, j = i + 1, j + 1
            while pa != pb:
                if pa < pb:
                    if i >= len(in_dims) or not isinstance(in_dims[i], int):
                        return None
                    pa *= int(in_dims[i])  # type: ignore[arg-type]
                    gi.append(i)
                    i += 1
                else:
                    if j >= len(out_dims) or not isinstance(out_dims[j], int):
                        return None
                    pb *= int(out_dims[j])  # type: ignore[arg-type]
                    gj.append(j)
                    j += 1
            groups.append((gi, gj))
    return groups


ShapeSource = tuple[ir.Node, int, int]


def shape_entries(ctx: Constants, value: ir.Value | None) -> Dims | None:
    """What a shape tensor holds, entry by entry: ints, symbols of a ``Shape(x)``, or None.

    Follows the Concat / Shape / Gather / Slice / Cast / Squeeze / Unsqueeze chains exporters
    build dynamic target shapes from.
    """
    traced = _trace_shape(ctx, value)
    return None if traced is None else [entry for entry, _ in traced]


def shape_sources(ctx: Constants, node: ir.Node, index: int) -> list[ShapeSource | None] | None:
    """Where each entry of ``node``'s shape input ``index`` can be rewritten.

    Entries are ``(consumer node, input index, offset)``: an entry is rewritable when it
    comes from a constant that reaches the shape through Concat / Cast / Identity nodes used
    by nothing else (so the edit changes only this shape).
    """
    traced = _trace_shape(ctx, node.inputs[index], (node, index))
    return None if traced is None else [source for _, source in traced]


def _trace_shape(
    ctx: Constants, value: ir.Value | None, consumer: tuple[ir.Node, int] | None = None
) -> list[tuple[int | str | None, ShapeSource | None]] | None:
    if value is None:
        return None
    array = ctx.const(value)
    if array is not None:
        private = consumer is not None and len(value.uses()) == 1 and not value.is_graph_output()
        return [
            (int(v), (consumer[0], consumer[1], k) if private and consumer else None)
            for k, v in enumerate(array.reshape(-1))
        ]
    node = value.producer()
    if node is None or node.domain not in ("", "ai.onnx"):
        return None
    op = node.op_type
    single = len(value.uses()) == 1 and not value.is_graph_output()
    if op in ("Cast", "Identity"):
        inner = _trace_shape(ctx, node.inputs[0], (node, 0))
        return None if inner is None else [(e, s if single else None) for e, s in inner]
    if op == "Concat":
        parts = [_trace_shape(ctx, v, (node, k)) for k, v in enumerate(node.inputs)]
        if any(p is None for p in parts):
            return None
        return [(e, s if single else None) for p in parts for e, s in p]  # type: ignore[union-attr]
    if op in ("Squeeze", "Unsqueeze", "Reshape"):
        inner = _trace_shape(ctx, node.inputs[0])
        return None if inner is None or len(inner) != 1 else [(inner[0][0], None)]
    if op == "Shape":
        dims = ctx.dims(node.inputs[0])
        if dims is None:
            return None
        start, end = attr_int(node, "start", 0), attr_int(node, "end", len(dims))
        return [(d, None) for d in dims[slice(start, end)]]
    if op in ("Gather", "Slice"):
        inner = _trace_shape(ctx, node.inputs[0])
        if inner is None:
            return None
        if op == "Gather":
            index = const_ints(ctx, node.inputs[1])
            return None if index is None else [(inner[k][0], None) for k in index]
        params = slice_params(ctx, node, 1)
        if params is None or len(params) != 1:
            return None
        _, start, end, step = params[0]
        return [(e, None) for e, _ in inner[slice(start, end, step)]]
    return None


def _resolve(in_dims: Dims, entries: Dims, allowzero: bool) -> Dims:
    out: Dims = [
        in_dims[k] if (e == 0 and not allowzero and k < len(in_dims)) else e
        for k, e in enumerate(entries)
    ]
    if out.count(-1) == 1:
        static_in = math.prod(d for d in in_dims if isinstance(d, int))
        symbols_in = [d for d in in_dims if not isinstance(d, int)]
        others = [d for d in out if d != -1]
        static_out = math.prod(d for d in others if isinstance(d, int))
        symbols_out = [d for d in others if not isinstance(d, int)]
        index = out.index(-1)
        if any(s is None for s in symbols_in + symbols_out):
            out[index] = None
        elif sorted(map(str, symbols_in)) == sorted(map(str, symbols_out)):
            out[index] = (
                static_in // static_out if static_out and static_in % static_out == 0 else None
            )
        elif not symbols_out and len(symbols_in) == 1 and static_in == static_out:
            out[index] = symbols_in[0]
        else:
            out[index] = None
    return out


def _carry(
    ctx: Context,
    elements: np.ndarray,
    position: int,
    in_dims: Dims,
    out_dims: Dims,
    group: tuple[list[int], list[int]],
) -> tuple[int, np.ndarray] | str:
    """Map one mapped input axis through a reshape group: (output axis, its ids) or why not."""
    gi, gj = group
    if len(gi) == 1 and len(gj) == 1 and in_dims[gi[0]] == out_dims[gj[0]]:
        return gj[0], elements
    if not gj:
        return "removes the channel axis"
    d_in = [int(in_dims[k]) for k in gi]  # type: ignore[arg-type]
    d_out = [int(out_dims[k]) for k in gj]  # type: ignore[arg-type]
    flat = elements[np.indices(d_in)[gi.index(position)].reshape(-1)]
    grid = flat.reshape(d_out)
    roots = ctx.roots(grid)
    candidates = [t for t, d in enumerate(d_out) if d > 1]
    for t in candidates:
        view = np.moveaxis(roots, t, 0).reshape(d_out[t], -1)
        if np.all(view == view[:, :1]):
            return gj[t], np.moveaxis(grid, t, 0).reshape(d_out[t], -1)[:, 0]
    if not ctx.attention or len(candidates) < 2:
        return (
            f"splits the channel axis into {d_out} (ambiguous: heads, groups or spatial "
            "blocks; prune(attention=true) reads [..., heads, head_dim] as heads)"
        )
    # Attention: [..., heads, head_dim]: a head (its head_dim positions, and its q/k/v
    # copies) is one unit.
    t = candidates[-2]
    view = np.moveaxis(grid, t, 0).reshape(d_out[t], -1)
    for column in range(1, view.shape[1]):
        ctx.union(view[:, 0], view[:, column])
    return gj[t], view[:, 0]


def _map_reshape(
    ctx: Context,
    node: ir.Node,
    in_dims: Dims | None,
    out_dims: Dims | None,
    entries: Dims | None,
    editable: Sequence[bool],
    allowzero: bool = False,
) -> None:
    """Carry channel maps through a reshape; ``entries`` None means a Flatten (no target)."""
    x, out = node.inputs[0], node.outputs[0]
    maps = ctx.all_maps(x)
    if not maps:
        return
    where = label(node)
    groups = (
        factor_dims(in_dims, out_dims) if in_dims is not None and out_dims is not None else None
    )
    if groups is None or in_dims is None or out_dims is None:
        for elements in maps.values():
            ctx.freeze(elements, f"{where}: input and output shapes cannot be related")
        return
    rank, out_rank = len(in_dims), len(out_dims)
    copied = set() if allowzero else {k for k, e in enumerate(entries or []) if e == 0 and k < rank}
    for axis, elements in maps.items():
        position = axis + rank
        group = next(g for g in groups if position in g[0])
        if any(p - rank in maps for p in group[0] if p != position):
            ctx.freeze(elements, f"{where} merges two channel axes")
            continue
        carried = _carry(ctx, elements, position, in_dims, out_dims, group)
        if isinstance(carried, str):
            ctx.freeze(elements, f"{where} {carried}")
            continue
        target, out_el = carried
        entry = entries[target] if entries is not None and target < len(entries) else None
        ok_entry = (
            entries is None
            or entry == -1
            or (entry is not None and entry != 0 and target < len(editable) and editable[target])
            or (entry == 0 and not allowzero and group == ([position], [target]))
        )
        bad_copy = [k for k in copied if k - rank in maps and k != target]
        if not ok_entry or bad_copy:
            ctx.freeze(
                elements,
                f"{where}: the target shape entry for the channel axis is computed at run time",
            )
            continue
        ctx.set(out, target - out_rank, out_el)


@rule("Reshape")
def _reshape(ctx: Context, node: ir.Node) -> None:
    """Runs of dims with equal products map channel i to its block (merge) or split it."""
    x, shape = node.inputs[0], node.inputs[1]
    in_dims = ctx.dims(x)
    entries = shape_entries(ctx, shape)
    sources = shape_sources(ctx, node, 1)
    allowzero = bool(attr_int(node, "allowzero", 0))
    out_dims = ctx.dims(node.outputs[0])
    if entries is not None and in_dims is not None:
        resolved = _resolve(in_dims, entries, allowzero)
        if out_dims is None or len(out_dims) != len(resolved):
            out_dims = resolved
        else:
            out_dims = [r if r is not None else o for r, o in zip(resolved, out_dims, strict=True)]
    if entries is None:
        for elements in ctx.all_maps(x).values():
            ctx.freeze(elements, f"{label(node)}: its target shape is computed at run time")
        return
    editable = [s is not None for s in sources or []]
    _map_reshape(ctx, node, in_dims, out_dims, entries, editable, allowzero)


def _inverse_reshape(ctx: Context, node: ir.Node, axis: int) -> tuple[ir.Value | None, int] | None:
    in_dims, out_dims = ctx.dims(node.inputs[0]), ctx.dims(node.outputs[0])
    groups = (
        factor_dims(in_dims, out_dims) if in_dims is not None and out_dims is not None else None
    )
    if groups is None or in_dims is None or out_dims is None:
        return None
    position = axis + len(out_dims)
    for gi, gj in groups:
        if gj == [position] and len(gi) == 1 and in_dims[gi[0]] == out_dims[position]:
            return node.inputs[0], gi[0] - len(in_dims)
    return None


INVERSE["Reshape"] = _inverse_reshape


@rule("Flatten")
def _flatten(ctx: Context, node: ir.Node) -> None:
    """[d0..d(a-1) | da..] -> 2-D: a channel on the right expands to its block of positions."""
    in_dims = ctx.dims(node.inputs[0])
    if in_dims is None:
        _map_reshape(ctx, node, None, None, None, [])
        return
    along = attr_int(node, "axis", 1) % (len(in_dims) + 1) if in_dims else 0

    def product(dims: Dims) -> int | str | None:
        if all(isinstance(d, int) for d in dims):
            return math.prod(dims)  # type: ignore[arg-type]
        if len(dims) == 1 or sum(d != 1 for d in dims) == 1:
            return next(d for d in dims if d != 1)
        return None

    out_dims: Dims = [product(in_dims[:along]), product(in_dims[along:])]
    _map_reshape(ctx, node, in_dims, out_dims, None, [])
