"""magika's trained model quantized on files of this machine: label agreement with float.

The benchmark (benchmarks/quantize.py) does this on >= 1,000 files with the pass's defaults;
here a small, fast slice.
"""

import numpy as np
import pytest
from quant_testlib import run_quantize

from irpass.ir import load_model
from irpass.manager import PipelineRunner, RunOptions
from irpass.passes.quantization.rules import ORT
from irpass.passes.quantization.validate import validate
from irpass.verify import make_session
from models.magika_files import magika_features, magika_model_path, split, system_files


def test_magika_int8_agrees_with_float_on_real_files():
    path = magika_model_path()
    if path is None:
        pytest.skip("magika is not installed (pip install -e '.[test]')")
    calibration, evaluation = split(
        system_files(320, roots=("/etc", "/usr/share/doc", "/usr/include"))
    )
    calib_x, _ = magika_features(calibration[:32])
    eval_x, kept = magika_features(evaluation[:120])
    assert len(kept) >= 100
    model = load_model(path)
    PipelineRunner("canonicalize,fuse", options=RunOptions(verify="none")).run(model)
    reference = model.clone()

    def source():
        for start in range(0, len(calib_x), 16):
            yield {"bytes": calib_x[start : start + 16]}

    # the defaults (bias correction, fallback budget) run in benchmarks/quantize.py on 1,050
    # files; the plain flow keeps this test to seconds (magika's one-hot input is 2 MB a file)
    pass_ = run_quantize(model, source, "never_slower=false,max_drop=none,bias_correction=false")
    assert pass_.stats["quantized_layers"] >= 1
    assert validate(model, ORT, runtime=True) == []
    expected = make_session(reference, optimize=True).run(None, {"bytes": eval_x})[0].argmax(-1)
    got = make_session(model, optimize=True).run(None, {"bytes": eval_x})[0].argmax(-1)
    assert np.mean(expected == got) >= 0.99
