"""Shared fixtures: paths of the third-party models the suite runs on, the test passes."""

from __future__ import annotations

import importlib.util
import pathlib
from collections.abc import Iterator

import onnx
import pytest

LIGHT_DIR = pathlib.Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
LIGHT_MODELS = sorted(p.stem.removeprefix("light_") for p in LIGHT_DIR.glob("light_*.onnx"))


def light_model_path(name: str) -> pathlib.Path:
    """Path of a light model-zoo graph shipped in the onnx wheel, e.g. 'resnet50'."""
    return LIGHT_DIR / f"light_{name}.onnx"


def magika_model_path() -> pathlib.Path | None:
    """Path of the trained model inside the magika wheel, or None without magika."""
    spec = importlib.util.find_spec("magika")
    if spec is None or spec.origin is None:
        return None
    candidates = sorted(pathlib.Path(spec.origin).parent.glob("models/*/model.onnx"))
    return candidates[-1] if candidates else None


@pytest.fixture
def magika_model() -> pathlib.Path:
    path = magika_model_path()
    if path is None:
        pytest.skip("magika is not installed (pip install -e '.[test]')")
    return path


@pytest.fixture
def test_passes() -> Iterator[None]:
    """The ``t_*`` test passes, registered for one test; the registry is left as it was."""
    from eval_passes_for_tests import DamageWeightPass
    from passes_for_tests import TEST_PASSES

    from irpass import registry

    with registry.registered(*TEST_PASSES, DamageWeightPass):
        yield
