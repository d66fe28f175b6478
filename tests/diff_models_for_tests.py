"""Small known edits of one network, shared by the diff, numeric-diff and report tests.

``net()`` builds  x -> Conv1 -> BN -> Relu -> Conv2 -> y  and its variants: pruned output
channels of Conv1, BN folded into Conv1, Q/DQ inserted in front of Conv1, renamed nodes.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnx_ir as ir
from onnx import TensorProto, helper, numpy_helper

LIGHT_RESNET50 = os.path.join(
    os.path.dirname(onnx.__file__), "backend", "test", "data", "light", "light_resnet50.onnx"
)


def _init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(array, name)


def net(
    channels: int = 8,
    *,
    fold_bn: bool = False,
    qdq: bool = False,
    prefix: str = "",
    rename_tensors: bool = False,
    seed: int = 0,
) -> ir.Model:
    """Conv(3->channels) [BN] Relu Conv(channels->4), optionally edited."""
    rng = np.random.default_rng(seed)
    w1_full = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    b1_full = rng.standard_normal(8).astype(np.float32)
    scale = rng.uniform(0.5, 1.5, 8).astype(np.float32)
    shift = rng.standard_normal(8).astype(np.float32)
    mean = rng.standard_normal(8).astype(np.float32) * 0.1
    var = rng.uniform(0.5, 1.5, 8).astype(np.float32)
    w2_full = rng.standard_normal((4, 8, 1, 1)).astype(np.float32)
    keep = slice(0, channels)
    w1, b1 = w1_full[keep], b1_full[keep]
    w2 = w2_full[:, keep]
    t = (lambda n: "t_" + n) if rename_tensors else (lambda n: n)

    inits = [_init("w2", w2)]
    nodes = []
    conv1_inputs = ["x", "w1", "b1"]
    if qdq:
        inits += [
            _init("x_scale", np.array(0.05, np.float32)),
            _init("x_zp", np.array(0, np.int8)),
            _init("w1_q", np.clip(np.round(w1 / 0.02), -127, 127).astype(np.int8)),
            _init("w1_scale", np.array(0.02, np.float32)),
        ]
        nodes += [
            helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], [t("x_q")],
                             name=prefix + "q_x"),
            helper.make_node("DequantizeLinear", [t("x_q"), "x_scale", "x_zp"], [t("x_dq")],
                             name=prefix + "dq_x"),
            helper.make_node("DequantizeLinear", ["w1_q", "w1_scale"], [t("w1_dq")],
                             name=prefix + "dq_w1"),
        ]
        conv1_inputs = [t("x_dq"), t("w1_dq"), "b1"]
    else:
        inits.append(_init("w1", w1))
    if fold_bn:
        std = np.sqrt(var[keep] + 1e-5)
        factor = scale[keep] / std
        inits.append(_init("b1", ((b1 - mean[keep]) * factor + shift[keep]).astype(np.float32)))
        inits = [i for i in inits if i.name != "w1"]
        inits.append(_init("w1", (w1 * factor[:, None, None, None]).astype(np.float32)))
        nodes.append(helper.make_node("Conv", conv1_inputs, [t("c1")], name=prefix + "conv1",
                                      pads=[1, 1, 1, 1]))
        relu_in = t("c1")
    else:
        inits += [_init("b1", b1), _init("scale", scale[keep]), _init("shift", shift[keep]),
                  _init("mean", mean[keep]), _init("var", var[keep])]
        nodes += [
            helper.make_node("Conv", conv1_inputs, [t("c1")], name=prefix + "conv1",
                             pads=[1, 1, 1, 1]),
            helper.make_node("BatchNormalization", [t("c1"), "scale", "shift", "mean", "var"],
                             [t("bn1")], name=prefix + "bn1"),
        ]
        relu_in = t("bn1")
    nodes += [
        helper.make_node("Relu", [relu_in], [t("r1")], name=prefix + "relu1"),
        helper.make_node("Conv", [t("r1"), "w2"], ["y"], name=prefix + "conv2"),
    ]
    graph = helper.make_graph(
        nodes, "net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(proto)
    return ir.from_proto(proto)


def light_resnet_folded_renamed() -> tuple[ir.Model, ir.Model]:
    """The light ResNet-50 and a copy with its first BN removed and every node renamed."""
    a = ir.load(LIGHT_RESNET50)
    b = ir.load(LIGHT_RESNET50)
    bn = next(n for n in b.graph if n.op_type == "BatchNormalization")
    bn.outputs[0].replace_all_uses_with(bn.inputs[0])
    b.graph.remove(bn, safe=True)
    for k, node in enumerate(b.graph):
        node.name = f"renamed_{k}"
    return a, b


def sample_report(diff: dict | None = None) -> dict:
    """A report dict shaped like ``RunReport.to_dict()`` with every section filled in."""
    def cost(nodes: int, params: int, weight_bytes: int, macs: int) -> dict:
        return {"nodes": nodes, "params": params, "weight_bytes": weight_bytes, "macs": macs,
                "peak_activation_bytes": 4096, "ops": {"Conv": 2}}

    def record(step, lossless, before, after, status="ok", error=None, metrics=None, mae=None):
        return {"step": step, "name": step.split("/")[-1], "lossless": lossless,
                "modified": before != after, "seconds": 0.25, "before": before, "after": after,
                "stats": {"rewrites": 1} if before != after else {},
                "verification": {"status": status, "checker": True, "ort_load": True,
                                 "max_abs_error": mae, "detail": ""},
                "metrics": metrics, "error": error}

    c0, c1 = cost(5, 1000, 4000, 100_000), cost(4, 990, 3960, 99_000)
    c2, c3 = cost(4, 700, 2800, 70_000), cost(7, 700, 1000, 70_000)
    return {
        "irpass_version": "0.1.0", "input": "models/net.onnx", "output": "out/model.onnx",
        "pipeline": "fixpoint(fold_constants,fold_batchnorm),prune_channels,quantize_int8",
        "target": "jetson-orin", "seconds": 1.5, "before": c0, "after": c3,
        "metrics_before": {"top1": 0.712}, "metrics_after": {"top1": 0.701},
        "passes": [
            record("fixpoint#1/fold_constants", True, c0, c0, mae=0.0),
            record("fixpoint#1/fold_batchnorm", True, c0, c1, mae=2e-6,
                   metrics={"top1": 0.712}),
            record("prune_channels", False, c1, c2, status="skipped", metrics={"top1": 0.706}),
            record("quantize_int8", False, c2, c3, status="failed", metrics={"top1": 0.701},
                   error="ORT rejected <QLinearConv> & rolled back"),
        ],
        "diff": diff,
        "target_checks": [
            {"name": "TensorRT rule check", "status": "pass", "detail": "Q/DQ zero points are 0"},
            {"name": "NNAPI coverage", "status": "warn", "detail": "2 partitions"},
        ],
        "sweeps": [
            {"label": "ratio=0.1", "size_bytes": 3500, "accuracy": 0.710},
            {"label": "ratio=0.25", "size_bytes": 2800, "accuracy": 0.706},
            {"label": "ratio=0.5", "size_bytes": 2000, "accuracy": 0.650},
        ],
    }
