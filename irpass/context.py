"""The context a pass receives from the manager: everything it needs beyond the model.

Lossy passes (pruning, low-rank factorization, quantization) need calibration data, a target
profile and a seed; none of it is global state. The CLI builds one :class:`PassContext` and the
manager hands it to every pass it constructs.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import onnx_ir as ir

__all__ = ["Feed", "FeedSource", "PassContext"]

#: One set of model inputs: input name -> array.
Feed = Mapping[str, np.ndarray]
#: Something that yields feeds each time it is called (a fresh, bounded-memory iterator).
FeedSource = Callable[[], Iterable[Feed]]


@dataclasses.dataclass
class PassContext:
    """What a pass may use besides the model; handed over by the manager.

    Attributes:
        target: The target profile (name and capabilities) or None for a target-neutral run.
        calibration_data: Yields feeds for calibration (quantization ranges, pruning scores).
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
    evaluation_data: FeedSource | None = None
    labels: np.ndarray | None = None
    evaluator: Callable[[ir.Model], Mapping[str, float]] | None = None
    seed: int = 0
    cache_dir: pathlib.Path | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
