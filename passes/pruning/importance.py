"""Channel importance: one score per class of a channel group (higher = keep).

Scorers implement the small :class:`Importance` protocol:

- :class:`MagnitudeImportance` (``l1`` / ``l2``): group-reduced weight magnitude. Every weight
  that owns the channel (a producer's output slice) or reads it (a consumer's input slice),
  and every norm scale of it, contributes ``sum |w|^p`` over its slice; the group's total is
  the score, so a residual channel counts all the layers it feeds and comes from. This is
  Torch-Pruning's ``GroupMagnitudeImportance`` (which also counts BatchNorm / LayerNorm
  weights) up to its mean over members.
- :class:`BNScaleImportance` (``bn``): ``|gamma|`` of the BatchNormalization /
  InstanceNormalization / LayerNormalization scales in the group (network slimming). A group
  without a norm scale (e.g. after ``fuse`` folded BN into the Conv) falls back to ``l2``; the
  pass counts those groups.
- :class:`ActivationImportance` (``activation``): data-aware, ``sum_consumers ||W[:, c]|| *
  ||x_c||`` with ``||x_c||`` the RMS of the consumer's input channel over calibration data
  (the output change removing channel ``c`` causes, to first order). Statistics come from
  :func:`channel_energy`, which streams the calibration set once.

Scores of different groups live on different scales; :mod:`.selection` normalizes them per
group before ranking globally.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import ClassVar, Protocol

import numpy as np
import onnx_ir as ir

from irpass.analysis.activations import iter_activations
from irpass.analysis.channels import ChannelGroup, TensorAxis, constant_array

__all__ = [
    "ActivationImportance",
    "BNScaleImportance",
    "Importance",
    "MagnitudeImportance",
    "channel_energy",
]

_WEIGHT_ROLES = ("weight_out", "weight_in", "norm_scale")


class Importance(Protocol):
    """Scores the classes of one channel group."""

    name: ClassVar[str]

    def score(self, group: ChannelGroup) -> np.ndarray:
        """One non-negative score per class (``group.channels`` entries)."""
        ...


def _per_position(array: np.ndarray, axis: int, power: float) -> np.ndarray:
    """``sum |a|^power`` over every axis but ``axis``, one value per position."""
    moved = np.moveaxis(np.abs(np.asarray(array, dtype=np.float64)), axis, 0)
    return (moved.reshape(moved.shape[0], -1) ** power).sum(axis=1)


def _per_class(tensor_axis: TensorAxis, values: np.ndarray, channels: int) -> np.ndarray:
    return np.bincount(tensor_axis.classes, weights=values, minlength=channels)


class MagnitudeImportance:
    """Group-reduced ``sum |w|^p`` over the weights and norm scales of each channel."""

    name: ClassVar[str] = "l2"

    def __init__(self, p: int = 2) -> None:
        self.p = p

    def score(self, group: ChannelGroup) -> np.ndarray:
        """Sum over the group's weight slices (all its constants if it has no weights)."""
        members = [a for a in group.axes_with_role(*_WEIGHT_ROLES) if a.is_constant]
        if not members:
            members = [a for a in group.axes if a.is_constant]
        total = np.zeros(group.channels)
        for member in members:
            array = constant_array(member.value)
            assert array is not None
            total += _per_class(member, _per_position(array, member.axis, self.p), group.channels)
        return total


class BNScaleImportance:
    """``|gamma|`` of the norm scales in the group; ``fallback`` where there is none."""

    name: ClassVar[str] = "bn"

    def __init__(self, fallback: Importance | None = None) -> None:
        self.fallback = fallback or MagnitudeImportance(2)
        self.fallbacks = 0

    def score(self, group: ChannelGroup) -> np.ndarray:
        """Sum of |gamma| per class."""
        scales = [a for a in group.axes_with_role("norm_scale") if a.is_constant]
        if not scales:
            self.fallbacks += 1
            return self.fallback.score(group)
        total = np.zeros(group.channels)
        for member in scales:
            array = constant_array(member.value)
            assert array is not None
            total += _per_class(member, _per_position(array, member.axis, 1), group.channels)
        return total


class ActivationImportance:
    """``sum over consumers of ||W[:, c]|| * RMS(x_c)`` on calibration data.

    Args:
        energy: ``(tensor name, axis) -> mean of x^2 per position``, from
            :func:`channel_energy`.
        fallback: Scorer for groups without a measured consumer input.
    """

    name: ClassVar[str] = "activation"

    def __init__(
        self,
        energy: Mapping[tuple[str, int], np.ndarray],
        fallback: Importance | None = None,
    ) -> None:
        self.energy = energy
        self.fallback = fallback or MagnitudeImportance(2)
        self.fallbacks = 0

    def score(self, group: ChannelGroup) -> np.ndarray:
        """Pair each consumer's weight input slice with the energy of its input channel."""
        weights: dict[str, list[TensorAxis]] = {}
        inputs: dict[str, list[TensorAxis]] = {}
        for member in group.axes:
            for label in member.nodes_with_role("weight_in"):
                if member.is_constant:
                    weights.setdefault(label, []).append(member)
            for label in member.nodes_with_role("act_in"):
                if (member.value.name or "", member.axis) in self.energy:
                    inputs.setdefault(label, []).append(member)
        total = np.zeros(group.channels)
        paired = 0
        for label, consumers in weights.items():
            for activation in inputs.get(label, []):
                energy = self.energy[(activation.value.name or "", activation.axis)]
                x_norm = np.sqrt(_per_class(activation, energy, group.channels))
                for weight in consumers:
                    array = constant_array(weight.value)
                    assert array is not None
                    w_sq = _per_class(weight, _per_position(array, weight.axis, 2), group.channels)
                    total += np.sqrt(w_sq) * x_norm
                    paired += 1
        if not paired:
            self.fallbacks += 1
            return self.fallback.score(group)
        return total


def channel_energy(
    model: ir.Model,
    tensor_axes: Iterable[TensorAxis],
    source: Callable[[], Iterable[Mapping[str, np.ndarray]]],
    max_samples: int | None = None,
) -> dict[tuple[str, int], np.ndarray]:
    """Mean of ``x^2`` per position along each tensor axis, over the calibration data.

    Only activations of the main graph with a name are measured (others are skipped). The
    data are streamed: memory holds one batch plus one vector per axis.
    """
    main = set(model.graph)
    wanted: dict[str, list[int]] = {}
    for tensor_axis in tensor_axes:
        value = tensor_axis.value
        producer = value.producer()
        in_main = value in model.graph.inputs or (producer is not None and producer in main)
        if value.name and in_main and constant_array(value) is None:
            wanted.setdefault(value.name, []).append(tensor_axis.axis)
    sums: dict[tuple[str, int], np.ndarray] = {}
    counts: dict[tuple[str, int], int] = {}
    if not wanted:
        return {}
    for batch in iter_activations(model, sorted(wanted), source, max_samples=max_samples):
        for name, axes in wanted.items():
            array = np.asarray(batch[name], dtype=np.float64)
            for axis in axes:
                moved = np.moveaxis(array, axis, 0).reshape(array.shape[axis], -1)
                key = (name, axis)
                sums[key] = sums.get(key, 0) + (moved**2).sum(axis=1)
                counts[key] = counts.get(key, 0) + moved.shape[1]
    return {key: sums[key] / max(counts[key], 1) for key in sums}
