from __future__ import annotations

from irpass.testing import model_from_text
from irpass.verify.hygiene import constant_nodes


def test_constant_nodes_are_flagged_except_graph_outputs() -> None:
    model = model_from_text(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[3] x) => (float[3] y, int64[1] n) {
            k = Constant <value = float[3] {1, 2, 3}> ()
            y = Add (x, k)
            n = Constant <value = int64[1] {3}> ()
        }
        """
    )
    assert constant_nodes(model) == ["k"]
