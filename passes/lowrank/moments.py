"""Streaming first and second moments of the vectors a linear layer multiplies.

Data-aware SVD needs ``E[x x^T]`` (and ``E[x]`` for bias correction) over the input vectors of
each layer: rows of a MatMul input, columns for a weight on the left, image patches of a Conv
(what im2col would build). :class:`MomentAccumulator` adds batches of such vectors into float64
sums, so memory is ``n^2`` per layer however much calibration data streams through;
:func:`conv_patches` turns a Conv input batch into its patch vectors, a bounded chunk at a time.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

__all__ = ["MomentAccumulator", "PairedMoments", "conv_patches", "same_pads"]


class MomentAccumulator:
    """Running sums of ``x``, ``x x^T`` (or only ``x^2`` when ``diagonal``) over vectors ``x``."""

    def __init__(self, features: int, diagonal: bool = False) -> None:
        self.features = features
        self.diagonal = diagonal
        self.count = 0
        self.sum = np.zeros(features, np.float64)
        self.sum_sq = np.zeros(features if diagonal else (features, features), np.float64)

    def update(self, vectors: np.ndarray) -> None:
        """Add the rows of ``vectors`` (k x features)."""
        if vectors.ndim != 2 or vectors.shape[1] != self.features:
            raise ValueError(
                f"expected vectors of {self.features} features, got shape {vectors.shape}"
            )
        x = vectors.astype(np.float64, copy=False)
        self.count += x.shape[0]
        self.sum += x.sum(axis=0)
        if self.diagonal:
            self.sum_sq += np.einsum("ij,ij->j", x, x)
        else:
            self.sum_sq += x.T @ x

    @property
    def mean(self) -> np.ndarray:
        """``E[x]``."""
        return self.sum / max(self.count, 1)

    def second_moment(self, centered: bool) -> np.ndarray:
        """``E[x x^T]`` (a vector of ``E[x_i^2]`` when diagonal); minus ``mu mu^T`` if centered."""
        moment = self.sum_sq / max(self.count, 1)
        if centered:
            mean = self.mean
            moment = moment - (mean * mean if self.diagonal else np.outer(mean, mean))
        return moment


class PairedMoments:
    """Moments of the inputs ``x~`` a layer receives and their cross moment with reference ``x``.

    For sequential data-aware factorization: the reference inputs come from the original
    model, ``x~`` from the model with the upstream layers already factorized, same samples.
    """

    def __init__(self, features: int) -> None:
        self.received = MomentAccumulator(features)
        self.reference_sum = np.zeros(features, np.float64)
        self.cross_sum = np.zeros((features, features), np.float64)

    def update(self, reference: np.ndarray, received: np.ndarray) -> None:
        """Add matching rows of reference and received vectors."""
        if reference.shape != received.shape:
            raise ValueError(f"reference rows {reference.shape} != received rows {received.shape}")
        self.received.update(received)
        x = reference.astype(np.float64, copy=False)
        self.reference_sum += x.sum(axis=0)
        self.cross_sum += x.T @ received.astype(np.float64, copy=False)

    @property
    def reference_mean(self) -> np.ndarray:
        """``E[x]``."""
        return self.reference_sum / max(self.received.count, 1)

    def cross(self, centered: bool) -> np.ndarray:
        """``E[x x~^T]``, minus ``E[x] E[x~]^T`` if centered."""
        moment = self.cross_sum / max(self.received.count, 1)
        if centered:
            moment = moment - np.outer(self.reference_mean, self.received.mean)
        return moment


def same_pads(
    spatial: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    mode: str,
) -> list[int]:
    """ONNX ``pads`` (begins then ends) that ``auto_pad`` = ``mode`` implies for an input size."""
    begins, ends = [], []
    for size, k, s, d in zip(spatial, kernel, strides, dilations, strict=True):
        if mode == "VALID":
            begins.append(0)
            ends.append(0)
            continue
        out = math.ceil(size / s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
        small, large = total // 2, total - total // 2
        begins.append(small if mode == "SAME_UPPER" else large)
        ends.append(large if mode == "SAME_UPPER" else small)
    return begins + ends


def conv_patches(
    x: np.ndarray,
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    pads: Sequence[int],
    max_elements: int = 1 << 22,
    max_positions: int | None = None,
) -> Iterator[np.ndarray]:
    """Yield the patch vectors of ``x`` (N, C, *spatial) a Conv with these attributes reads.

    Each row is one output position's receptive field flattened in (channel, kernel...) order,
    the order of ``W.reshape(C_out, -1)``, zero padding included. Rows come in chunks of about
    ``max_elements`` numbers so a large activation never materializes its whole im2col matrix.
    With ``max_positions``, each sample contributes at most that many output positions, the
    same pseudo-random ones for the same input shape (statistics need far fewer patches than
    a feature map holds, and paired reference / received inputs must pick the same ones).
    """
    dims = len(kernel)
    padded = np.pad(x, [(0, 0), (0, 0)] + [(pads[i], pads[i + dims]) for i in range(dims)])
    span = [(k - 1) * d + 1 for k, d in zip(kernel, dilations, strict=True)]
    windows = np.lib.stride_tricks.sliding_window_view(padded, span, axis=tuple(range(2, 2 + dims)))
    # windows: (N, C, *positions, *span); apply strides to positions, dilations to the span.
    index = (slice(None), slice(None))
    index += tuple(slice(None, None, s) for s in strides)
    index += tuple(slice(None, None, d) for d in dilations)
    windows = windows[index]
    # (N, *positions, C, *kernel): one row per (sample, position).
    windows = windows.transpose((0, *range(2, 2 + dims), 1, *range(2 + dims, 2 + 2 * dims)))
    features = x.shape[1] * math.prod(kernel)
    rows_budget = max(1, max_elements // max(features, 1))
    positions = windows.shape[1 : 1 + dims]
    per_sample = math.prod(positions)
    if max_positions is not None and per_sample > max_positions:
        rng = np.random.default_rng(per_sample)
        chosen = np.sort(rng.choice(per_sample, size=max_positions, replace=False))
        index_arrays = np.unravel_index(chosen, positions)
        # (N, max_positions, C, *kernel): only the chosen receptive fields are copied.
        picked_index: tuple[Any, ...] = (slice(None), *index_arrays)
        picked = windows[picked_index]
        step = max(1, rows_budget // max_positions)
        for start in range(0, picked.shape[0], step):
            yield np.ascontiguousarray(picked[start : start + step]).reshape(-1, features)
        return
    if per_sample <= rows_budget or dims == 0:
        step = max(1, rows_budget // max(per_sample, 1))
        for start in range(0, windows.shape[0], step):
            yield np.ascontiguousarray(windows[start : start + step]).reshape(-1, features)
        return
    # One sample is already too large: split it along its first spatial axis.
    per_line = max(1, per_sample // positions[0])
    lines = max(1, rows_budget // per_line)
    for sample in windows:
        for start in range(0, positions[0], lines):
            yield np.ascontiguousarray(sample[start : start + lines]).reshape(-1, features)
