"""Stream intermediate activations of a model over calibration data, batch by batch.

Calibration (quantization ranges), pruning repair (XᵀX, XᵀY per layer) and data-aware
low-rank factorization (E[xxᵀ]) all need the values of chosen intermediate tensors on real
inputs. :func:`iter_activations` runs a copy of the model whose graph also outputs those
tensors in ONNX Runtime, one batch at a time, and yields them; it accumulates nothing, so the
caller's statistics decide how much memory is used.

Only values of the main graph can be exposed (values inside If/Loop/Scan bodies exist once per
iteration, not once per run); asking for one is an error naming it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import onnx_ir as ir

from irpass.verify import make_session

__all__ = ["iter_activations", "main_graph_values"]

logger = logging.getLogger(__name__)

FeedsLike = Callable[[], Iterable[Mapping[str, np.ndarray]]] | Iterable[Mapping[str, np.ndarray]]


def main_graph_values(model: ir.Model) -> dict[str, ir.Value]:
    """Every named value of the main graph (inputs, initializers, node outputs) by name."""
    values: dict[str, ir.Value] = {}
    for value in model.graph.inputs:
        if value.name:
            values[value.name] = value
    for name, value in model.graph.initializers.items():
        values[name] = value
    for node in model.graph:
        for value in node.outputs:
            if value.name:
                values[value.name] = value
    return values


def _typed_copy(model: ir.Model) -> ir.Model:
    """A copy (sharing weights) whose intermediate values carry inferred types."""
    from onnx_ir.passes.common import ShapeInferencePass

    copy = model.clone()
    try:
        ShapeInferencePass(check_type=False, strict_mode=False, data_prop=True)(copy)
    except Exception as exc:  # ORT infers the types it needs itself
        logger.debug("shape inference before exposing activations failed: %s", exc)
    return copy


def _exposing_copy(model: ir.Model, names: Sequence[str]) -> ir.Model:
    copy = _typed_copy(model)
    values = main_graph_values(copy)
    missing = [n for n in names if n not in values]
    if missing:
        raise ValueError(
            f"no value named {missing[0]!r} in the main graph"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    present = {v.name for v in copy.graph.outputs}
    inputs = {v.name for v in copy.graph.inputs}
    for name in names:
        value = values[name]
        if name in present or name in inputs:
            continue
        if value.const_value is not None and value.producer() is None:
            raise ValueError(f"{name!r} is an initializer, not an activation")
        copy.graph.outputs.append(value)
        present.add(name)
    return copy


def _batches(source: FeedsLike) -> Iterable[Mapping[str, np.ndarray]]:
    return source() if callable(source) else source


def _batch_size(feed: Mapping[str, np.ndarray]) -> int:
    for value in feed.values():
        array = np.asarray(value)
        if array.ndim:
            return int(array.shape[0])
    return 1


def iter_activations(
    model: ir.Model,
    names: Sequence[str],
    source: FeedsLike,
    *,
    max_samples: int | None = None,
    include_outputs: bool = False,
) -> Iterator[dict[str, np.ndarray]]:
    """Yield ``{name: array}`` for the named main-graph values, one dict per batch of ``source``.

    ``source`` is a FeedSource (a callable returning a fresh iterable of feeds, as
    ``PassContext.calibration_data``) or an iterable of feeds. ``max_samples`` stops after that
    many samples (counted along the first axis of the first non-scalar input; the last batch
    is cut). Graph inputs among ``names`` are returned from the feed itself. With
    ``include_outputs`` the graph outputs are yielded too. The model is not modified.
    """
    wanted = list(dict.fromkeys(names))
    exposed = _exposing_copy(model, wanted)
    session = make_session(exposed)
    input_names = [i.name for i in session.get_inputs()]
    output_names = [o.name for o in session.get_outputs()]
    original_outputs = [v.name for v in model.graph.outputs]
    fetch = [n for n in output_names if n in wanted or (include_outputs and n in original_outputs)]
    seen = 0
    for feed in _batches(source):
        if max_samples is not None and seen >= max_samples:
            return
        feed = {k: np.asarray(v) for k, v in feed.items()}
        size = _batch_size(feed)
        if max_samples is not None and seen + size > max_samples:
            keep = max_samples - seen
            feed = {k: (v[:keep] if v.ndim else v) for k, v in feed.items()}
            size = keep
        missing = [n for n in input_names if n not in feed]
        if missing:
            raise ValueError(f"calibration feed has no value for model input {missing[0]!r}")
        # ORT runs every output for an empty fetch list: skip the run when only graph inputs
        # were asked for.
        results = session.run(fetch, {n: feed[n] for n in input_names}) if fetch else []
        batch = {name: np.asarray(value) for name, value in zip(fetch, results, strict=True)}
        for name in wanted:
            if name not in batch and name in feed:
                batch[name] = feed[name]
        seen += size
        yield batch
