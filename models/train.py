"""Rebuild the committed models: untrained zoo graphs and the trained models with their splits.

    python -m models.train zoo        # models/zoo/<name>.onnx (seeded, untrained), seconds
    python -m models.train trained    # models/trained/*.onnx + *_test.npz + metrics.json, minutes
    python -m models.train all
    python -m models.train trained --only digits_transformer   # one model, keeps the others

Needs torch (``pip install irpass[torch]``) and scikit-learn. CI does not run this; the tests use
the committed files. Training runs on one CPU thread with fixed seeds, so a rebuild on the same
torch version reproduces the same weights; metrics.json holds the accuracies measured with
ONNX Runtime on the committed test splits (``irpass eval`` reproduces them in the tests).
"""

from __future__ import annotations

import argparse
import json
import logging
import pathlib
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from irpass.ir import save_model
from irpass.lower import lower
from models import datasets, zoo

logger = logging.getLogger("models.train")

HERE = pathlib.Path(__file__).resolve().parent
ZOO_DIR = HERE / "zoo"
TRAINED_DIR = HERE / "trained"


def export(module: nn.Module, name: str, path: pathlib.Path) -> int:
    """Lower a zoo module with its entry's names and dynamic axes; returns the file size."""
    entry = zoo.ZOO[name]
    model = lower(
        module,
        module.example_inputs,
        input_names=entry.input_names,
        output_names=entry.output_names,
        dynamic_axes=entry.dynamic_axes,
    )
    model.doc_string = entry.doc
    save_model(model, path)
    return path.stat().st_size


def build_zoo() -> None:
    """Write every zoo architecture, untrained with seeded weights, to models/zoo/."""
    ZOO_DIR.mkdir(exist_ok=True)
    for name in zoo.ZOO:
        size = export(zoo.build(name), name, ZOO_DIR / f"{name}.onnx")
        logger.info("zoo/%s.onnx: %d bytes", name, size)


