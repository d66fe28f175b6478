"""Legalization passes: rewrite what a target runtime cannot run into what it can.

They run after fusion, driven by the target profile's ``legalize`` pipeline: fixed input shapes
for runtimes without dynamic shapes, 1-D ops lifted to 2-D, an opset downgrade for old parsers.
Op decompositions live in ``passes/fusion/decompose_ops.py`` (the reverse of fusion).
"""
