"""Changed regions: small merged subgraphs around the changes, for the HTML report to draw."""

from __future__ import annotations

from typing import Any

import networkx as nx

from irpass.diff.match import Matcher
from irpass.diff.model import NodeInfo

__all__ = ["changed_regions"]


def changed_regions(
    matcher: Matcher,
    changed: set[int],
    max_nodes: int,
    max_regions: int,
) -> tuple[list[dict[str, Any]], int]:
    """Build merged subgraphs around changes: changed/added/removed nodes, one hop of context.

    A connected change larger than ``max_nodes`` is cut into parts in topological order.
    Returns at most ``max_regions`` regions and how many were left out.
    """
    a, b = matcher.a, matcher.b
    union = nx.DiGraph()

    def uid_a(i: int) -> str:
        return f"M{i}" if i in matcher.a_to_b else f"A{i}"

    def uid_b(j: int) -> str:
        return f"M{matcher.b_to_a[j]}" if j in matcher.b_to_a else f"B{j}"

    for i, info in enumerate(a.infos):
        if i in matcher.a_to_b:
            j = matcher.a_to_b[i]
            status = "changed" if i in changed else "unchanged"
            union.add_node(uid_a(i), info=b.infos[j], status=status, order=(i, j),
                           a=info.key, b=b.infos[j].key)
        else:
            union.add_node(uid_a(i), info=info, status="removed", order=(i, -1), a=info.key, b=None)
    for j, info in enumerate(b.infos):
        if j not in matcher.b_to_a:
            union.add_node(uid_b(j), info=info, status="added", order=(-1, j), a=None, b=info.key)
    for p, c in a.digraph.edges:
        union.add_edge(uid_a(p), uid_a(c), side="a")
    for p, c in b.digraph.edges:
        u, v = uid_b(p), uid_b(c)
        if union.has_edge(u, v):
            union.edges[u, v]["side"] = "both"
        else:
            union.add_edge(u, v, side="b")

    # constant producers that appear or vanish (constant folding) are listed in the tables;
    # drawing them would bury the compute nodes that changed
    interesting = [n for n, d in union.nodes(data=True)
                   if d["status"] != "unchanged" and not d["info"].is_constant]
    if not interesting:
        return [], 0
    keep = set(interesting)
    for n in interesting:
        for m in list(union.predecessors(n)) + list(union.successors(n)):
            if not union.nodes[m]["info"].is_constant:
                keep.add(m)
    sub = union.subgraph(keep)
    components = sorted(
        (sorted(c, key=lambda n: _order_key(union.nodes[n]["order"]))
         for c in nx.weakly_connected_components(sub)),
        key=lambda c: _order_key(union.nodes[c[0]]["order"]),
    )
    pieces: list[tuple[list[str], int, int, int]] = []
    for component in components:
        chunks = [component[k:k + max_nodes] for k in range(0, len(component), max_nodes)]
        for k, chunk in enumerate(chunks):
            pieces.append((chunk, k + 1, len(chunks), len(component)))
    regions = []
    for members, part, parts, component_size in pieces[:max_regions]:
        member_set = set(members)
        nodes = []
        for n in members:
            data = union.nodes[n]
            shown: NodeInfo = data["info"]
            nodes.append({
                "id": n,
                "op_type": shown.op_type,
                "label": shown.label,
                "status": data["status"],
                "a": data["a"],
                "b": data["b"],
            })
        edges = [
            {"from": u, "to": v, "side": union.edges[u, v]["side"]}
            for u, v in union.edges
            if u in member_set and v in member_set
        ]
        regions.append({"nodes": nodes, "edges": edges, "size": len(members),
                        "part": part, "parts": parts, "component_size": component_size})
    return regions, max(0, len(pieces) - max_regions)


def _order_key(order: tuple[int, int]) -> tuple[int, int]:
    i, j = order
    return (i if i >= 0 else j, j)
