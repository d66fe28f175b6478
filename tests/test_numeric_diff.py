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
    # what relu1, bn1 and conv2 consume (conv1 reads the graph input itself)
    assert [t.node for t in result.intermediates] == ["r_conv1", "r_bn1", "r_relu1"]
    assert result.first_divergence is None
    json.dumps(result.to_dict())


def test_folded_bn_keeps_outputs_and_names_the_changed_layer():
    result = numeric_diff(net(), net(fold_bn=True), samples=2)
    assert result.samples == 2
    assert not result.outputs[0].diverged
    # Relu reads BN's output in A and Conv's (BN folded in) in B: they agree
    assert result.first_divergence is None
    assert [(t.a_name, t.b_name) for t in result.intermediates] == [("bn1", "c1"), ("r1", "r1")]
    assert all(t.cosine > 0.99999 for t in result.intermediates)


def test_qdq_divergence_starts_at_the_quantized_conv():
    result = numeric_diff(net(), net(qdq=True))
    assert result.outputs[0].diverged
    assert 0.99 < result.outputs[0].cosine < 1.0
    assert result.first_divergence.node == "conv1"
    assert [t.node for t in result.intermediates] == ["conv1", "bn1", "relu1"]
    assert all(t.diverged for t in result.intermediates)


def test_pruned_intermediates_with_other_shapes_are_skipped():
    result = numeric_diff(net(8), net(6))
    assert result.intermediates == []
    assert len([s for s in result.skipped if "shapes differ" in s]) == 3
    assert result.outputs[0].shape == [1, 4, 8, 8]


def test_given_feeds_and_inputs_do_not_change_models():
    a, b = net(), net(qdq=True)
    before = ir.to_proto(a).SerializeToString()
    x = np.zeros((1, 3, 8, 8), np.float32)
    result = numeric_diff(a, b, feeds=[{"x": x}], intermediates=False)
    assert result.intermediates == [] and result.inputs.startswith("given")
    assert ir.to_proto(a).SerializeToString() == before


X_SHAPE = {"x": [1, 3, 8, 8]}


def test_feeds_from_npz_and_npy(tmp_path):
    x = np.random.default_rng(0).standard_normal((3, 1, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x)
    feeds = feeds_from_file(tmp_path / "d.npz", X_SHAPE)
    assert len(feeds) == 3 and feeds[0]["x"].shape == (1, 3, 8, 8)
    # samples along axis 0 of an array of the input's rank, split by the fixed batch size
    np.save(tmp_path / "d.npy", x[:, 0])
    feeds = feeds_from_file(tmp_path / "d.npy", X_SHAPE, max_samples=2)
    assert len(feeds) == 2 and np.array_equal(feeds[1]["x"], x[1])
    np.save(tmp_path / "one.npy", x[0])
    assert len(feeds_from_file(tmp_path / "one.npy", X_SHAPE)) == 1
    result = numeric_diff(net(), net(fold_bn=True),
                          feeds=feeds_from_file(tmp_path / "d.npz", X_SHAPE))
    assert result.samples == 3


def test_feeds_from_file_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        feeds_from_file(tmp_path / "missing.npz", X_SHAPE)
    np.savez(tmp_path / "d.npz", a=np.zeros(3), b=np.zeros(3))
    with pytest.raises(DataError, match="no array for input"):
        feeds_from_file(tmp_path / "d.npz", X_SHAPE)
    (tmp_path / "d.csv").write_text("1,2")
    with pytest.raises(DataError, match="unsupported data format"):
        feeds_from_file(tmp_path / "d.csv", X_SHAPE)


def test_memory_budget_splits_intermediates_into_runs_with_equal_results():
    a, b = net(), net(qdq=True)
    whole = numeric_diff(a, b)
    split = numeric_diff(a, b, max_bytes=1)
    assert whole.runs == 1 and split.runs == len(split.intermediates) == 3
    assert [t.to_dict() for t in split.intermediates] == [t.to_dict() for t in whole.intermediates]
    assert [t.to_dict() for t in split.outputs] == [t.to_dict() for t in whole.outputs]


def test_renamed_graph_input_and_output_are_paired_by_position():
    a, b = net(), net()
    b.graph.inputs[0].name = "images"
    b.graph.outputs[0].name = "logits"
    result = numeric_diff(a, b)
    assert [(t.a_name, t.b_name) for t in result.outputs] == [("y", "logits")]
    assert result.outputs[0].max_abs == 0.0
