"""Which channels go: ranking, caps, rounding, frozen classes and the per-axis guard."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from hypothesis import given, settings
from hypothesis import strategies as st

from irpass.analysis.channels import ChannelGroup, TensorAxis
from irpass.passes.pruning.selection import select_channels


def _group(
    gid: int, channels: int, frozen: int = 0, axes: list[np.ndarray] | None = None
) -> ChannelGroup:
    value = ir.Value(name=f"v{gid}")
    tensor_axes = [
        TensorAxis(value, -1, classes, frozenset())
        for classes in (axes if axes is not None else [np.arange(channels)])
    ]
    frozen_classes = np.zeros(channels, dtype=bool)
    frozen_classes[:frozen] = True
    return ChannelGroup(gid, channels, tensor_axes, [], ["x"] if frozen else [], frozen_classes)


def test_local_removes_the_lowest_scores_of_each_group() -> None:
    groups = [_group(0, 10), _group(1, 4)]
    scores = {0: np.arange(10.0)[::-1], 1: np.array([3.0, 1.0, 2.0, 4.0])}
    selection = select_channels(groups, scores, ratio=0.5, scope="local")
    assert selection.removed[0].tolist() == [5, 6, 7, 8, 9]
    assert selection.removed[1].tolist() == [1, 2]


def test_global_ranks_scores_normalized_per_group() -> None:
    # group 1's scores are 100x larger but relatively just as spread as group 0's
    groups = [_group(0, 4), _group(1, 4)]
    scores = {0: np.array([1.0, 2.0, 3.0, 4.0]), 1: np.array([100.0, 200.0, 300.0, 400.0])}
    selection = select_channels(groups, scores, ratio=0.25, scope="global")
    assert sorted(selection.removed) == [0, 1]
    assert selection.channels_removed == 2


def test_cap_keeps_a_share_of_every_group() -> None:
    groups = [_group(0, 10), _group(1, 10)]
    scores = {0: np.full(10, 0.001) + np.arange(10) * 1e-6, 1: np.linspace(1, 100, 10)}
    selection = select_channels(groups, scores, ratio=0.5, scope="global", max_group_ratio=0.6)
    assert all(r.size <= 6 for r in selection.removed.values())


def test_frozen_classes_are_never_removed() -> None:
    groups = [_group(0, 8, frozen=3)]
    selection = select_channels(groups, {0: np.zeros(8)}, ratio=0.9, scope="local")
    assert not set(selection.removed[0].tolist()) & {0, 1, 2}


def test_no_tensor_axis_loses_every_position() -> None:
    # a Concat input holding classes 0-1 only: both rank lowest, one must stay
    axes = [np.arange(6), np.array([0, 1])]
    groups = [_group(0, 6, axes=axes)]
    scores = {0: np.array([0.0, 0.1, 5.0, 6.0, 7.0, 8.0])}
    selection = select_channels(groups, scores, ratio=0.34, scope="local")
    assert selection.removed[0].tolist() == [0]


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(2, 40), min_size=1, max_size=5),
    ratio=st.floats(0.0, 0.95),
    round_to=st.sampled_from([1, 4, 8]),
    cap=st.floats(0.1, 0.95),
    scope=st.sampled_from(["global", "local"]),
    seed=st.integers(0, 1000),
)
def test_selection_invariants(
    sizes: list[int], ratio: float, round_to: int, cap: float, scope: str, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    groups = [_group(i, n) for i, n in enumerate(sizes)]
    scores = {g.id: rng.random(g.channels) for g in groups}
    selection = select_channels(
        groups, scores, ratio=ratio, scope=scope, round_to=round_to, max_group_ratio=cap
    )
    for group in groups:
        removed = selection.removed.get(group.id, np.zeros(0, dtype=np.int64))
        assert (
            len(set(removed.tolist())) == removed.size <= int(np.floor(group.channels * cap + 1e-9))
        )
        kept = group.channels - removed.size
        assert kept >= 1
        if removed.size and round_to > 1 and group.channels >= round_to:
            assert kept % round_to == 0
        if removed.size:  # the lowest-scored ones went
            assert scores[group.id][removed].max() <= np.delete(scores[group.id], removed).min()