def fit(
    module: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    epochs: int,
    lr: float,
    batch: int = 64,
    logits: Callable[[torch.Tensor], torch.Tensor] | None = None,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
) -> None:
    """Plain Adam + cosine schedule + cross-entropy training, seeded and single-threaded."""
    gen = torch.Generator().manual_seed(0)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.Adam(module.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * ((len(x) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    forward = logits or module
    module.train()
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(0, len(x), batch):
            idx = order[i : i + batch]
            xb = xt[idx]
            if augment is not None:
                xb = augment(xb, gen)
            loss = nn.functional.cross_entropy(forward(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss) * len(idx)
        logger.info("  epoch %d: loss %.4f", epoch + 1, total / len(x))
    module.eval()


def shift_image(xb: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random translation by up to 2 pixels (the digits are not centered the same way)."""
    dx, dy = (int(v) for v in torch.randint(-2, 3, (2,), generator=gen))
    return torch.roll(xb, shifts=(dy, dx), dims=(2, 3))


def shift_trace(xb: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random circular shift of a power trace."""
    return torch.roll(xb, shifts=int(torch.randint(0, xb.shape[-1], (1,), generator=gen)), dims=2)


def ort_metrics(path: pathlib.Path, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 of an ONNX file, measured with irpass's own evaluator."""
    from irpass.data import ArraySource
    from irpass.evaluate import Evaluator
    from irpass.ir import load_model

    model = load_model(path)
    name = model.graph.inputs[0].name
    metrics = Evaluator(None, ArraySource({name: x}), labels=y)(model)
    return {k: metrics[k] for k in ("accuracy", "macro_f1")}


#: Calibration samples taken from the start of each (shuffled) training split.
CALIBRATION_SAMPLES = {"digits16": 256, "digits8": 256, "power": 120}


def write_calibration_splits() -> None:
    """Write calibration splits (the first training samples, never test samples).

    Lossy passes calibrate on these (``--calib-data``) and are evaluated on the test splits.
    """
    TRAINED_DIR.mkdir(exist_ok=True)
    splits = {
        "digits16": ("input", datasets.digits(size=16)),
        "digits8": ("input", datasets.digits(flat=True)),
        "power": ("trace", datasets.power_traces()),
    }
    for name, (input_name, split) in splits.items():
        n = CALIBRATION_SAMPLES[name]
        arrays = {input_name: split.x_train[:n], "labels": split.y_train[:n]}
        np.savez_compressed(TRAINED_DIR / f"{name}_calib.npz", **arrays)  # type: ignore[arg-type]


def train_models(only: Sequence[str] = ()) -> dict[str, dict[str, object]]:
    """Train the digits and power-trace models; write ONNX, test splits and metrics.json.

    With ``only``, train just the named models and keep the other entries of metrics.json.
    """
    TRAINED_DIR.mkdir(exist_ok=True)
    digits16 = datasets.digits(size=16)
    digits8 = datasets.digits(flat=True)
    power = datasets.power_traces()
    np.savez_compressed(
        TRAINED_DIR / "digits16_test.npz", input=digits16.x_test, labels=digits16.y_test
    )
    np.savez_compressed(
        TRAINED_DIR / "digits8_test.npz", input=digits8.x_test, labels=digits8.y_test
    )
    np.savez_compressed(TRAINED_DIR / "power_test.npz", trace=power.x_test, labels=power.y_test)
    write_calibration_splits()
    jobs = [
        ("digits_resnet", "resnet_cnn", digits16, "digits16_test.npz", 12, 3e-3, shift_image),
        ("digits_mobilenet", "mobilenet_v2", digits16, "digits16_test.npz", 20, 5e-3,
         shift_image),
        ("digits_mlp", "mlp", digits8, "digits8_test.npz", 30, 3e-3, None),
        ("digits_transformer", "patch_transformer", digits8, "digits8_test.npz", 40, 2e-3, None),
        ("power_cnn1d", "power_cnn1d", power, "power_test.npz", 25, 2e-3, shift_trace),
    ]
    unknown = set(only) - {job[0] for job in jobs}
    if unknown:
        raise SystemExit(f"unknown trained model(s): {', '.join(sorted(unknown))}")
    metrics_path = TRAINED_DIR / "metrics.json"
    results: dict[str, dict[str, object]] = (
        json.loads(metrics_path.read_text()) if only and metrics_path.is_file() else {}
    )
    for out_name, arch, split, test_file, epochs, lr, augment in jobs:
        if only and out_name not in only:
            continue
        start = time.process_time()
        logger.info("training %s (%s, %d samples)", out_name, arch, len(split.x_train))
        module = zoo.build(arch)
        logits = getattr(module, "logits", None)
        fit(module, split.x_train, split.y_train, epochs, lr, logits=logits, augment=augment)
        path = TRAINED_DIR / f"{out_name}.onnx"
        size = export(module, arch, path)
        metrics = ort_metrics(path, split.x_test, split.y_test)
        results[out_name] = {
            "architecture": arch,
            "eval_data": test_file,
            "train_samples": len(split.x_train),
            "test_samples": len(split.x_test),
            "epochs": epochs,
            "cpu_seconds": round(time.process_time() - start, 1),
            "bytes": size,
            **{k: round(v, 6) for k, v in metrics.items()},
        }
        logger.info("%s: %s", out_name, results[out_name])
    metrics_path.write_text(json.dumps(results, indent=2) + "\n")
    return results


def main() -> None:
    """Command line of this script."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["zoo", "trained", "calib", "all"])
    parser.add_argument("--only", nargs="+", default=(), metavar="NAME",
                        help="train only these models (keeps the others' metrics.json entries)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    if args.what in ("zoo", "all"):
        build_zoo()
    if args.what in ("trained", "all"):
        train_models(args.only)
    if args.what == "calib":
        write_calibration_splits()


if __name__ == "__main__":
    main()
