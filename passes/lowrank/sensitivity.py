"""How much of a layer's own output error reaches the model's outputs (rank allocation weight).

``ratio=p`` allocates ranks by minimizing the summed relative error of the layers. A layer's
relative error says nothing about what it does downstream: the same 5 % in a projection feeding
a residual stream of large activations and in a branch the classifier barely reads cost the
model very different amounts. So, with calibration data, each layer is probed alone::

    model with layer l factorized at its smallest allowed rank r_l  (every other layer intact)
    sensitivity_l = model output error² / layer output error²(r_l)

(both relative, squared; the layer error is read from its whitened spectrum, the model error
is measured in ONNX Runtime on up to :data:`PROBE_SAMPLES` calibration samples). The
allocation then minimizes ``sum_l sensitivity_l · e_l(r)``, the first-order estimate of the
model's output error. The probe rank is the smallest the allocation may choose because the
model error is not linear in the layer error (LayerNorm, Softmax and saturating activations
downstream amplify large errors): a mild probe extrapolated to a small rank made the digits
transformer's allocation worse than none. Cost: one extra model run per factorizable layer
on the probe samples.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import onnx_ir as ir

from irpass.analysis.activations import iter_activations
from irpass.context import FeedSource

__all__ = [
    "PROBE_SAMPLES",
    "Probe",
    "measure_sensitivities",
    "model_output_error",
    "normalized",
    "reference_outputs",
]

logger = logging.getLogger("irpass.passes.lowrank")

#: Calibration samples the probes run on (enough for a stable error ratio, bounded cost).
PROBE_SAMPLES = 128

#: A probe: layer name, its relative output error at the probe rank (squared), and a function
#: that rewrites that layer in a copy of the model (given the copy) at the probe rank.
Probe = tuple[str, float, Callable[[ir.Model], None]]


def model_output_error(
    reference: Sequence[Sequence[np.ndarray]], model: ir.Model, source: FeedSource,
    samples: int,
) -> float:
    """Relative squared error of ``model``'s outputs against ``reference`` (one list per batch)."""
    num = den = 0.0
    batches = iter_activations(model, [], source, max_samples=samples, include_outputs=True)
    outputs = [v.name or "" for v in model.graph.outputs]
    for ref, batch in zip(reference, batches, strict=True):
        for expected, name in zip(ref, outputs, strict=True):
            got = batch[name]
            if not np.issubdtype(got.dtype, np.floating):
                continue
            diff = got.astype(np.float64) - expected
            num += float(np.sum(diff * diff))
            den += float(np.sum(expected * expected))
    return num / den if den > 0 else 0.0


def reference_outputs(
    model: ir.Model, source: FeedSource, samples: int
) -> list[list[np.ndarray]]:
    """The model's float64 outputs per batch on the probe samples."""
    outputs = [v.name or "" for v in model.graph.outputs]
    return [
        [np.asarray(batch[name], dtype=np.float64) for name in outputs]
        for batch in iter_activations(model, [], source, max_samples=samples,
                                      include_outputs=True)
    ]


def measure_sensitivities(
    model: ir.Model, probes: Iterable[Probe], source: FeedSource,
    samples: int = PROBE_SAMPLES,
) -> dict[str, float]:
    """Sensitivity per probed layer (model error over layer error, relative and squared).

    Layers whose probe changes nothing measurable (layer error 0) get the mean of the others;
    every sensitivity is floored at a thousandth of the largest, so no layer looks free.
    """
    probes = list(probes)
    # One model run per layer: on a large model this is the slow part of svd, so say so.
    logger.info("svd: measuring the sensitivity of %d layers (one model run each on up to %d "
                "calibration samples; sensitivity=false skips this)", len(probes), samples)
    reference = reference_outputs(model, source, samples)
    measured: dict[str, float] = {}
    unknown: list[str] = []
    for index, (name, layer_error, rewrite) in enumerate(probes, 1):
        if layer_error <= 0:
            unknown.append(name)
            continue
        probe = model.clone()
        rewrite(probe)
        measured[name] = model_output_error(reference, probe, source, samples) / layer_error
        logger.info("svd: sensitivity %d/%d %s: %.4g", index, len(probes), name, measured[name])
    if not measured:
        return dict.fromkeys(unknown, 1.0)
    floor = 1e-3 * max(measured.values())
    result = {name: max(value, floor) for name, value in measured.items()}
    mean = float(np.mean(list(result.values())))
    result.update(dict.fromkeys(unknown, mean))
    return result


def normalized(sensitivities: Mapping[str, float]) -> dict[str, float]:
    """Sensitivities scaled to mean 1 (for the report; the allocation is scale-free)."""
    if not sensitivities:
        return {}
    mean = float(np.mean(list(sensitivities.values())))
    return {k: round(v / mean, 4) if mean > 0 else 1.0 for k, v in sensitivities.items()}
