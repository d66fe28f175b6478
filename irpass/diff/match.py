"""Node matching between the two graphs of a diff (the phases in :mod:`irpass.diff`)."""

from __future__ import annotations

import collections
import difflib
import logging
import warnings
from collections.abc import Iterable

import networkx as nx
import onnx_ir as ir

from irpass.diff.model import TRANSPARENT_OPS, NodeInfo, shapes_agree
from irpass.diff.snapshot import snapshot, weight_info

__all__ = ["Matcher", "Side"]

logger = logging.getLogger(__name__)


class Side:
    """One graph prepared for matching: topological node list, producer/consumer maps."""

    def __init__(self, side: str, graph: ir.Graph) -> None:
        self.graph = graph
        self.nodes: list[ir.Node] = _topological(graph)
        self.index = {id(n): i for i, n in enumerate(self.nodes)}
        self.infos = snapshot(side, self.nodes)
        self.digraph = nx.DiGraph()
        self.digraph.add_nodes_from(range(len(self.nodes)))
        for i, node in enumerate(self.nodes):
            for value in node.inputs:
                producer = value.producer() if value is not None else None
                if producer is not None and id(producer) in self.index:
                    self.digraph.add_edge(self.index[id(producer)], i)
        self.inputs = {v.name: v for v in graph.inputs if v.name}
        self.outputs = [v for v in graph.outputs]

    def node_of(self, node: ir.Node | None) -> int | None:
        """Index of ``node`` in this side's topological order (None if not in the graph)."""
        return self.index.get(id(node)) if node is not None else None

    def producer(self, value: ir.Value | None) -> int | None:
        """Index of the node producing ``value``, None for inputs and constants."""
        return self.node_of(value.producer()) if value is not None else None

    def consumers(self, value: ir.Value | None) -> list[tuple[int, int]]:
        """Sorted ``(node index, input slot)`` pairs that consume ``value``."""
        if value is None:
            return []
        out = []
        for use in value.uses():
            i = self.node_of(use.node)
            if i is not None:
                out.append((i, use.idx))
        return sorted(set(out))


def _topological(graph: ir.Graph) -> list[ir.Node]:
    nodes = list(graph)
    position = {id(n): i for i, n in enumerate(nodes)}
    dg = nx.DiGraph()
    dg.add_nodes_from(range(len(nodes)))
    for i, node in enumerate(nodes):
        for value in node.inputs:
            producer = value.producer() if value is not None else None
            if producer is not None and id(producer) in position:
                dg.add_edge(position[id(producer)], i)
    try:
        order = list(nx.lexicographical_topological_sort(dg))
    except nx.NetworkXUnfeasible:
        logger.debug("graph %r has a cycle; keeping file order", graph.name)
        order = list(range(len(nodes)))
    return [nodes[i] for i in order]


def _wl_hashes(side: Side, iterations: int = 3) -> list[str]:
    """Weisfeiler-Lehman hash of each node's op-type neighbourhood (direction-aware)."""
    dg = side.digraph.copy()
    for i, info in enumerate(side.infos):
        dg.nodes[i]["label"] = f"{info.domain}:{info.op_type}"
    with warnings.catch_warnings():
        # networkx >= 3.5 warns that directed hashes changed; we only compare within one run
        warnings.simplefilter("ignore", UserWarning)
        hashes = nx.weisfeiler_lehman_subgraph_hashes(dg, node_attr="label",
                                                      iterations=iterations)
    return [hashes[i][-1] if hashes[i] else side.infos[i].op_type for i in range(len(side.infos))]


# ----------------------------------------------------------------------------- matching


def _order_key_of(info: NodeInfo) -> str:
    outputs = ";".join(t.type_text() for t in info.outputs)
    return f"{info.domain}:{info.op_type}:{outputs}"


