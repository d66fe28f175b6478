from __future__ import annotations

import json

import numpy as np
import onnx_ir as ir
import pytest

from irpass.errors import DataError
from irpass.numeric_diff import feeds_from_file, numeric_diff
from tests.diff_models_for_tests import net


def test_identical_models_do_not_diverge():
    result = numeric_diff(net(), net(prefix="r_", rename_tensors=True))
    assert [t.a_name for t in result.outputs] == ["y"]
    assert result.outputs[0].max_abs == 0.0 and result.outputs[0].cosine == pytest.approx(1.0)
    assert len(result.intermediates) == 4
    assert result.first_divergence is None
    json.dumps(result.to_dict())


def test_folded_bn_keeps_outputs_and_names_the_changed_layer():
    result = numeric_diff(net(), net(fold_bn=True), samples=2)
    assert result.samples == 2
    assert not result.outputs[0].diverged
    # Conv1 now computes Conv+BN: its own output differs, everything after agrees again
    assert result.first_divergence is not None and result.first_divergence.node == "conv1"
    relu = next(t for t in result.intermediates if t.node == "relu1")
    assert not relu.diverged and relu.cosine > 0.99999


def test_qdq_divergence_starts_at_the_quantized_conv():
    result = numeric_diff(net(), net(qdq=True))
    assert result.outputs[0].diverged
    assert 0.99 < result.outputs[0].cosine < 1.0
    assert result.first_divergence.node == "conv1"
    assert [t.node for t in result.intermediates] == ["conv1", "bn1", "relu1", "conv2"]


def test_pruned_intermediates_with_other_shapes_are_skipped():
    result = numeric_diff(net(8), net(6))
    assert [t.node for t in result.intermediates] == ["conv2"]
    assert any("shapes differ" in s for s in result.skipped)


def test_given_feeds_and_inputs_do_not_change_models():
    a, b = net(), net(qdq=True)
    before = ir.to_proto(a).SerializeToString()
    x = np.zeros((1, 3, 8, 8), np.float32)
    result = numeric_diff(a, b, feeds=[{"x": x}], intermediates=False)
    assert result.intermediates == [] and result.inputs.startswith("given")
    assert ir.to_proto(a).SerializeToString() == before


def test_feeds_from_npz_and_npy(tmp_path):
    x = np.random.default_rng(0).standard_normal((3, 1, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x)
    feeds = feeds_from_file(tmp_path / "d.npz", ["x"], [4])
    assert len(feeds) == 3 and feeds[0]["x"].shape == (1, 3, 8, 8)
    np.save(tmp_path / "d.npy", x[0])
    feeds = feeds_from_file(tmp_path / "d.npy", ["x"], [4])
    assert len(feeds) == 1 and np.array_equal(feeds[0]["x"], x[0])
    result = numeric_diff(net(), net(fold_bn=True), feeds=feeds_from_file(
        tmp_path / "d.npz", ["x"], [4]))
    assert result.samples == 3


def test_feeds_from_file_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        feeds_from_file(tmp_path / "missing.npz", ["x"], [4])
    np.savez(tmp_path / "d.npz", a=np.zeros(3), b=np.zeros(3))
    with pytest.raises(DataError, match="no array for input"):
        feeds_from_file(tmp_path / "d.npz", ["x"], [4])
    (tmp_path / "d.csv").write_text("1,2")
    with pytest.raises(DataError, match="unsupported data format"):
        feeds_from_file(tmp_path / "d.csv", ["x"], [4])
