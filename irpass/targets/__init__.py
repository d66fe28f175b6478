"""Deployment targets as data: one validated profile file per target (``irpass targets``).

>>> from irpass.targets import load_target
>>> load_target("jetson").backend
'tensorrt'
"""

from __future__ import annotations

from irpass.targets.loader import list_targets, load_target, target_names
from irpass.targets.profile import (
    PRECISIONS,
    SHAPE_POLICIES,
    ChannelAlignment,
    OpSupport,
    RuntimeRelease,
    Target,
)

__all__ = [
    "PRECISIONS",
    "SHAPE_POLICIES",
    "ChannelAlignment",
    "OpSupport",
    "RuntimeRelease",
    "Target",
    "list_targets",
    "load_target",
    "target_names",
]
