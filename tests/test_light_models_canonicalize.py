"""``canonicalize`` on real third-party models: the light model zoo (opset 9, IR 3, weights built
by ConstantOfShape) and magika's trained model (opset 15, dynamic batch); plus models/zoo.

For each: the ONNX checker accepts the result, ONNX Runtime loads it, outputs equal the
original's, the opset is 17, no ConstantOfShape is left, and the node count is at most
onnx-simplifier's. onnxsim also folds BatchNormalization into Conv, which is a fusion (the
``fuse`` preset's ``fold_batchnorm``), so the canonicalize-only comparison is against
``onnxsim.simplify(skip_fuse_bn=True)`` and ``canonicalize,fuse`` is compared against onnxsim's
full run in the benchmark (benchmarks/canonicalize.py).
"""

from __future__ import annotations

import functools
import pathlib

import onnx
import onnx_ir as ir
import pytest

from irpass.manager import PipelineRunner, RunOptions
from irpass.testing import assert_equivalent
from tests.conftest import LIGHT_MODELS, light_model_path, magika_model_path

ZOO_DIR = pathlib.Path(__file__).resolve().parent.parent / "models" / "zoo"
ZOO_MODELS = sorted(p.stem for p in ZOO_DIR.glob("*.onnx"))

#: Light models whose folded weights are hundreds of MB (ORT sessions and onnxsim take long).
SLOW = {"vgg19", "bvlc_alexnet", "zfnet512"}


def _params(names: list[str]) -> list[object]:
    return [
        pytest.param(name, marks=pytest.mark.slow) if name in SLOW else pytest.param(name)
        for name in names
    ]


@functools.cache
def _onnxsim_nodes(path: str) -> int:
    onnxsim = pytest.importorskip("onnxsim")
    simplified, ok = onnxsim.simplify(onnx.load(path), skip_fuse_bn=True)
    assert ok
    return len(simplified.graph.node)


def _canonicalize(path: pathlib.Path) -> tuple[ir.Model, ir.Model]:
    reference = ir.load(path)
    model = ir.load(path)
    result = PipelineRunner("canonicalize", options=RunOptions(verify="none")).run(model)
    assert result.model is model
    assert not [p for p in result.report.passes if p.error], result.report.passes
    return reference, model


def _check(reference: ir.Model, model: ir.Model, path: pathlib.Path, **kwargs: object) -> None:
    assert model.opset_imports[""] == 17
    assert not [n for n in model.graph if n.op_type in ("ConstantOfShape", "Dropout")]
    assert_equivalent(reference, model, **kwargs)  # checker + ORT load + outputs
    assert len(model.graph) <= _onnxsim_nodes(str(path))


@pytest.mark.parametrize("name", _params(LIGHT_MODELS))
def test_light_model(name: str) -> None:
    path = light_model_path(name)
    reference, model = _canonicalize(path)
    assert model.ir_version >= 8
    assert not [v for v in model.graph.inputs if v.name in model.graph.initializers]
    _check(reference, model, path, seeds=(0,))


def test_magika_model() -> None:
    path = magika_model_path()
    if path is None:
        pytest.skip("magika is not installed (pip install -e '.[test]')")
    reference, model = _canonicalize(path)
    batch = model.graph.inputs[0].shape[0]
    assert not isinstance(batch, int)  # the batch stays dynamic
    dim = {str(batch): 3} if batch is not None and str(batch) else None
    _check(reference, model, path, dim_values=dim)


@pytest.mark.skipif(not ZOO_MODELS, reason="models/zoo has no exported models")
@pytest.mark.parametrize("name", ZOO_MODELS)
def test_zoo_model(name: str) -> None:
    """irpass's own zoo (torch.onnx exports, opset 20, dynamic batch)."""
    path = ZOO_DIR / f"{name}.onnx"
    reference, model = _canonicalize(path)
    assert_equivalent(reference, model, dim_values={"batch": 2})
    assert len(model.graph) <= _onnxsim_nodes(str(path))