class Matcher:
    """Pairs the nodes of two sides phase by phase; :meth:`run` runs the phases in order."""

    def __init__(self, a: Side, b: Side) -> None:
        self.a = a
        self.b = b
        self.a_to_b: dict[int, int] = {}
        self.b_to_a: dict[int, int] = {}
        self.method: dict[int, str] = {}
        self.wl_a = _wl_hashes(a)
        self.wl_b = _wl_hashes(b)

    def pair(self, i: int, j: int, method: str) -> bool:
        """Pair A node ``i`` with B node ``j`` unless either is taken; True when paired."""
        if i in self.a_to_b or j in self.b_to_a:
            return False
        self.a_to_b[i] = j
        self.b_to_a[j] = i
        self.method[i] = method
        return True

    def free_a(self) -> list[int]:
        """Unpaired A nodes in order."""
        return [i for i in range(len(self.a.nodes)) if i not in self.a_to_b]

    def free_b(self) -> list[int]:
        """Unpaired B nodes in order."""
        return [j for j in range(len(self.b.nodes)) if j not in self.b_to_a]

    # -- phases

    def by_name(self) -> None:
        """Phase ``name``: equal, unique, non-empty node names."""
        names_a = collections.Counter(n.name for n in self.a.nodes if n.name)
        names_b = collections.Counter(n.name for n in self.b.nodes if n.name)
        index_b = {n.name: j for j, n in enumerate(self.b.nodes) if n.name}
        for i, node in enumerate(self.a.nodes):
            if node.name and names_a[node.name] == 1 and names_b.get(node.name) == 1:
                self.pair(i, index_b[node.name], "name")

    def by_outputs(self) -> None:
        """Phase ``outputs``: same op type and an equal output tensor name."""
        index_b: dict[tuple[str, str], list[int]] = collections.defaultdict(list)
        for j, node in enumerate(self.b.nodes):
            if j in self.b_to_a:
                continue
            for value in node.outputs:
                if value.name:
                    index_b[(node.op_type, value.name)].append(j)
        for i, node in enumerate(self.a.nodes):
            if i in self.a_to_b:
                continue
            for value in node.outputs:
                candidates = index_b.get((node.op_type, value.name or ""), [])
                if len(candidates) == 1 and self.pair(i, candidates[0], "outputs"):
                    break

    def score(self, i: int, j: int) -> float:
        """Similarity of A node ``i`` and B node ``j``, used to break ties between candidates."""
        ia, jb = self.a.infos[i], self.b.infos[j]
        score = 0.0
        preds = [(self.a_to_b.get(p), p) for p in self.a.digraph.predecessors(i)]
        succs = [(self.a_to_b.get(s), s) for s in self.a.digraph.successors(i)]
        b_preds = set(self.b.digraph.predecessors(j))
        b_succs = set(self.b.digraph.successors(j))
        score += 2.0 * sum(1 for m, _ in preds if m is not None and m in b_preds)
        score += 2.0 * sum(1 for m, _ in succs if m is not None and m in b_succs)
        if self.wl_a[i] == self.wl_b[j]:
            score += 1.5
        shapes_a = sorted(str(w.shape) for w in ia.weights.values())
        shapes_b = sorted(str(w.shape) for w in jb.weights.values())
        if shapes_a == shapes_b:
            score += 3.0
        else:
            # pruning changes channel counts, never kernel sizes: compare dims from 2 on
            kernels_a = sorted(str((w.shape or ())[2:]) for w in ia.weights.values())
            kernels_b = sorted(str((w.shape or ())[2:]) for w in jb.weights.values())
            score += 1.5 if kernels_a == kernels_b else 0.0
        if len(ia.outputs) == len(jb.outputs) and all(
                shapes_agree(x.shape, y.shape) for x, y in zip(ia.outputs, jb.outputs,
                                                               strict=True)):
            score += 2.0
        if ia.attributes == jb.attributes:
            score += 1.0
        if ia.name and ia.name == jb.name:
            score += 1.0
        # prefer pairs at a similar relative depth in the graph
        pos_a = i / max(1, len(self.a.nodes))
        pos_b = j / max(1, len(self.b.nodes))
        return score - abs(pos_a - pos_b)

    def _assign(self, cand_a: Iterable[int], cand_b: Iterable[int]) -> list[tuple[int, int]]:
        """Pair free candidates of equal op type, best score first."""
        by_op_a: dict[tuple[str, str], list[int]] = collections.defaultdict(list)
        by_op_b: dict[tuple[str, str], list[int]] = collections.defaultdict(list)
        for i in dict.fromkeys(cand_a):
            if i not in self.a_to_b:
                info = self.a.infos[i]
                by_op_a[(info.domain, info.op_type)].append(i)
        for j in dict.fromkeys(cand_b):
            if j not in self.b_to_a:
                info = self.b.infos[j]
                by_op_b[(info.domain, info.op_type)].append(j)
        pairs = []
        for op, group_a in by_op_a.items():
            group_b = by_op_b.get(op)
            if not group_b:
                continue
            if len(group_a) == 1 and len(group_b) == 1:
                pairs.append((group_a[0], group_b[0]))
                continue
            scored = sorted(
                ((self.score(i, j), i, j) for i in group_a for j in group_b),
                key=lambda t: (-t[0], t[1], t[2]),
            )
            used_a: set[int] = set()
            used_b: set[int] = set()
            for _, i, j in scored:
                if i not in used_a and j not in used_b:
                    used_a.add(i)
                    used_b.add(j)
                    pairs.append((i, j))
        return pairs

    def _walk_producers(
        self, side: Side, value: ir.Value | None, free: dict[int, int]
    ) -> list[int]:
        """Free producer of ``value``, then producers reached through free transparent nodes."""
        out: list[int] = []
        for _ in range(4):
            p = side.producer(value)
            if p is None or p in free:
                break
            out.append(p)
            node = side.nodes[p]
            if node.op_type not in TRANSPARENT_OPS or not node.inputs:
                break
            value = node.inputs[0]
        return out

    def _walk_consumers(self, side: Side, value: ir.Value | None, free: dict[int, int],
                        depth: int = 0) -> list[int]:
        out: list[int] = []
        for c, _slot in side.consumers(value):
            if c in free:
                continue
            out.append(c)
            node = side.nodes[c]
            if node.op_type in TRANSPARENT_OPS and node.outputs and depth < 3:
                out.extend(self._walk_consumers(side, node.outputs[0], free, depth + 1))
        return out

    def propagate(self, seeds: Iterable[tuple[ir.Value | None, ir.Value | None]] = ()) -> None:
        """Pair producers/consumers of already-paired values until nothing new pairs."""
        queue: collections.deque[tuple[ir.Value | None, ir.Value | None]] = collections.deque(seeds)
        for i, j in list(self.a_to_b.items()):
            queue.extend(self._value_pairs(i, j))
        seen: set[tuple[int, int]] = set()
        while queue:
            va, vb = queue.popleft()
            if va is None or vb is None:
                continue
            key = (id(va), id(vb))
            if key in seen:
                continue
            seen.add(key)
            prods = self._assign(self._walk_producers(self.a, va, self.a_to_b),
                                 self._walk_producers(self.b, vb, self.b_to_a))
            cons = self._assign(self._walk_consumers(self.a, va, self.a_to_b),
                                self._walk_consumers(self.b, vb, self.b_to_a))
            for i, j in prods + cons:
                if self.pair(i, j, "structure"):
                    queue.extend(self._value_pairs(i, j))

    def _value_pairs(self, i: int, j: int) -> list[tuple[ir.Value | None, ir.Value | None]]:
        na, nb = self.a.nodes[i], self.b.nodes[j]
        pairs: list[tuple[ir.Value | None, ir.Value | None]] = list(
            zip(na.outputs, nb.outputs, strict=False))
        ins_a = [v for v in na.inputs if v is not None and weight_info(v) is None]
        ins_b = [v for v in nb.inputs if v is not None and weight_info(v) is None]
        if len(ins_a) == len(ins_b):
            pairs += list(zip(ins_a, ins_b, strict=False))
        return pairs

    def anchors(self) -> list[tuple[ir.Value | None, ir.Value | None]]:
        """Graph inputs and outputs paired by name (outputs by position when counts agree)."""
        seeds: list[tuple[ir.Value | None, ir.Value | None]] = []
        for name, value in self.a.inputs.items():
            if name in self.b.inputs:
                seeds.append((value, self.b.inputs[name]))
        outs_b = {v.name: v for v in self.b.outputs if v.name}
        for k, value in enumerate(self.a.outputs):
            if value.name in outs_b:
                seeds.append((value, outs_b[value.name]))
            elif len(self.a.outputs) == len(self.b.outputs):
                seeds.append((value, self.b.outputs[k]))
        return seeds

    def by_neighbourhood(self) -> None:
        """Phase ``neighbourhood``: a Weisfeiler-Lehman hash unique on both sides."""
        groups_a: dict[str, list[int]] = collections.defaultdict(list)
        groups_b: dict[str, list[int]] = collections.defaultdict(list)
        for i in self.free_a():
            groups_a[self.wl_a[i]].append(i)
        for j in self.free_b():
            groups_b[self.wl_b[j]].append(j)
        for h, group in groups_a.items():
            if len(group) == 1 and len(groups_b.get(h, ())) == 1:
                self.pair(group[0], groups_b[h][0], "neighbourhood")

    def by_order(self) -> None:
        """Phase ``order``: remaining nodes aligned by topological order (difflib)."""
        free_a, free_b = self.free_a(), self.free_b()
        # the last resort is conservative: op type *and* output types must agree, so a node
        # removed here and a similar one created elsewhere are not paired
        keys_a = [_order_key_of(self.a.infos[i]) for i in free_a]
        keys_b = [_order_key_of(self.b.infos[j]) for j in free_b]
        matcher = difflib.SequenceMatcher(a=keys_a, b=keys_b, autojunk=False)
        for tag, a0, a1, b0, b1 in matcher.get_opcodes():
            if tag == "equal":
                for i, j in zip(free_a[a0:a1], free_b[b0:b1], strict=False):
                    self.pair(i, j, "order")

    def run(self, order_fallback: bool) -> None:
        """Run the phases in order; ``order_fallback`` adds the low-confidence last one."""
        self.by_name()
        self.by_outputs()
        self.propagate(self.anchors())
        self.by_neighbourhood()
        self.propagate()
        if order_fallback:
            self.by_order()
            self.propagate()
