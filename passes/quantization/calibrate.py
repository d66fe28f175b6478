"""Calibration: streaming activation statistics and the ranges quantization uses.

Every tensor to be quantized gets a :class:`TensorStats`: its exact minimum and maximum and a
fixed-size histogram over a symmetric window ``[-R, R]`` that doubles when a batch exceeds it
(the doubled histogram is exact: each new bin is the sum of two old ones). Memory is therefore
``bins`` counters per tensor whatever the number of samples, and tensors may change shape from
batch to batch (variable image sizes, sequence lengths): only values are counted. Optional
per-channel statistics (absolute maximum, sum) feed SmoothQuant and bias correction.

The range of a tensor is then chosen by one of four methods:

=============  ================================================================================
``minmax``     ``[min, max]`` exactly; never clips, wastes resolution on outliers
``percentile`` drop ``100 - p`` percent of the mass at each tail (``p`` = 99.99 by default)
``entropy``    TensorRT's KL-divergence criterion on ``|x|`` (on ``x`` for non-negative
               tensors): the threshold whose quantized histogram diverges least from the
               clipped original
``mse``        the clipping that minimises the expected squared error: rounding noise
               ``step**2 / 12`` inside the range plus ``(|x| - edge)**2`` for clipped values
=============  ================================================================================

:func:`collect_statistics` streams a model's activations from a
:data:`~irpass.context.FeedSource` through ``irpass.analysis.activations.iter_activations``
(one batch in memory at a time) and reports progress per batch.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Literal

import numpy as np
import onnx_ir as ir

from irpass.analysis.activations import iter_activations
from irpass.context import Feed, FeedSource
from irpass.errors import DataError

__all__ = [
    "DEFAULT_BINS",
    "METHODS",
    "Calibration",
    "ChannelStats",
    "Method",
    "SampleCounter",
    "TensorStats",
    "calibrate",
    "choose_range",
    "collect_statistics",
]

logger = logging.getLogger(__name__)

Method = Literal["minmax", "percentile", "entropy", "mse"]
METHODS: tuple[str, ...] = ("minmax", "percentile", "entropy", "mse")

#: Histogram bins per tensor (even, and divisible by 4 so doubling the window stays exact).
DEFAULT_BINS = 4096
#: Elements per batch and tensor that enter the histogram (larger tensors are strided).
HISTOGRAM_SAMPLE = 1 << 20


class TensorStats:
    """Streaming min / max / histogram of one tensor's values.

    Non-finite values are counted in ``nonfinite`` and kept out of the histogram and range.
    """

    def __init__(self, bins: int = DEFAULT_BINS) -> None:
        if bins < 8 or bins % 4:
            raise ValueError(f"bins must be a multiple of 4 and >= 8, got {bins}")
        self.bins = bins
        self.hist = np.zeros(bins, dtype=np.int64)
        self.edge = 0.0  # the histogram covers [-edge, edge]
        self.min = math.inf
        self.max = -math.inf
        self.count = 0
        self.nonfinite = 0

    @property
    def empty(self) -> bool:
        """Whether no finite value has been seen."""
        return self.count == 0

    @property
    def bin_width(self) -> float:
        """Width of one histogram bin."""
        return 2.0 * self.edge / self.bins

    def centers(self) -> np.ndarray:
        """Bin centres (float64)."""
        width = self.bin_width
        return -self.edge + width * (np.arange(self.bins, dtype=np.float64) + 0.5)

    def _grow(self) -> None:
        """Double the window: the old bins pair up into the middle half of the new ones."""
        quarter = self.bins // 4
        merged = self.hist.reshape(-1, 2).sum(axis=1)
        self.hist = np.zeros(self.bins, dtype=np.int64)
        self.hist[quarter : quarter + merged.size] = merged
        self.edge *= 2.0

    def update(self, values: np.ndarray) -> None:
        """Add the values of one batch (any shape).

        The extremes are exact; tensors above :data:`HISTOGRAM_SAMPLE` elements are histogrammed
        on an evenly strided subset, each sample counting for the stride, which keeps a
        per-token activation of a long sequence from costing seconds per batch.
        """
        flat = np.asarray(values).reshape(-1)
        if flat.size == 0:
            return
        if flat.dtype.kind != "f":
            flat = flat.astype(np.float32)
        finite = np.isfinite(flat)
        if not finite.all():
            self.nonfinite += int(flat.size - finite.sum())
            flat = flat[finite]
            if flat.size == 0:
                return
        lo = float(flat.min())
        hi = float(flat.max())
        self.min = min(self.min, lo)
        self.max = max(self.max, hi)
        bound = max(-lo, hi)
        if self.edge == 0.0:
            self.edge = bound if bound > 0 else 1e-8
        while bound > self.edge:
            self._grow()
        stride = -(-flat.size // HISTOGRAM_SAMPLE)
        sample = flat[::stride] if stride > 1 else flat
        scale = self.bins / (2.0 * self.edge)
        index = ((sample.astype(np.float64) + self.edge) * scale).astype(np.int64)
        np.clip(index, 0, self.bins - 1, out=index)
        self.hist += np.bincount(index, minlength=self.bins) * stride
        self.count += int(flat.size)


@dataclasses.dataclass
class ChannelStats:
    """Per-channel absolute maximum and mean along one axis (SmoothQuant, bias correction)."""

    axis: int
    absmax: np.ndarray | None = None
    total: np.ndarray | None = None
    count: int = 0

    def update(self, values: np.ndarray) -> None:
        """Add one batch; the channel axis must keep its size across batches."""
        array = np.asarray(values, dtype=np.float32)
        axis = self.axis % array.ndim
        moved = np.moveaxis(array, axis, -1).reshape(-1, array.shape[axis])
        absmax = np.max(np.abs(moved), axis=0)
        total = moved.sum(axis=0, dtype=np.float64)
        if self.absmax is None or self.total is None:
            self.absmax, self.total = absmax, total
        elif self.absmax.shape != absmax.shape:
            raise ValueError(
                f"channel axis {self.axis} changed size from {self.absmax.size} to {absmax.size}"
            )
        else:
            self.absmax = np.maximum(self.absmax, absmax)
            self.total = self.total + total
        self.count += moved.shape[0]

    @property
    def mean(self) -> np.ndarray:
        """Per-channel mean over everything seen."""
        if self.total is None or self.count == 0:
            raise ValueError("no statistics collected")
        return (self.total / self.count).astype(np.float32)


# ------------------------------------------------------------------------------- range choice
def choose_range(
    stats: TensorStats,
    method: str,
    *,
    levels: int = 256,
    symmetric: bool = False,
    percentile: float = 99.99,
) -> tuple[float, float]:
    """The calibrated ``(lo, hi)`` of a tensor (always ``lo <= 0 <= hi``).

    ``levels`` is the size of the integer grid (256 for 8 bits) and ``symmetric`` whether the
    grid is centred on zero; both shape the quantization error that ``entropy`` and ``mse``
    weigh against clipping.
    """
    if stats.empty:
        return 0.0, 0.0
    lo, hi = min(stats.min, 0.0), max(stats.max, 0.0)
    if method == "minmax" or lo == hi:
        return _finish(lo, hi, symmetric)
    if method == "percentile":
        if not 0.0 < percentile <= 100.0:
            raise ValueError(f"percentile must be in (0, 100], got {percentile}")
        return _finish(*_percentile_range(stats, percentile, symmetric), symmetric)
    if method == "entropy":
        return _finish(*_entropy_range(stats, levels, symmetric), symmetric)
    if method == "mse":
        return _finish(*_mse_range(stats, levels, symmetric), symmetric)
    raise ValueError(f"unknown calibration method {method!r}; known: {', '.join(METHODS)}")


def _finish(lo: float, hi: float, symmetric: bool) -> tuple[float, float]:
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if symmetric:
        bound = max(-lo, hi)
        return -bound, bound
    return lo, hi


def _folded(stats: TensorStats) -> tuple[np.ndarray, float]:
    """Histogram of ``|x|`` over ``[0, edge]`` (bins of the same width)."""
    half = stats.bins // 2
    return stats.hist[half:] + stats.hist[:half][::-1], stats.bin_width


def _percentile_range(stats: TensorStats, p: float, symmetric: bool) -> tuple[float, float]:
    tail = (100.0 - p) / 100.0
    if symmetric:
        folded, width = _folded(stats)
        cdf = np.cumsum(folded) / max(int(folded.sum()), 1)
        index = int(np.searchsorted(cdf, 1.0 - tail))
        bound = min((index + 1) * width, max(-stats.min, stats.max))
        return -bound, bound
    cdf = np.cumsum(stats.hist) / max(int(stats.hist.sum()), 1)
    edges = -stats.edge + stats.bin_width * np.arange(stats.bins + 1)
    lo_index = int(np.searchsorted(cdf, tail, side="right"))
    hi_index = int(np.searchsorted(cdf, 1.0 - tail))
    lo = max(float(edges[lo_index]), stats.min)
    hi = min(float(edges[min(hi_index + 1, stats.bins)]), stats.max)
    return lo, hi


def _entropy_range(stats: TensorStats, levels: int, symmetric: bool) -> tuple[float, float]:
    """TensorRT's entropy calibration, generalised to one-sided (non-negative) tensors."""
    one_sided = stats.min >= 0.0
    if one_sided:
        # the spike of exact zeros (ReLU's floor) would dominate the divergence and pull the
        # threshold down; like TensorRT's calibrator, weigh the first bin as its neighbour
        hist = stats.hist[stats.bins // 2 :].copy()
        hist[0] = hist[1]
        width = stats.bin_width
        target = levels - 1 if not symmetric else levels // 2
    else:
        hist, width = _folded(stats)
        target = levels // 2
    top = int(np.nonzero(hist)[0].max()) + 1 if hist.any() else 1
    threshold_bins = _kl_threshold(hist[:top], target)
    bound = threshold_bins * width
    if one_sided:
        return 0.0, min(bound, stats.max)
    return max(-bound, stats.min), min(bound, stats.max)


def _kl_threshold(hist: np.ndarray, target: int) -> int:
    """The number of leading bins whose clipping to ``target`` levels loses least (KL)."""
    size = hist.size
    if size <= target:
        return size
    counts = hist.astype(np.float64)
    best, best_i = math.inf, size
    candidates = np.unique(np.linspace(target, size, num=min(size - target + 1, 256)).astype(int))
    for i in candidates:
        p = counts[:i].copy()
        p[-1] += counts[i:].sum()
        group = (np.arange(i) * target) // i
        nonzero = counts[:i] > 0
        group_sum = np.bincount(group, weights=counts[:i], minlength=target)
        group_nonzero = np.bincount(group, weights=nonzero, minlength=target)
        with np.errstate(divide="ignore", invalid="ignore"):
            per_bin = np.where(group_nonzero > 0, group_sum / np.maximum(group_nonzero, 1), 0.0)
        q = np.where(nonzero, per_bin[group], 0.0)
        p_total, q_total = p.sum(), q.sum()
        if p_total == 0 or q_total == 0:
            continue
        p /= p_total
        q /= q_total
        mask = p > 0
        q_safe = np.where(q[mask] > 0, q[mask], 1e-12)
        kl = float(np.sum(p[mask] * np.log(p[mask] / q_safe)))
        if kl < best:
            best, best_i = kl, int(i)
    return best_i


def _mse_range(stats: TensorStats, levels: int, symmetric: bool) -> tuple[float, float]:
    centers = stats.centers()
    counts = stats.hist.astype(np.float64)
    used = counts > 0
    centers, counts = centers[used], counts[used]
    lo0, hi0 = min(stats.min, 0.0), max(stats.max, 0.0)
    if symmetric:
        bound = max(-lo0, hi0)
        lo0, hi0 = -bound, bound
    alphas = np.linspace(0.02, 1.0, 200)
    los = alphas[:, None] * lo0
    his = alphas[:, None] * hi0
    steps = (his - los) / (levels - 1)
    below = np.clip(los - centers[None, :], 0.0, None)
    above = np.clip(centers[None, :] - his, 0.0, None)
    inside = (below == 0) & (above == 0)
    error = below**2 + above**2 + np.where(inside, steps**2 / 12.0, 0.0)
    total = error @ counts
    best = int(np.argmin(total))
    return float(alphas[best] * lo0), float(alphas[best] * hi0)


# ------------------------------------------------------------------------------- collection
ProgressFn = Callable[[int, int | None], None]


def collect_statistics(
    batches: Iterable[Mapping[str, np.ndarray]],
    names: Sequence[str],
    *,
    channel_axes: Mapping[str, int] | None = None,
    bins: int = DEFAULT_BINS,
    progress: ProgressFn | None = None,
    total: int | None = None,
) -> tuple[dict[str, TensorStats], dict[str, ChannelStats], int]:
    """Fold a stream of activation batches into per-tensor statistics.

    Returns the statistics per tensor name, the per-channel statistics asked for in
    ``channel_axes`` and the number of batches seen. ``progress(done, total)`` is called after
    every batch.
    """
    stats = {name: TensorStats(bins) for name in names}
    channels = {name: ChannelStats(axis) for name, axis in (channel_axes or {}).items()}
    seen = 0
    for batch in batches:
        for name, values in batch.items():
            if name in stats:
                stats[name].update(values)
            if name in channels:
                channels[name].update(values)
        seen += 1
        if progress is not None:
            progress(seen, total)
    return stats, channels, seen


@dataclasses.dataclass
class Calibration:
    """What one streaming pass over the calibration data measured."""

    stats: dict[str, TensorStats]
    channels: dict[str, ChannelStats]
    batches: int
    samples: int
    dtypes: dict[str, np.dtype]
    #: Shape of every tensor in the first batch (per-layer timing builds inputs from it).
    shapes: dict[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)

    def ranges(
        self,
        method: str,
        *,
        levels: int = 256,
        symmetric: bool = False,
        percentile: float = 99.99,
    ) -> dict[str, tuple[float, float]]:
        """The calibrated range of every float tensor by ``method``."""
        return {
            name: choose_range(s, method, levels=levels, symmetric=symmetric, percentile=percentile)
            for name, s in self.stats.items()
            if self.dtypes.get(name, np.dtype(np.float32)).kind == "f"
        }


def _feed_size(feed: Feed) -> int:
    for value in feed.values():
        if np.ndim(value):
            return int(np.shape(value)[0])
    return 1


class SampleCounter:
    """Wrap a FeedSource so that the samples it yields are counted in ``self.samples``."""

    def __init__(self, source: FeedSource) -> None:
        self.source = source
        self.samples = 0

    def __call__(self) -> Iterator[Feed]:
        """A fresh pass over the source, counting from zero."""
        self.samples = 0
        for feed in self.source():
            self.samples += _feed_size(feed)
            yield feed


def calibrate(
    model: ir.Model,
    names: Sequence[str],
    source: FeedSource,
    *,
    channel_axes: Mapping[str, int] | None = None,
    max_samples: int | None = None,
    bins: int = DEFAULT_BINS,
    progress: ProgressFn | None = None,
) -> Calibration:
    """Stream ``source`` through ``model`` once and collect statistics of the named tensors.

    Memory stays at one batch of activations plus ``bins`` counters per tensor, whatever the
    number of samples. Raises a DataError when the source yields nothing.
    """
    counter = SampleCounter(source)
    dtypes: dict[str, np.dtype] = {}
    shapes: dict[str, tuple[int, ...]] = {}

    def batches() -> Iterator[Mapping[str, np.ndarray]]:
        for batch in iter_activations(model, list(names), counter, max_samples=max_samples):
            for name, values in batch.items():
                dtypes.setdefault(name, np.asarray(values).dtype)
                shapes.setdefault(name, tuple(np.shape(values)))
            yield batch

    stats, channels, seen = collect_statistics(
        batches(), names, channel_axes=channel_axes, bins=bins, progress=progress
    )
    if seen == 0:
        raise DataError(
            "the calibration data yielded no samples",
            hint="give a non-empty data set with --calib-data",
        )
    samples = counter.samples if max_samples is None else min(counter.samples, max_samples)
    logger.info("calibrated %d tensors on %d samples (%d batches)", len(names), samples, seen)
    return Calibration(stats, channels, seen, samples, dtypes, shapes)
