from __future__ import annotations

import json
import pathlib

import pytest

from irpass.errors import TargetError
from irpass.targets import list_targets, load_target, target_names
from irpass.targets.loader import PROFILES_DIR, parse_profile

ISSUE_TARGETS = {"jetson", "jetson-nano", "android", "ios", "rpi", "x86", "generic"}


def test_every_target_the_issue_names_loads_with_its_backend():
    names = target_names()
    assert ISSUE_TARGETS <= set(names)
    backends = {name: load_target(name).backend for name in ISSUE_TARGETS}
    assert backends == {
        "jetson": "tensorrt",
        "jetson-nano": "tensorrt",
        "android": "nnapi",
        "ios": "coreml",
        "rpi": "onnxruntime",
        "x86": "onnxruntime",
        "generic": "onnxruntime",
    }
    assert load_target("jetson") is load_target("jetson-orin")


def test_jetson_profiles_record_the_jetpack_and_tensorrt_releases():
    orin, nano = load_target("jetson"), load_target("jetson-nano")
    assert (orin.runtime.version, nano.runtime.version) == ("10.3", "8.2.1")
    assert "JetPack 6" in orin.runtime.platform and "JetPack 4.6" in nano.runtime.platform
    assert orin.op_support.release == "10.1" and nano.op_support.release == "8.2"
    assert orin.opset == (9, 20) and nano.opset == (7, 13)
    # the Nano's Maxwell GPU has no fast INT8: FP16 is its fast path
    assert "int8" not in nano.precisions and nano.default_precision == "fp16"
    assert orin.precisions == ("int8", "fp16", "fp32") and orin.quantization_rules == "tensorrt"
    assert "downgrade_opset(target=13)" in nano.legalize


def test_operator_lists_name_their_source_and_release():
    for target in list_targets():
        support = target.op_support
        assert support.source and support.release and len(support.ops) > 40, target.name
    assert "LayerNormalization" in load_target("jetson").supported_ops
    assert "LayerNormalization" not in load_target("jetson-nano").supported_ops
    assert "HardSigmoid" not in load_target("android").supported_ops
    assert "Conv" in load_target("x86").supported_ops


def test_profiles_are_one_file_per_target_named_after_it():
    files = sorted(p.stem for p in PROFILES_DIR.glob("*.json"))
    assert files == sorted(t.name for t in list_targets())


def test_unknown_target_lists_the_known_ones():
    with pytest.raises(TargetError, match="unknown target 'pi5'") as info:
        load_target("pi5")
    assert "jetson" in (info.value.hint or "")


def _profile(**changes):
    data = json.loads((PROFILES_DIR / "x86.json").read_text())
    data.update(changes)
    return data


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"colour": "red"}, "unknown key"),
        ({"precisions": ["int8", "bf16"]}, "'precisions' must name"),
        ({"default_precision": "fp16"}, "'default_precision' is 'fp16'"),
        ({"fallback_precision": "int8"}, "not int8"),
        ({"pipeline": "canonicalize,("}, "'pipeline' is not valid pipeline text"),
        ({"backend": "tflite"}, "unknown backend 'tflite'"),
        ({"shape_policy": "any"}, "'shape_policy' must be one of"),
        ({"opset": [21, 7]}, "'opset' must be"),
        ({"quantization_rules": None}, "must name its 'quantization_rules'"),
        ({"supported_ops": {"provider": "onnxruntime-cpu", "release": "1.9"}}, "installed"),
        ({"backend_options": {"ort_format": "yes"}}, "wrong type"),
        ({"backend_options": {"cpu_arch": "riscv64"}}, "'cpu_arch' must be one of"),
        ({"precision_pipelines": {"int8": ""}}, "one entry per precision"),
    ],
)
def test_bad_profiles_are_refused_with_the_file_and_key(changes, message):
    with pytest.raises(TargetError, match=message) as info:
        parse_profile(_profile(**changes), "my-board.json")
    assert "my-board.json" in info.value.message


def test_a_user_profile_file_is_a_target(tmp_path: pathlib.Path):
    path = tmp_path / "my-board.json"
    path.write_text(json.dumps(_profile(name="my-board", aliases=[], description="a board")))
    target = load_target(str(path))
    assert target.name == "my-board" and target.path == str(path)
    assert target.to_dict()["supported_ops"]["provider"] == "onnxruntime-cpu"
