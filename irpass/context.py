"""The context a pass receives from the manager: everything it needs beyond the model.

Lossy passes (pruning, low-rank factorization, quantization) need calibration data, a target
profile and a seed; none of it is global state. The CLI builds one :class:`PassContext` and the
manager hands it to every pass it constructs.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import onnx_ir as ir

__all__ = ["Feed", "FeedSource", "PassContext", "limit_samples"]

#: One set of model inputs: input name -> array.
Feed = Mapping[str, np.ndarray]
#: Something that yields feeds each time it is called (a fresh, bounded-memory iterator).
FeedSource = Callable[[], Iterable[Feed]]


def _batch_size(feed: Feed) -> int:
    for value in feed.values():
        if np.ndim(value):
            return int(np.shape(value)[0])
    return 1


def limit_samples(source: FeedSource, max_samples: int | None) -> FeedSource:
    """A FeedSource yielding at most ``max_samples`` samples of ``source`` (last batch cut).

    Samples are counted along the first axis of the first non-scalar input of each feed.
    """
    if max_samples is None:
        return source
    if max_samples < 1:
        raise ValueError(f"max_samples must be at least 1, got {max_samples}")

    def feeds() -> Iterator[Feed]:
        seen = 0
        for feed in source():
            if seen >= max_samples:
                return
            size = _batch_size(feed)
            if seen + size > max_samples:
                keep = max_samples - seen
                feed = {k: (v[:keep] if np.ndim(v) else v) for k, v in feed.items()}
                size = keep
            seen += size
            yield feed

    return feeds


@dataclasses.dataclass
class PassContext:
    """What a pass may use besides the model; handed over by the manager.

    Attributes:
        target: The target profile (name and capabilities) or None for a target-neutral run.
        calibration_data: Yields feeds for calibration (quantization ranges, pruning scores,
            low-rank whitening); ``irpass optimize --calib-data`` fills it. Never test data.
        calibration_is_random: True when ``calibration_data`` are random inputs the user asked
            for (``--calib-data random``); lossy passes say so in their stats.
        evaluation_data: Yields feeds used to measure fidelity after lossy passes.
        labels: Labels aligned with ``evaluation_data`` for task metrics, or None.
        evaluator: Measures a model against the pipeline's input on the evaluation data
            (``irpass.evaluate.Evaluator``); the manager calls it after each lossy pass and
            records the flat metrics it returns. None when no evaluation data were given.
        seed: Seed for every random choice a pass or the verifier makes.
        cache_dir: Where passes may cache expensive intermediate results.
        extra: Free-form settings for passes outside the core (keyed by pass name).
    """

    target: Any = None
    calibration_data: FeedSource | None = None
    calibration_is_random: bool = False
    evaluation_data: FeedSource | None = None
    labels: np.ndarray | None = None
    evaluator: Callable[[ir.Model], Mapping[str, float]] | None = None
    seed: int = 0
    cache_dir: pathlib.Path | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
