from __future__ import annotations

import pathlib

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from irpass.ir import load_model
from irpass.search.layers import allocate_ratios, per_layer_knob, probe_step, prune_layer_probes
from irpass.search.space import Knob

REPO = pathlib.Path(__file__).resolve().parents[2]
KNOB = Knob("prune.ratio", "prune", "ratio", (0.2, 0.5), (("round_to", 1),))


def test_sensitive_groups_keep_more_channels_and_the_total_is_kept() -> None:
    ratios = allocate_ratios(0.4, [100, 100, 100], [0.1, 0.01, 0.0], cap=0.8)
    assert ratios[0] < ratios[1] < ratios[2] <= 0.8
    removed = sum(r * c for r, c in zip(ratios, [100, 100, 100], strict=True))
    assert abs(removed - 120) < 1.0


@settings(max_examples=60, deadline=None)
@given(st.floats(0.05, 0.7), st.lists(st.tuples(st.integers(1, 256), st.floats(0, 1)),
                                      min_size=1, max_size=12))
def test_allocation_respects_the_cap_and_the_share(target: float, groups: list) -> None:
    channels = [c for c, _ in groups]
    drops = [d for _, d in groups]
    ratios = allocate_ratios(target, channels, drops, cap=0.8)
    assert all(0.0 <= r <= 0.8 for r in ratios)
    removed = float(np.dot(ratios, channels))
    reachable = min(target, 0.8) * sum(channels)
    assert removed <= reachable + 0.01 * sum(channels) + 1e-6
    assert removed >= reachable - 0.01 * sum(channels) - 1e-6


def test_probes_and_per_layer_knob_on_a_trained_cnn() -> None:
    model = load_model(REPO / "models" / "trained" / "power_cnn1d.onnx")
    probes = prune_layer_probes(model, KNOB)
    assert len(probes) >= 4 and all(p.channels >= 2 for p in probes)
    step = probe_step(KNOB, probes[0])
    options = step.options_dict()
    assert options["ratio"] == 0.0 and options["ratios"] == (f"#{probes[0].group}=0.5",)
    assert options["round_to"] == 1
    knob = per_layer_knob(KNOB, probes, [0.0] * (len(probes) - 1) + [0.2])
    assert knob.levels == 2 and knob.name == "prune.ratio(per layer)"
    last = knob.step(2).options_dict()
    assert last["ratio"] == 0.5 and len(last["ratios"]) == len(probes)
    values = [float(e.rpartition("=")[2]) for e in last["ratios"]]
    assert values[-1] == min(values)  # the one sensitive group keeps the most
