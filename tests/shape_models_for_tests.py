"""Small models whose shapes depend on the input shapes through shape arithmetic."""

from __future__ import annotations

import onnx_ir as ir

from irpass.testing import inputs_to_random_initializers, model_from_text

__all__ = ["BATCH_VIEW", "BRANCHED_VIEW", "UPSAMPLE", "batch_view", "branched_view", "upsample"]

# what torch.onnx exports for x.view(x.shape[0], 8, 8): the batch read through shape arithmetic
BATCH_VIEW = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[batch, 64] x, float[8, 16] w) => (float[batch, 8, 16] y) {
    s = Shape<start=0, end=1>(x)
    zero = Constant<value = int64[1] {0}>()
    n = Squeeze(s, zero)
    flat = Constant<value = int64[1] {-1}>()
    n1 = Reshape(n, flat)
    eight = Constant<value = int64[1] {8}>()
    shape = Concat<axis=0>(n1, eight, eight)
    v = Reshape(x, shape)
    y = MatMul(v, w)
}
"""

# a detector neck: upsample x2 with Resize sizes computed from the feature map's shape
UPSAMPLE = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 3, H, W] images, float[8, 3, 3, 3] w1, float[4, 8, 1, 1] w2) => (float[N, 4, H, W] y) {
    f = Conv<strides=[2, 2], pads=[1, 1, 1, 1]>(images, w1)
    s = Shape(f)
    begin = Constant<value = int64[1] {2}>()
    end = Constant<value = int64[1] {4}>()
    hw = Slice(s, begin, end)
    two = Constant<value = int64[1] {2}>()
    hw2 = Mul(hw, two)
    nc = Shape<start=0, end=2>(f)
    sizes = Concat<axis=0>(nc, hw2)
    u = Resize<mode="nearest">(f, , , sizes)
    y = Conv(u, w2)
}
"""


def batch_view() -> ir.Model:
    """:data:`BATCH_VIEW` with a random weight."""
    return inputs_to_random_initializers(model_from_text(BATCH_VIEW), ["w"])


# how many elements are nonzero is data: nothing after NonZero has a size at any input shape
DATA_DEPENDENT = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4] x, float[2, 3] w) => (float[M, 3] y) {
    idx = NonZero(x)
    t = Transpose(idx)
    f = Cast<to=1>(t)
    y = MatMul(f, w)
}
"""


def data_dependent() -> ir.Model:
    """:data:`DATA_DEPENDENT` with a random weight."""
    return inputs_to_random_initializers(model_from_text(DATA_DEPENDENT), ["w"])


def upsample() -> ir.Model:
    """:data:`UPSAMPLE` with random weights."""
    return inputs_to_random_initializers(model_from_text(UPSAMPLE), ["w1", "w2"])


# both branches of an If read the batch of an outer value through shape arithmetic
BRANCHED_VIEW = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[batch, 64] x, bool c, float[8, 16] w) => (float[batch, 8, 16] y) {
    y = If(c) <
        then_branch = t () => (float[batch, 8, 16] ty) {
            s = Shape<start=0, end=1>(x)
            zero = Constant<value = int64[1] {0}>()
            n = Squeeze(s, zero)
            flat = Constant<value = int64[1] {-1}>()
            n1 = Reshape(n, flat)
            eight = Constant<value = int64[1] {8}>()
            shape = Concat<axis=0>(n1, eight, eight)
            v = Reshape(x, shape)
            ty = MatMul(v, w)
        },
        else_branch = e () => (float[batch, 8, 16] ey) {
            s2 = Shape<start=0, end=1>(x)
            zero2 = Constant<value = int64[1] {0}>()
            n2 = Squeeze(s2, zero2)
            flat2 = Constant<value = int64[1] {-1}>()
            n12 = Reshape(n2, flat2)
            eight2 = Constant<value = int64[1] {8}>()
            shape2 = Concat<axis=0>(n12, eight2, eight2)
            v2 = Reshape(x, shape2)
            r = Relu(v2)
            ey = MatMul(r, w)
        }
    >
}
"""


def branched_view() -> ir.Model:
    """:data:`BRANCHED_VIEW` with a random weight."""
    return inputs_to_random_initializers(model_from_text(BRANCHED_VIEW), ["w"])
