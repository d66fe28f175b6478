"""Helpers for the quantization tests: small models, data sources, running the pass."""

from __future__ import annotations

import collections
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import onnx_ir as ir

from irpass.context import PassContext
from irpass.passes.quantization.quantize import QuantizePass
from irpass.pipeline import parse_pipeline, resolve_options
from irpass.testing import inputs_to_random_initializers, model_from_text


def build(text: str, weights: Sequence[str], seed: int = 0, scale: float = 0.5) -> ir.Model:
    """A model from ONNX text with the named inputs turned into seeded random weights."""
    return inputs_to_random_initializers(model_from_text(text), weights, seed=seed, scale=scale)


def gaussian_source(
    shapes: dict[str, Sequence[int]] | Sequence[dict[str, Sequence[int]]],
    batches: int = 4,
    seed: int = 0,
    relu: bool = False,
):
    """A FeedSource of seeded standard-normal feeds; a list of shape dicts cycles per batch."""
    cycle = [shapes] if isinstance(shapes, dict) else list(shapes)

    def feeds() -> Iterator[dict[str, np.ndarray]]:
        rng = np.random.default_rng(seed)
        for index in range(batches):
            spec = cycle[index % len(cycle)]
            feed = {k: rng.standard_normal(tuple(v)).astype(np.float32) for k, v in spec.items()}
            yield {k: np.maximum(v, 0) for k, v in feed.items()} if relu else feed

    return feeds


def run_quantize(model: ir.Model, source: Any, options: str = "", **context: Any) -> QuantizePass:
    """Run ``quantize(<options>)`` on ``model`` in place with ``source`` as calibration data."""
    step = parse_pipeline(f"quantize({options})" if options else "quantize")[0]
    opts = resolve_options("quantize", QuantizePass.Options, step.options_dict())
    pass_ = QuantizePass(opts, PassContext(calibration_data=source, **context))
    pass_(model)
    return pass_


def op_counts(model: ir.Model) -> collections.Counter[str]:
    """Op types of the main graph."""
    return collections.Counter(node.op_type for node in model.graph)
