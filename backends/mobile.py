"""ONNX Runtime Mobile's own verdict on a model: the NNAPI and Core ML usability checker.

``python -m onnxruntime.tools.check_onnx_model_mobile_usability model.onnx`` prints how the
NNAPI and Core ML execution providers would partition a model. :func:`check_partitions` runs
the same steps through the checker's Python API (``onnxruntime.tools.mobile_helpers.
usability_checker``): ORT's ``basic`` optimizations first (as the ORT-format conversion does),
ONNX shape inference, then the partitioning of the EP's supported-operator list, and returns
the numbers instead of log lines: partitions, nodes covered, the unsupported ops (with node
counts), nodes rejected for dynamic shapes or rank, and the caveats of supported ops the
checker does not verify.

The operator lists the checker reads ship inside the onnxruntime wheel
(``mobile_helpers/nnapi_supported_ops.md``, ``coreml_supported_mlprogram_ops.md``); the
target profiles use the same files (:func:`mobile_op_support`) so irpass legalizes against
exactly what the checker judges.
"""

from __future__ import annotations

import collections
import dataclasses
import pathlib
import tempfile
from typing import Any, Literal

import onnx
import onnxruntime as ort

from irpass.errors import TargetError
from irpass.targets.profile import OpSupport

__all__ = ["EP_LISTS", "PartitionReport", "check_partitions", "mobile_op_support", "op_caveats"]

MobileEp = Literal["nnapi", "coreml"]

#: Execution provider -> (operator-list file in ORT's mobile_helpers, name the checker prints).
EP_LISTS: dict[str, tuple[str, str]] = {
    "nnapi": ("nnapi_supported_ops.md", "NNAPI"),
    "coreml": ("coreml_supported_mlprogram_ops.md", "CoreML MLProgram"),
}


def _helpers_dir() -> pathlib.Path:
    from onnxruntime.tools.mobile_helpers import usability_checker

    return pathlib.Path(usability_checker.__file__).parent


def _read_list(ep: str) -> dict[str, str]:
    """``domain:op`` -> caveat text, from the table the checker itself parses."""
    path = _helpers_dir() / EP_LISTS[ep][0]
    ops: dict[str, str] = {}
    for line in path.read_text().splitlines():
        cells = line.strip().split("|")
        if line.startswith("|") and len(cells) == 4 and ":" in cells[1]:
            ops[cells[1].strip()] = cells[2].replace("<br/>", " ").strip()
    return ops


def _short(domain_op: str) -> str:
    domain, _, op = domain_op.partition(":")
    return op if domain == "ai.onnx" else domain_op


def mobile_op_support(ep: str, release: str) -> OpSupport:
    """The EP's operator list from the installed onnxruntime (``release`` must be installed)."""
    if ep not in EP_LISTS:
        raise TargetError(
            f"no ONNX Runtime Mobile operator list for {ep!r}", hint="lists: nnapi, coreml"
        )
    if release != "installed":
        raise TargetError(
            f"the {EP_LISTS[ep][1]} operator list is read from the installed ONNX Runtime",
            hint='write release "installed" in the profile',
        )
    return OpSupport(
        provider=f"onnxruntime-{ep}",
        release=ort.__version__,
        source=f"ONNX Runtime {ort.__version__} mobile_helpers/{EP_LISTS[ep][0]}",
        ops=frozenset(_short(op) for op in _read_list(ep)),
    )


def op_caveats(ep: str) -> dict[str, str]:
    """Op (as OpSupport spells it) -> the caveat the EP's list attaches to it."""
    return {_short(op): note for op, note in _read_list(ep).items() if note}


@dataclasses.dataclass
class PartitionReport:
    """How ORT's checker says an execution provider would take a model."""

    ep: str
    nodes: int
    supported_nodes: int
    partitions: int
    partition_sizes: list[int]
    unsupported_ops: dict[str, int]
    dynamic_shape_nodes: int
    unsupported_rank_ops: list[str]
    subgraph_nodes: int
    suitability: str
    caveats: list[str]

    @property
    def coverage(self) -> float:
        """Fraction of nodes the EP takes."""
        return self.supported_nodes / self.nodes if self.nodes else 1.0

    @property
    def single_partition(self) -> bool:
        """One partition holding every node: the whole model runs on the EP."""
        return self.partitions == 1 and self.supported_nodes == self.nodes

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {**dataclasses.asdict(self), "coverage": self.coverage}


def check_partitions(model_path: pathlib.Path, ep: MobileEp) -> PartitionReport:
    """Run ORT's usability checker for ``ep`` on the model file (fixed input sizes required)."""
    from onnxruntime.tools.mobile_helpers import usability_checker as uc
    from onnxruntime.tools.onnx_model_utils import ModelProtoWithShapeInfo, optimize_model

    with tempfile.TemporaryDirectory(prefix="irpass-mobile-") as tmp:
        optimized = pathlib.Path(tmp) / model_path.name
        optimize_model(model_path, optimized, use_external_initializers=True)
        model = ModelProtoWithShapeInfo(optimized).model_with_shape_info
        if ep == "nnapi":
            info = uc.check_nnapi_partitions(model, require_fixed_input_sizes=True)
        else:
            info = uc.check_coreml_partitions(model, True, EP_LISTS["coreml"][0])
        counts = collections.Counter(_short(f"{n.domain or 'ai.onnx'}:{n.op_type}")
                                     for n in _all_nodes(model.graph))
    return PartitionReport(
        ep=EP_LISTS[ep][1],
        nodes=info.num_nodes,
        supported_nodes=info.num_supported_nodes,
        partitions=info.num_partitions,
        partition_sizes=[len(group) for group in info.supported_groups],
        unsupported_ops={
            _short(op): counts[_short(op)] for op in sorted(info.unsupported_ops)
        },
        dynamic_shape_nodes=info.nodes_unsupported_due_to_dynamic_input,
        unsupported_rank_ops=sorted(_short(op) for op in info.ops_with_unsupported_rank),
        subgraph_nodes=info.num_nodes_in_subgraphs,
        suitability=info.suitability().name,
        caveats=info.supported_ops_checker.get_caveats(),
    )


def _all_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    nodes = list(graph.node)
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                nodes += _all_nodes(attr.g)
            for sub in attr.graphs:
                nodes += _all_nodes(sub)
    return nodes
