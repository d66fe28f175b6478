"""backends/cpu_features.py: whether this host's INT8 instructions speak for the device."""

from __future__ import annotations

import pytest

from irpass.backends.cpu_features import cpu_flags, host_int8_check
from irpass.targets import load_target


@pytest.mark.parametrize(
    "arch, machine, flags, status, words",
    [
        ("x86_64", "x86_64", {"avx2", "avx512_vnni"}, "pass", "avx512_vnni"),
        ("x86_64", "AMD64", {"avx_vnni"}, "pass", "avx_vnni"),
        ("x86_64", "x86_64", {"avx2", "fma"}, "warn", "stayed FP32"),
        ("aarch64", "aarch64", {"asimd", "asimddp"}, "pass", "asimddp"),
        ("aarch64", "aarch64", {"asimd"}, "warn", "none of asimddp, i8mm"),  # Pi 4 (A72)
        ("aarch64", "x86_64", {"avx512_vnni"}, "warn", "run irpass on the device"),
    ],
)
def test_host_int8_check(arch: str, machine: str, flags: set[str], status: str, words: str):
    check = host_int8_check(arch, machine, flags)
    assert check.status == status and words in check.detail


def test_cpu_targets_carry_their_arch_and_check_this_host():
    assert load_target("x86").backend_options["cpu_arch"] == "x86_64"
    assert load_target("rpi").backend_options["cpu_arch"] == "aarch64"
    assert isinstance(cpu_flags(), set)
