"""svd on third-party models: light model-zoo graphs (opset 9, weights from ConstantOfShape) and
the trained magika model. Weights are randomized (seeded) after canonicalize, as the light
graphs' weights are all one constant.

Left out: AlexNet, ZFNet-512 and VGG-19, whose 4096 x 9216..25088 fully connected layers
make one full SVD take minutes on this machine (the code path is the MLP's Gemm). ResNet-50
and DenseNet-121 take 10-20 s each and are marked slow. Canonicalize merges the light graphs'
identical constant weights into shared initializers, so several of their layers are left
alone as "shared with another node", itself a refusal worth exercising.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from lowrank_testlib import (
    clone,
    params,
    run_pass,
    single_blas_thread,  # noqa: F401  (autouse fixture)
)

from irpass.ir import load_model
from irpass.manager import PipelineRunner, RunOptions
from irpass.passes.lowrank.svd import SvdPass
from irpass.testing import run_ir
from irpass.verify import check_structure, make_session, random_feeds
from tests.conftest import light_model_path, magika_model_path


def prepared(name: str) -> ir.Model:
    path = magika_model_path() if name == "magika" else light_model_path(name)
    if path is None:
        pytest.skip("magika is not installed (pip install -e '.[test]')")
    model = load_model(path)
    PipelineRunner("canonicalize", options=RunOptions(verify="none")).run(model)
    rng = np.random.default_rng(0)
    for value in model.graph.initializers.values():
        array = value.const_value.numpy()
        if array.dtype.kind == "f" and array.ndim >= 2:
            data = (rng.standard_normal(array.shape) * 0.05).astype(array.dtype)
            value.const_value = ir.tensor(data, name=value.name)
    return model


@pytest.mark.parametrize("name", [
    "squeezenet", "shufflenet", "inception_v1", "magika",
    pytest.param("resnet50", marks=pytest.mark.slow),
    pytest.param("densenet121", marks=pytest.mark.slow),
])
def test_factorized_real_model_is_valid_smaller_and_runs(name):
    model = prepared(name)
    reference = clone(model)
    feeds = random_feeds(make_session(model), seed=0, dim_values={"N": 1, "batch": 1})
    modified, p = run_pass(SvdPass, model, rank=16)
    assert modified and p.details["layers"]
    check_structure(model)
    saved = p.details["factorized_params_before"] - p.details["factorized_params_after"]
    assert params(reference) - params(model) == saved > 0
    expected = run_ir(reference, feeds)
    got = run_ir(model, feeds)
    assert {k: v.shape for k, v in got.items()} == {k: v.shape for k, v in expected.items()}
    assert all(np.isfinite(v).all() for v in got.values())


def test_data_aware_on_a_real_cnn_streams_its_own_conv_geometry():
    model = prepared("squeezenet")
    session = make_session(model)
    feeds = [random_feeds(session, seed=s) for s in (0, 1)]
    calib = {k: np.concatenate([f[k] for f in feeds]) for k in feeds[0]}
    from irpass.context import PassContext
    from irpass.data import ArraySource

    svd = SvdPass(SvdPass.Options(ratio=0.3), PassContext(
        calibration_data=ArraySource(calib, batch_size=1)))
    assert svd(model).modified
    check_structure(model)
    assert svd.details["mode"] == "data-aware"
    for layer in svd.details["layers"]:
        assert layer["output_error"] <= layer["plain_output_error"] + 1e-9
    run_ir(model, feeds[0])
