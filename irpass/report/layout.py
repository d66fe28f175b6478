"""Layout of a changed graph region as SVG: longest-path layers, barycenter ordering."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import networkx as nx

from irpass.report.format import as_list, esc

__all__ = [
    "STATUS_FILL",
    "graph_region_svg",
]


STATUS_FILL = {
    "added": ("#e3f5ea", "#1f8a4c"),
    "removed": ("#fbe4e2", "#b3261e"),
    "changed": ("#fff3cd", "#9a6700"),
    "unchanged": ("#ffffff", "#8a93a3"),
}


_NODE_W, _NODE_H, _GAP_X, _GAP_Y, _MARGIN = 168, 40, 22, 46, 20


def _layers(g: nx.DiGraph) -> list[list[str]]:
    """Longest-path layering, then barycenter ordering (a few down/up sweeps)."""
    if not nx.is_directed_acyclic_graph(g):
        # A and B can order the same matched nodes differently (e.g. Relu/MaxPool swapped):
        # lay out by the edges that agree with the region's node order, draw them all
        acyclic = nx.DiGraph()
        acyclic.add_nodes_from(g.nodes(data=True))
        acyclic.add_edges_from((u, v) for u, v in g.edges
                               if g.nodes[u]["order"] < g.nodes[v]["order"])
        g = acyclic
    depth = {n: d for d, gen in enumerate(nx.topological_generations(g)) for n in gen}
    # sources (weights, inputs) sit just above their first consumer, not all in the top row
    for n in g.nodes:
        if g.in_degree(n) == 0 and g.out_degree(n) > 0:
            depth[n] = max(depth[n], min(depth[m] for m in g.successors(n)) - 1)
    layers = [sorted((n for n in g.nodes if depth[n] == d), key=lambda n: g.nodes[n]["order"])
              for d in range(max(depth.values()) + 1)]
    layers = [layer for layer in layers if layer]
    for sweep in range(4):
        downward = sweep % 2 == 0
        pos: dict[str, float] = {}
        for layer in layers if downward else list(reversed(layers)):
            if pos:
                keys = {}
                for n in layer:
                    near = g.predecessors(n) if downward else g.successors(n)
                    known = [pos[m] for m in near if m in pos]
                    keys[n] = (sum(known) / len(known) if known else float("inf"),
                               g.nodes[n]["order"])
                layer.sort(key=keys.__getitem__)
            for k, n in enumerate(layer):
                pos[n] = k - (len(layer) - 1) / 2
    return layers


def graph_region_svg(region: Mapping[str, Any], changes: Mapping[str, list[str]] | None = None,
                     svg_id: str = "region") -> str:
    """Lay out one changed region of a diff (``diff["regions"][k]``) as an SVG.

    Nodes are coloured by status (added / removed / changed / unchanged context); edges that
    exist only in A are dashed red, only in B green. ``changes`` maps a node's A key to the
    change texts shown in its tooltip.
    """
    changes = changes or {}
    g = nx.DiGraph()
    for k, node in enumerate(as_list(region.get("nodes"))):
        if isinstance(node, dict) and node.get("id") is not None:
            g.add_node(str(node["id"]), order=k, **{f"n_{x}": node.get(x) for x in
                                                    ("op_type", "label", "status", "a", "b")})
    for edge in as_list(region.get("edges")):
        if isinstance(edge, dict) and str(edge.get("from")) in g and str(edge.get("to")) in g:
            g.add_edge(str(edge["from"]), str(edge["to"]), side=edge.get("side", "both"))
    if not g:
        return ""
    layers = _layers(g)
    widest = max(len(layer) for layer in layers)
    nodes_w = 2 * _MARGIN + widest * _NODE_W + (widest - 1) * _GAP_X
    width = nodes_w + _NODE_W * 0.8  # room on the right for edges bowing around layers
    height = 2 * _MARGIN + len(layers) * _NODE_H + (len(layers) - 1) * _GAP_Y
    xy: dict[str, tuple[float, float]] = {}
    for depth, layer in enumerate(layers):
        row_w = len(layer) * _NODE_W + (len(layer) - 1) * _GAP_X
        left = (nodes_w - row_w) / 2
        for k, n in enumerate(layer):
            xy[n] = (left + k * (_NODE_W + _GAP_X), _MARGIN + depth * (_NODE_H + _GAP_Y))
    parts = [
        f'<defs><marker id="arr-{esc(svg_id)}" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#6b7380"/></marker>'
        "</defs>"
    ]
    for u, v, data in g.edges(data=True):
        (ux, uy), (vx, vy) = xy[u], xy[v]
        x1, y1 = ux + _NODE_W / 2, uy + _NODE_H
        x2, y2 = vx + _NODE_W / 2, vy
        if y2 <= y1:  # edge against the layering (only for cyclic input): route around
            y2 = vy + _NODE_H
        mid = (y1 + y2) / 2
        c1x, c2x, c1y, c2y = x1, x2, mid, mid
        if vy - uy > 1.5 * (_NODE_H + _GAP_Y):  # skips a layer: bow sideways around it
            bow = _NODE_W * 0.75
            c1x, c2x = x1 + bow, x2 + bow
            c1y, c2y = y1 + (y2 - y1) * 0.25, y2 - (y2 - y1) * 0.25
        side = data.get("side")
        style = {"a": 'stroke="#b3261e" stroke-dasharray="5,4"',
                 "b": 'stroke="#1f8a4c" stroke-width="1.8"'}.get(side, 'stroke="#8a93a3"')
        parts.append(f'<path d="M{x1:.1f},{y1:.1f} C{c1x:.1f},{c1y:.1f} {c2x:.1f},{c2y:.1f} '
                     f'{x2:.1f},{y2:.1f}" fill="none" {style} '
                     f'marker-end="url(#arr-{esc(svg_id)})"/>')
    for n, data in g.nodes(data=True):
        x, y = xy[n]
        status = str(data.get("n_status") or "unchanged")
        fill, stroke = STATUS_FILL.get(status, STATUS_FILL["unchanged"])
        op = str(data.get("n_op_type") or "?")
        label = str(data.get("n_label") or "")
        tip = [f"{op} ({status})", label]
        tip += changes.get(str(data.get("n_a")), [])
        short = label if len(label) <= 26 else "…" + label[-25:]
        dash = ' stroke-dasharray="4,3"' if status == "removed" else ""
        parts.append(
            f'<g class="node {esc(status)}"><title>{esc(chr(10).join(tip))}</title>'
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{_NODE_W}" height="{_NODE_H}" rx="6" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="1.5"{dash}/>'
            f'<text x="{x + _NODE_W / 2:.1f}" y="{y + 16:.1f}" text-anchor="middle" '
            f'font-size="12.5" font-weight="600" fill="#1d2430">{esc(op)}</text>'
            f'<text x="{x + _NODE_W / 2:.1f}" y="{y + 31:.1f}" text-anchor="middle" '
            f'font-size="10" fill="#5b6576">{esc(short)}</text></g>'
        )
    return (f'<svg id="{esc(svg_id)}" class="graph" xmlns="http://www.w3.org/2000/svg" '
            f'width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}">'
            + "".join(parts) + "</svg>")
