import dataclasses
import platform

import pytest

from irpass.errors import PassOptionError
from irpass.passes.quantization.qparams import INT8, UINT8
from irpass.passes.quantization.rules import (
    NNAPI,
    ORT_S8S8,
    ORT_U8S8,
    TENSORRT,
    OpRule,
    get_rules,
    host_ort_rules,
    rule_set_names,
)


def test_registry_names_every_rule_set_and_refuses_unknown_ones():
    assert rule_set_names() == ["nnapi", "ort", "ort_s8s8", "ort_u8s8", "tensorrt"]
    with pytest.raises(PassOptionError, match="unknown quantization rule set 'coreml'") as info:
        get_rules("coreml")
    assert "tensorrt" in info.value.hint


def test_ort_means_the_kernels_this_machine_runs():
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")
    assert host_ort_rules() is (ORT_U8S8 if x86 else ORT_S8S8)
    assert get_rules("ort").activations == host_ort_rules().activations


def test_runtime_facts_are_encoded():
    assert TENSORRT.symmetric_activations and TENSORRT.activations == INT8
    assert "QLinearConv" in TENSORRT.forbidden_ops
    assert all(r.output == "never" for r in TENSORRT.ops.values())
    assert NNAPI.activations == UINT8 and not NNAPI.symmetric_activations
    assert NNAPI.ops["Conv"].weights == "per_channel"
    assert NNAPI.ops["MatMul"].weights == NNAPI.ops["Gemm"].weights == "per_tensor"
    assert NNAPI.ops["Softmax"].fixed_output == (1 / 256, 0)
    assert ORT_U8S8.ops["Conv"].bias == "int32" and ORT_U8S8.ops["Conv"].output == "always"
    assert "ConvTranspose" not in ORT_U8S8.ops  # no integer ConvTranspose kernel on CPU
    assert ORT_S8S8.activations == INT8 and ORT_U8S8.activations == UINT8


def test_rule_sets_compose_with_plus_and_check_their_data():
    # RuleSet + list composes rule sets (unpacking would give a plain list)
    extended = NNAPI + [OpRule("Sigmoid", "unary", "Sigmoid: DQ -> op -> Q")]  # noqa: RUF005
    assert "Sigmoid" in extended.ops and "Sigmoid" not in NNAPI.ops
    with pytest.raises(ValueError, match="passthrough op always carries"):
        OpRule("Reshape", "passthrough", "bad", output="never")
    with pytest.raises(ValueError, match="holds a rule for"):
        dataclasses.replace(NNAPI, ops={"Conv": NNAPI.ops["Gemm"]})
    with pytest.raises(ValueError, match="symmetric activations need a signed type"):
        dataclasses.replace(NNAPI, symmetric_activations=True)


@pytest.mark.parametrize(
    ("role", "arity", "expected"),
    [
        ("binary", 2, (0, 1)),
        ("variadic", 4, (0, 1, 2, 3)),
        ("unary", 1, (0,)),
        ("passthrough", 2, (0,)),
    ],
)
def test_activation_inputs_by_role(role, arity, expected):
    assert OpRule("X", role, "spec").activation_inputs(arity) == expected
