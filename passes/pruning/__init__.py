"""Structured channel pruning: dependency analysis, importance, surgery and repair.

The analysis lives in :mod:`irpass.analysis.channels`; :mod:`.importance` scores channels,
:mod:`.selection` decides which go, :mod:`.handlers` rewrites the graph per op type,
:mod:`.repair` refits consumers on calibration data and :mod:`.prune` is the pass.
"""
