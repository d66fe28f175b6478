"""One BLAS thread for the low-rank tests.

Their work is many small eigendecompositions and SVDs; on a shared, loaded machine OpenBLAS's
spinning worker threads made them about three times slower in wall time and CPU time alike.
threadpoolctl comes with scikit-learn (test extra); without it the limit is skipped.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="module")
def _single_blas_thread() -> Iterator[None]:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield
