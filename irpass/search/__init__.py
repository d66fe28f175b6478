"""Accuracy-budgeted optimization: search the lossy knobs of a pipeline within a budget.

``irpass optimize --max-drop 1%`` and ``irpass.optimize(..., max_drop="1%")`` go through
:func:`search_pipeline`. The pieces: :mod:`~irpass.search.budget` (what may be lost),
:mod:`~irpass.search.space` (the knobs), :mod:`~irpass.search.objective` (what is minimized),
:mod:`~irpass.search.executors` (serial, worker processes, Ray), :mod:`~irpass.search.worker`
(one candidate) and :mod:`~irpass.search.search` (the strategy).
"""

from __future__ import annotations

from irpass.search.budget import Budget, parse_budget
from irpass.search.driver import SearchOutcome, search_pipeline
from irpass.search.executors import make_executor
from irpass.search.search import SearchOptions, SearchPoint, SearchResult, run_search
from irpass.search.settings import SearchSettings

__all__ = [
    "Budget",
    "SearchOptions",
    "SearchOutcome",
    "SearchPoint",
    "SearchResult",
    "SearchSettings",
    "make_executor",
    "parse_budget",
    "run_search",
    "search_pipeline",
]
