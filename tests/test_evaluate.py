from __future__ import annotations

import math

import numpy as np
import onnx_ir as ir
import pytest
from sklearn.metrics import f1_score

from irpass.data import ArraySource, CallableSource, open_data
from irpass.errors import DataError
from irpass.evaluate import SQNR_CAP_DB, Evaluator, evaluate, macro_f1
from irpass.manager import PipelineRunner
from irpass.testing import model_from_text

pytestmark = pytest.mark.usefixtures("test_passes")  # the t_* passes

LINEAR = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4] x) => (float[N, 3] y) <float[4, 3] w = {{{W}}}> {{
    y = MatMul(x, w)
}}
"""

TWO_OUTPUTS = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4] x) => (float[N, 4] a, float[N, 4] b, int64[N] c) <float s = {{{S}}}> {{
    a = Relu(x)
    b = Mul(x, s)
    c = ArgMax<axis = 1, keepdims = 0>(b)
}}
"""

W = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, -0.5, 0.25]], np.float32)


def linear(w: np.ndarray) -> ir.Model:
    return model_from_text(LINEAR.format(W=",".join(str(float(v)) for v in w.ravel())))


@pytest.fixture
def data() -> tuple[np.ndarray, ArraySource]:
    x = np.random.default_rng(0).standard_normal((50, 4)).astype(np.float32)
    return x, ArraySource({"x": x}, batch_size=16)


def test_macro_f1_matches_scikit_learn() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 5, 200)
    p = np.where(rng.random(200) < 0.7, y, rng.integers(0, 5, 200))
    p[p == 4] = 3  # class 4 is never predicted
    confusion = np.zeros((5, 5), np.int64)
    np.add.at(confusion, (y, p), 1)
    assert macro_f1(confusion) == pytest.approx(f1_score(y, p, average="macro"))


def test_identical_model_is_perfectly_faithful(data) -> None:
    _, source = data
    model = linear(W)
    metrics = Evaluator(model, source)(linear(W))
    assert metrics == {
        "cosine": pytest.approx(1.0),
        "sqnr_db": SQNR_CAP_DB,
        "max_abs_error": 0.0,
        "top1_agreement": 1.0,
    }


