"""``svd``: low-rank factorization of every Gemm, MatMul and Conv layer that it pays off for.

The two rewrites (:mod:`~irpass.passes.lowrank.factorize_gemm`,
:mod:`~irpass.passes.lowrank.factorize_conv`) run in one engine so that ``ratio`` (the fraction
of parameters removed) is a budget for all factorizable layers of the model together,
allocated across layers by their spectra (and, with calibration data, by each layer's measured
effect on the model's outputs)::

    Gemm/MatMul(x, W)    -> Gemm/MatMul(Gemm/MatMul(x, B), A)          W ~ A B, rank r
    Conv kxk (C_in->C_out) -> Conv kxk (C_in->r) + Conv 1x1 (r->C_out) (spatial=true: kx1, 1xk)

    svd(energy=0.99 | ratio=0.3 | rank=64, round_to=8, data_aware=true, min_saving=0.2,
        ignore=[Conv, head*], sensitivity=true)

With calibration data (``--calib-data``) the truncation is data-aware by default: each weight
is whitened by its input's second moment so the kept rank minimizes the layer's *output* error
on that data, not its weight error (:mod:`~irpass.passes.lowrank.decompose`).
"""

from __future__ import annotations

import onnx_ir as ir

from irpass.passes.lowrank.factorize_conv import find_conv_candidates
from irpass.passes.lowrank.factorize_gemm import find_gemm_candidates
from irpass.passes.lowrank.layer import Candidate
from irpass.passes.lowrank.plan import LowRankPass
from irpass.registry import register

__all__ = ["SvdPass"]


@register
class SvdPass(LowRankPass):
    """Low-rank (SVD) factorization of Gemm/MatMul/Conv weights, data-aware with calibration data.

    A layer is rewritten only at a rank that saves ``min_saving`` of its parameters and MACs;
    the report lists every layer's rank, parameters and weight / output error.
    """

    name = "svd"

    def find(self, graph: ir.Graph) -> tuple[list[Candidate], dict[str, str]]:  # noqa: D102
        gemm, refused = find_gemm_candidates(graph)
        conv, conv_refused = find_conv_candidates(graph, spatial=self.options.spatial)
        refused.update(conv_refused)
        ordered = {id(c.node): c for c in gemm + conv}
        # Graph order, so reports read from input to output.
        return [ordered[id(n)] for n in graph if id(n) in ordered], refused
