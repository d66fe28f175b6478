from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest

from irpass.ir import load_model
from irpass.testing import run_ir
from irpass.verify import check_structure
from models import MODELS_DIR, ZOO_NAMES, zoo_paths

# Ops each architecture must contain (what makes it worth having in the zoo).
EXPECTED_OPS = {
    "resnet_cnn": {"Conv", "BatchNormalization", "Add", "Relu", "Gemm"},
    "mobilenet_v2": {"Conv", "BatchNormalization", "Clip", "Add"},
    "power_cnn1d": {"Conv", "MaxPool", "Gemm", "Relu", "Softmax"},
    "mlp": {"Gemm", "Relu"},
    "transformer": {"Gather", "MatMul", "Softmax", "LayerNormalization", "Gelu"},
    "unet": {"Conv", "Resize", "Concat", "Split", "MaxPool"},
    "patch_transformer": {"Reshape", "MatMul", "Softmax", "LayerNormalization", "Gelu"},
    "mobilenet_v3": {"Conv", "BatchNormalization", "HardSwish", "HardSigmoid", "Mul", "Add"},
}

FEEDS = {
    "resnet_cnn": {"input": (3, 1, 16, 16)},
    "mobilenet_v2": {"input": (3, 1, 16, 16)},
    "power_cnn1d": {"trace": (3, 1, 512)},
    "mlp": {"input": (3, 64)},
    "transformer": {"tokens": (3, 11)},
    "unet": {"input": (3, 1, 16, 16)},
    "patch_transformer": {"input": (3, 64)},
    "mobilenet_v3": {"input": (3, 1, 16, 16)},
}


def _feeds(name: str) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds = {}
    for key, shape in FEEDS[name].items():
        if name == "transformer":
            feeds[key] = rng.integers(0, 128, shape).astype(np.int64)
        else:
            feeds[key] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def test_every_architecture_is_committed() -> None:
    paths = zoo_paths()
    assert list(paths) == list(ZOO_NAMES)
    for path in paths.values():
        assert path.is_file()
        assert path.stat().st_size < 2 * 2**20


def test_models_folder_stays_small() -> None:
    total = sum(p.stat().st_size for p in MODELS_DIR.rglob("*") if p.is_file())
    assert total < 10 * 2**20


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_zoo_model_is_valid_with_dynamic_batch(name: str) -> None:
    model = load_model(zoo_paths()[name])
    check_structure(model)
    onnx.checker.check_model(str(zoo_paths()[name]), full_check=True)
    ops = Counter(node.op_type for node in model.graph)
    assert EXPECTED_OPS[name] <= set(ops), f"missing {EXPECTED_OPS[name] - set(ops)}"
    outputs = run_ir(model, _feeds(name))
    first = next(iter(outputs.values()))
    assert first.shape[0] == 3
    assert np.isfinite(first).all()


def test_transformer_takes_any_sequence_length() -> None:
    model = load_model(zoo_paths()["transformer"])
    for length in (1, 7, 64):
        tokens = np.zeros((2, length), np.int64)
        assert run_ir(model, {"tokens": tokens})["logits"].shape == (2, 4)


def test_power_cnn1d_outputs_probabilities() -> None:
    model = load_model(zoo_paths()["power_cnn1d"])
    probs = run_ir(model, _feeds("power_cnn1d"))["probs"]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def _has_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


needs_torch = pytest.mark.skipif(
    not _has_torch(), reason="torch is not installed (pip install 'irpass[torch]')"
)


def _check_builder(name: str) -> None:
    import torch

    from irpass.lower import lower
    from models import zoo

    module = zoo.build(name)
    entry = zoo.ZOO[name]
    lowered = lower(module, module.example_inputs, input_names=entry.input_names,
                    output_names=entry.output_names, dynamic_axes=entry.dynamic_axes)
    committed = load_model(zoo_paths()[name])
    feeds = _feeds(name)
    for key, value in run_ir(committed, feeds).items():
        np.testing.assert_array_equal(run_ir(lowered, feeds)[key], value)
    with torch.no_grad():
        expected = module(*(torch.from_numpy(v) for v in feeds.values())).numpy()
    np.testing.assert_allclose(next(iter(run_ir(committed, feeds).values())), expected,
                               rtol=1e-5, atol=1e-6)


@pytest.mark.torch
@needs_torch
@pytest.mark.parametrize("name", ["mlp", "power_cnn1d"])
def test_builders_reproduce_the_committed_files(name: str) -> None:
    _check_builder(name)


@pytest.mark.slow
@pytest.mark.torch
@needs_torch
@pytest.mark.parametrize("name", ZOO_NAMES)
def test_every_builder_matches_its_committed_file(name: str) -> None:
    _check_builder(name)