def test_fidelity_metrics_match_numpy(data) -> None:
    x, source = data
    w2 = W.copy()
    w2[3] = [0.1, 0.3, -0.2]
    ref, out = x @ W, x @ w2
    metrics = Evaluator(linear(W), source)(linear(w2))
    cos = np.sum(ref * out, 1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(out, axis=1)
    sqnr = 10 * math.log10(np.sum(ref.astype(np.float64) ** 2) / np.sum((ref - out) ** 2))
    assert metrics["cosine"] == pytest.approx(cos.mean(), rel=1e-5)
    assert metrics["sqnr_db"] == pytest.approx(sqnr, rel=1e-4)
    assert metrics["max_abs_error"] == pytest.approx(np.abs(ref - out).max(), rel=1e-5)
    assert metrics["top1_agreement"] == pytest.approx(np.mean(ref.argmax(1) == out.argmax(1)))
    assert metrics["top1_agreement"] < 1.0


def test_scaling_keeps_cosine_but_costs_sqnr(data) -> None:
    _, source = data
    metrics = Evaluator(linear(W), source)(linear(W * 0.5))
    assert metrics["cosine"] == pytest.approx(1.0, abs=1e-6)
    assert metrics["top1_agreement"] == 1.0
    assert metrics["sqnr_db"] == pytest.approx(10 * math.log10(4), rel=1e-4)


def test_task_metrics_with_labels(data) -> None:
    x, source = data
    labels = (x @ W).argmax(1)
    labels[:10] = (labels[:10] + 1) % 3
    evaluator = Evaluator(linear(W), source, labels=labels)
    metrics = evaluator(linear(W))
    assert metrics["accuracy"] == pytest.approx(40 / 50)
    assert metrics["macro_f1"] == pytest.approx(
        f1_score(labels, (x @ W).argmax(1), average="macro")
    )
    assert evaluator.reference_metrics() == {
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
    }


def test_one_hot_labels_are_accepted(data) -> None:
    x, source = data
    one_hot = np.eye(3, dtype=np.int64)[(x @ W).argmax(1)]
    assert Evaluator(None, source, labels=one_hot)(linear(W))["accuracy"] == 1.0


def test_regression_mse(data) -> None:
    x, source = data
    target = (x @ W + 0.5).astype(np.float32)
    metrics = evaluate(linear(W), source, labels=target)
    assert metrics == {"mse": pytest.approx(0.25, rel=1e-5)}


def test_multiple_outputs_are_prefixed_and_worst_is_plain(data) -> None:
    _, source = data
    ref = model_from_text(TWO_OUTPUTS.format(S="1.0"))
    cand = model_from_text(TWO_OUTPUTS.format(S="-1.0"))
    metrics = Evaluator(ref, source)(cand)
    assert metrics["a:sqnr_db"] == SQNR_CAP_DB
    assert metrics["b:cosine"] == pytest.approx(-1.0)
    assert metrics["cosine"] == pytest.approx(-1.0)  # worst over outputs
    assert 0.0 <= metrics["c:exact_match"] < 0.5
    assert metrics["exact_match"] == metrics["c:exact_match"]
    assert metrics["max_abs_error"] == max(
        metrics["a:max_abs_error"], metrics["b:max_abs_error"], metrics["c:max_abs_error"]
    )


def test_user_metric_hook(data) -> None:
    x, source = data

    def mean_output(outputs, labels):
        assert labels is None
        assert outputs["y"].shape == (50, 3)
        return float(outputs["y"].mean())

    def two(outputs, labels):
        return {"one": 1.0, "two": 2}

    metrics = Evaluator(linear(W), source, metric=mean_output)(linear(W))
    assert metrics["mean_output"] == pytest.approx(float((x @ W).mean()), rel=1e-5)
    assert Evaluator(None, source, metric=two)(linear(W)) == {"one": 1.0, "two": 2.0}


def test_reference_spills_to_disk_with_same_results(data) -> None:
    _, source = data
    w2 = W * 0.9
    in_memory = Evaluator(linear(W), source)(linear(w2))
    spilling = Evaluator(linear(W), source, max_reference_bytes=0)
    assert spilling(linear(w2)) == in_memory
    assert spilling(linear(w2)) == in_memory  # reference reused from disk
    spilling.close()


def test_reference_is_snapshotted_before_in_place_changes(data) -> None:
    _, source = data
    model = linear(W)
    evaluator = Evaluator(model, source)
    weight = model.graph.initializers["w"]
    weight.const_value = ir.tensor(W * 0.3, name="w")
    assert evaluator(model)["sqnr_db"] < 10.0


def test_labels_of_wrong_length(data) -> None:
    _, source = data
    with pytest.raises(DataError, match="49 labels for 50 samples"):
        Evaluator(linear(W), source, labels=np.zeros(49, np.int64))
    # Without a known sample count the check happens while streaming.
    x = data[0]
    streamed = CallableSource(lambda: iter([{"x": x[:30]}, {"x": x[30:]}]), ["x"])
    with pytest.raises(DataError, match="51 labels for 50 samples"):
        Evaluator(linear(W), streamed, labels=np.zeros(51, np.int64))(linear(W))
    with pytest.raises(DataError, match="40 labels but"):
        Evaluator(None, streamed, labels=np.zeros(40, np.int64))(linear(W))


def test_labels_out_of_range_and_bad_task(data) -> None:
    _, source = data
    with pytest.raises(DataError, match="3 classes"):
        evaluate(linear(W), source, labels=np.full(50, 7))
    with pytest.raises(DataError, match="task must be"):
        Evaluator(linear(W), source, task="ranking")
    with pytest.raises(DataError, match="nothing to measure"):
        Evaluator(None, source)


def test_empty_data_source_is_an_error() -> None:
    with pytest.raises(DataError, match="empty"):
        Evaluator(linear(W), CallableSource(lambda: iter(()), ["x"]))(linear(W))


def test_changed_output_shape_is_reported(data) -> None:
    _, source = data
    other = model_from_text(
        LINEAR.format(W=",".join(["1.0"] * 8)).replace("float[4, 3] w", "float[4, 2] w")
        .replace("float[N, 3] y", "float[N, 2] y")
    )
    with pytest.raises(DataError, match="output 'y' has shape"):
        Evaluator(linear(W), source)(other)


# ------------------------------------------------------------- through the pass manager
def test_damaged_model_shows_a_fidelity_drop_in_the_per_pass_report(tmp_path) -> None:
    from irpass.context import PassContext
    from irpass.ir import load_model
    from models import trained_eval_data, trained_paths

    model = load_model(trained_paths()["digits_mlp"])
    data = open_data(trained_eval_data()["digits_mlp"], model)
    labels = np.load(trained_eval_data()["digits_mlp"])["labels"]
    evaluator = Evaluator(model, data, labels)
    context = PassContext(evaluation_data=data, labels=labels, evaluator=evaluator)
    result = PipelineRunner("t_eval_damage", context=context).run(model)
    passes = result.report.to_dict()["passes"]
    (damage,) = [p for p in passes if p["name"] == "t_eval_damage"]
    metrics = damage["metrics"]
    assert metrics["sqnr_db"] < 20.0
    assert metrics["max_abs_error"] > 0.1
    assert metrics["cosine"] < 0.999
    assert metrics["top1_agreement"] < 1.0
    assert metrics["accuracy"] != evaluator.reference_metrics()["accuracy"]


def test_changed_number_of_outputs_is_reported(data) -> None:
    _, source = data
    two = model_from_text(TWO_OUTPUTS.format(S="1.0"))
    fewer = model_from_text(
        TWO_OUTPUTS.format(S="1.0")
        .replace(", int64[N] c)", ")")
        .replace("    c = ArgMax<axis = 1, keepdims = 0>(b)\n", "")
    )
    with pytest.raises(DataError, match="2 outputs, the reference 3"):
        Evaluator(two, source)(fewer)


def test_varying_sequence_lengths_and_dense_labels() -> None:
    from irpass.ir import load_model
    from models import zoo_paths

    transformer = load_model(zoo_paths()["transformer"])
    rng = np.random.default_rng(0)
    feeds = [{"tokens": rng.integers(0, 128, (2, n))} for n in (3, 17, 64)]
    source = CallableSource(lambda: iter(feeds), ["tokens"])
    metrics = Evaluator(transformer, source, labels=np.array([0, 1, 2, 3, 0, 1]))(transformer)
    assert metrics["top1_agreement"] == 1.0 and metrics["sqnr_db"] == SQNR_CAP_DB
    assert 0.0 <= metrics["accuracy"] <= 1.0

    unet = load_model(zoo_paths()["unet"])
    x = rng.standard_normal((4, 1, 16, 16)).astype(np.float32)
    from irpass.testing import run_ir

    mask = run_ir(unet, {"input": x})["mask"]
    pixels = mask.argmax(axis=1)  # per-pixel classes [N, H, W]
    pixels[0, 0, :4] = 1 - pixels[0, 0, :4]
    metrics = evaluate(unet, ArraySource({"input": x}), labels=pixels)
    assert metrics["accuracy"] == pytest.approx(1 - 4 / pixels.size)
