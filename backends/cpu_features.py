"""Which INT8 dot-product instructions the machine running irpass has, as a target check.

CPU targets keep a layer INT8 only when it is not slower on the machine that runs irpass
(``never_slower``). That decision means what it says on the device only when this machine has
the same INT8 instructions: VNNI (``avx512_vnni``, ``avx_vnni``) on x86-64, the dot-product
extension (``asimddp``; ``i8mm``) on ARM64 (a Raspberry Pi 5's Cortex-A76 has it, a Pi 4's
Cortex-A72 does not). :func:`host_int8_check` says which case this run was.
"""

from __future__ import annotations

import pathlib
import platform
from collections.abc import Iterable

from irpass.backends.base import TargetCheck

__all__ = ["INT8_FLAGS", "cpu_flags", "host_int8_check"]

#: /proc/cpuinfo flags that give fast INT8 dot products, per architecture.
INT8_FLAGS: dict[str, tuple[str, ...]] = {
    "x86_64": ("avx512_vnni", "avx_vnni", "amx_int8"),
    "aarch64": ("asimddp", "i8mm"),
}
_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}


def cpu_flags() -> set[str]:
    """This machine's CPU flags (``flags``/``Features`` in /proc/cpuinfo; empty if unknown)."""
    try:
        text = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return flags


def host_int8_check(
    target_arch: str, machine: str | None = None, flags: Iterable[str] | None = None
) -> TargetCheck:
    """Whether the INT8-or-FP32 timing of this run speaks for a ``target_arch`` device."""
    host = (machine or platform.machine()).lower()
    host = _ALIASES.get(host, host)
    name = "INT8 instructions of this host"
    if host != target_arch:
        return TargetCheck(
            name, "warn",
            f"irpass ran on {host}, the target is {target_arch}: which layers stayed INT8 was "
            f"timed with {host} kernels; run irpass on the device to decide there",
        )
    have = set(cpu_flags() if flags is None else flags)
    wanted = INT8_FLAGS.get(target_arch, ())
    found = [f for f in wanted if f in have]
    if found:
        return TargetCheck(
            name, "pass", f"this {host} host has {', '.join(found)}: INT8 layers were timed "
            "with the dot-product kernels the device uses",
        )
    return TargetCheck(
        name, "warn",
        f"this {host} host has none of {', '.join(wanted)}: layers whose INT8 kernels were "
        "slower here stayed FP32; a device with them may run more in INT8 (run irpass there, "
        "or quantize(never_slower=false) in --passes)",
    )
