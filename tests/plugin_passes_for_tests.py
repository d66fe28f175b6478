"""A pass plugin, as users write them: importing it registers the ``t_*`` test passes.

For processes a test starts (search workers import their ``plugins``, a CLI subprocess); tests
themselves take the ``test_passes`` fixture, which leaves the registry as it found it.
"""

from __future__ import annotations

from eval_passes_for_tests import DamageWeightPass
from passes_for_tests import TEST_PASSES

from irpass.registry import register

for _cls in (*TEST_PASSES, DamageWeightPass):
    register(_cls)
