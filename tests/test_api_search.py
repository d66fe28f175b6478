"""``irpass.optimize(..., target=T, max_drop=...)``: the search wired into target runs.

The searched pipeline is the target's whole pipeline (base, legalization, precision stage);
pruning keeps the target's channel alignment; fixed-shape targets get their data in the fixed
batch; a precision stage the chosen setting leaves out steps the plan down with the reason.
"""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

import irpass
from irpass.data import load_labels, open_data
from irpass.errors import DataError
from irpass.evaluate import evaluate
from irpass.search import SearchSettings
from models import MODELS_DIR, trained_paths

MLP = trained_paths()["digits_mlp"]
TEST = MODELS_DIR / "trained" / "digits8_test.npz"
CALIB = MODELS_DIR / "trained" / "digits8_calib.npz"
SERIAL = SearchSettings(executor="serial", max_candidates=6, only=("prune",))


def _hidden_widths(model: irpass.ir.ir.Model) -> list[int]:
    """Output widths of every Gemm but the classifier (the last one)."""
    gemms = [n for n in model.graph if n.op_type == "Gemm"]
    widths = []
    for node in gemms[:-1]:
        weight = node.inputs[1].const_value
        assert weight is not None
        trans_b = node.attributes.get_int("transB", 0)
        widths.append(weight.shape[0] if trans_b else weight.shape[1])
    return widths


def test_x86_search_prunes_to_the_target_alignment_within_the_budget() -> None:
    result = irpass.optimize(MLP, "x86", precision="fp32", calib_data=str(CALIB),
                             eval_data=str(TEST), labels="data", max_drop="1%", search=SERIAL)
    search = result.report.search
    assert search is not None and search["found"]
    assert "prune(round_to=16," in result.report.pipeline
    widths = _hidden_widths(result.model)
    assert widths and all(w % 16 == 0 for w in widths)
    assert result.report.after["params"] < result.report.before["params"]
    accuracy = evaluate(result.model, open_data(str(TEST), result.model),
                        labels=load_labels(str(TEST)))["accuracy"]
    assert accuracy >= search["threshold"]


@pytest.mark.parametrize("target", ["rpi", "android"])  # android's stage ends losslessly
def test_a_precision_stage_no_setting_fits_steps_down_with_the_reason(target: str) -> None:
    # no int8 model keeps the outputs this close: the search leaves quantize out
    settings = SearchSettings(executor="serial", max_candidates=6, only=("quantize",))
    result = irpass.optimize(MLP, target, calib_data=str(CALIB), eval_data=str(TEST),
                             labels="data", max_drop="cosine>=0.9999999", search=settings)
    search = result.report.search
    assert search is not None and not search["found"]
    assert any(p["description"].startswith("quantize") for p in search["points"])
    assert result.precision is not None and result.precision.effective == "fp32"
    assert any("accuracy-budgeted search" in reason for reason in result.precision.reasons)
    assert not any("failed (it left" in reason for reason in result.precision.reasons)
    assert not any(n.op_type == "QuantizeLinear" for n in result.model.graph)


def test_fixed_shape_target_searches_in_its_fixed_batch() -> None:
    result = irpass.optimize(MLP, "android", precision="fp32", eval_data=str(TEST),
                             labels="data", max_drop="2%", search=SERIAL)
    search = result.report.search
    assert search is not None and len(search["points"]) > 1
    assert all(p["metrics"] for p in search["points"])  # every candidate ran on batch-1 data
    assert result.model.graph.inputs[0].shape[0] == 1


def test_max_drop_needs_the_data_as_a_file() -> None:
    with np.load(TEST) as data:
        feeds = [{"input": data["input"][:8]}]
    with pytest.raises(DataError, match="file or data spec"):
        irpass.optimize(MLP, "x86", precision="fp32", eval_data=feeds, max_drop="1%",
                        search=SERIAL)


def test_max_drop_without_evaluation_data_is_refused(tmp_path: pathlib.Path) -> None:
    with pytest.raises(DataError, match="evaluation data"):
        irpass.optimize(MLP, "x86", precision="fp32", max_drop="1%", search=SERIAL)

