"""Low-rank factorization passes: ``svd`` (all layers), ``factorize_gemm``, ``factorize_conv``.

Modules along their seams: ``decompose`` (plain and whitened truncated SVD), ``moments``
(streaming input statistics, im2col patches), ``rank`` (energy / ratio / explicit rank
selection), ``layer`` (what a factorizable layer offers), ``plan`` (the engine and options),
and one module per rewrite. Algebra and usage: docs/lowrank.md.
"""
