from __future__ import annotations

import sys
import textwrap
from collections import Counter
from typing import Any

import numpy as np
import pytest

from irpass.errors import UnsupportedModelError
from irpass.lower import LoweringError, load_factory, lower, lower_to_file, require_torch
from irpass.testing import run_ir
from irpass.verify import check_structure


def test_missing_torch_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(LoweringError, match="needs torch") as info:
        require_torch()
    assert "irpass[torch]" in (info.value.hint or "")


def test_factory_spec_errors(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(LoweringError, match=r"package.module:factory"):
        load_factory("no_colon")
    with pytest.raises(LoweringError, match="cannot import"):
        load_factory("no_such_module_abc:f")
    (tmp_path / "factories_for_lower.py").write_text(
        textwrap.dedent(
            """
            value = 3

            def bare():
                return object()
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(LoweringError, match="no attribute"):
        load_factory("factories_for_lower:missing")
    with pytest.raises(LoweringError, match="not callable"):
        load_factory("factories_for_lower:value")
    with pytest.raises(UnsupportedModelError, match="without example inputs"):
        load_factory("factories_for_lower:bare")


def _has_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


needs_torch = pytest.mark.skipif(
    not _has_torch(), reason="torch is not installed (pip install 'irpass[torch]')"
)


def _small() -> tuple[Any, tuple[Any, ...]]:
    import torch

    class Small(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
            self.bn = torch.nn.BatchNorm2d(4)
            self.fc = torch.nn.Linear(4, 2)

        def forward(self, x):
            y = torch.relu(self.bn(self.conv(x)))
            return self.fc(y.mean(dim=(2, 3)))

    torch.manual_seed(0)
    module = Small().eval()
    with torch.no_grad():
        module.bn.running_mean.uniform_(-0.5, 0.5)
        module.bn.running_var.uniform_(0.5, 1.5)
    return module, (torch.randn(2, 1, 6, 6),)


@pytest.mark.torch
@needs_torch
def test_lower_has_dynamic_batch_and_matches_torch() -> None:
    import torch

    module, example = _small()
    model = lower(module, example, input_names=["image"], output_names=["logits"])
    check_structure(model)
    assert model.opset_imports[""] == 20
    (inp,) = model.graph.inputs
    assert inp.name == "image"
    assert not isinstance(inp.shape[0], int)
    assert [d for d in inp.shape][1:] == [1, 6, 6]
    x = np.random.default_rng(0).standard_normal((5, 1, 6, 6)).astype(np.float32)
    out = run_ir(model, {"image": x})["logits"]
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    # Weights are plain numpy: the model does not depend on torch tensors.
    for value in model.graph.initializers.values():
        assert isinstance(value.const_value.raw, np.ndarray)


@pytest.mark.torch
@needs_torch
@pytest.mark.parametrize(
    ("optimize", "has_batchnorm"), [("fold", True), ("full", False), ("none", True)]
)
def test_optimize_modes(optimize: str, has_batchnorm: bool) -> None:
    module, example = _small()
    model = lower(module, example, optimize=optimize)
    ops = Counter(node.op_type for node in model.graph)
    assert ("BatchNormalization" in ops) == has_batchnorm
    if optimize == "fold":
        assert "CastLike" not in ops and "Expand" not in ops


@pytest.mark.torch
@needs_torch
def test_static_batch_and_extra_dynamic_axes(tmp_path) -> None:
    import torch

    class Tokens(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(10, 4)

        def forward(self, ids):
            return self.embed(ids).sum(dim=1)

    example = (torch.zeros(2, 5, dtype=torch.int64),)
    static = lower(Tokens(), example, dynamic_batch=False)
    assert list(static.graph.inputs[0].shape) == [2, 5]
    dynamic = lower_to_file(
        Tokens(), example, tmp_path / "t.onnx", dynamic_axes={0: {1: "sequence"}}
    )
    assert str(dynamic.graph.inputs[0].shape[1]) == "sequence"
    out = run_ir(dynamic, {"ids": np.zeros((3, 9), np.int64)})
    assert next(iter(out.values())).shape == (3, 4)
    assert (tmp_path / "t.onnx").is_file()


@pytest.mark.torch
@needs_torch
def test_export_failure_is_a_lowering_error() -> None:
    import torch

    class Broken(torch.nn.Module):
        def forward(self, x):
            return torch.linalg.eigh(x)[0]  # no ONNX translation

    with pytest.raises(LoweringError, match=r"torch.onnx.export failed for Broken") as info:
        lower(Broken(), (torch.eye(2)[None],))
    assert "\x1b" not in info.value.message
    with pytest.raises(LoweringError, match=r"expected a torch.nn.Module"):
        lower(lambda x: x, (torch.zeros(1),))
    with pytest.raises(LoweringError, match="optimize must be"):
        lower(_small()[0], _small()[1], optimize="some")  # type: ignore[arg-type]


@pytest.mark.torch
@needs_torch
def test_load_factory_accepts_tuple_and_example_attribute(tmp_path, monkeypatch) -> None:
    import torch

    (tmp_path / "torch_factories_for_lower.py").write_text(
        textwrap.dedent(
            """
            import torch

            def pair():
                return torch.nn.ReLU(), torch.zeros(1, 3)

            def attribute():
                module = torch.nn.ReLU()
                module.example_inputs = (torch.zeros(1, 3),)
                return module
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    module, example = load_factory("torch_factories_for_lower:pair")
    assert isinstance(module, torch.nn.ReLU) and example[0].shape == (1, 3)
    module, example = load_factory("torch_factories_for_lower:attribute")
    assert example[0].shape == (1, 3)
