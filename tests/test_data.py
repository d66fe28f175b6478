from __future__ import annotations

import json
import logging
import pathlib
import textwrap

import numpy as np
import onnx_ir as ir
import pytest

from irpass.data import (
    ArraySource,
    ImagePreprocess,
    NpzFileSource,
    input_specs,
    load_labels,
    open_data,
    resize_bilinear,
)
from irpass.errors import DataError
from irpass.testing import model_from_text

DYNAMIC = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 3] x) => (float[N, 3] y) {
    y = Relu(x)
}
"""

TWO_INPUTS = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4] a, int64[N, S] ids) => (float[N, 4] y) {
    y = Relu(a)
}
"""

FIXED = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[2, 3] x) => (float[2, 3] y) {
    y = Relu(x)
}
"""

IMAGE = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 3, 4, 6] img) => (float[N, 3, 4, 6] y) {
    y = Relu(img)
}
"""

GRAY = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 1, 4, 4] img) => (float[N, 1, 4, 4] y) {
    y = Relu(img)
}
"""


def collect(source) -> list[dict[str, np.ndarray]]:
    return list(source())


@pytest.fixture
def dynamic() -> ir.Model:
    return model_from_text(DYNAMIC)


# ------------------------------------------------------------------------------ specs
def test_input_specs_skip_initializer_inputs_and_keep_symbolic_dims() -> None:
    model = model_from_text(TWO_INPUTS)
    specs = input_specs(model)
    assert [s.name for s in specs] == ["a", "ids"]
    assert specs[1].dtype == np.int64
    assert specs[1].shape == ("N", "S")
    assert specs[0].describe() == "float32 [N, 4]"


# ------------------------------------------------------------------------------- .npy
def test_npy_file_streams_in_batches(tmp_path: pathlib.Path, dynamic: ir.Model) -> None:
    x = np.arange(70 * 3, dtype=np.float32).reshape(70, 3)
    np.save(tmp_path / "x.npy", x)
    source = open_data(str(tmp_path / "x.npy"), dynamic, batch_size=32)
    feeds = collect(source)
    assert [f["x"].shape[0] for f in feeds] == [32, 32, 6]
    np.testing.assert_array_equal(np.concatenate([f["x"] for f in feeds]), x)
    assert source.num_samples == 70
    # A source can be iterated again from the start.
    assert len(collect(source)) == 3


def test_batch_option_in_spec(tmp_path: pathlib.Path, dynamic: ir.Model) -> None:
    np.save(tmp_path / "x.npy", np.zeros((10, 3), np.float32))
    feeds = collect(open_data(f"{tmp_path / 'x.npy'}?batch=4", dynamic))
    assert [f["x"].shape[0] for f in feeds] == [4, 4, 2]


def test_fixed_batch_model_gets_its_batch_size(tmp_path: pathlib.Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((6, 3), np.float32))
    feeds = collect(open_data(tmp_path / "x.npy", model_from_text(FIXED)))
    assert [f["x"].shape for f in feeds] == [(2, 3)] * 3


def test_float64_data_are_cast_to_the_input_dtype(tmp_path: pathlib.Path, dynamic) -> None:
    np.save(tmp_path / "x.npy", np.ones((4, 3), np.float64))
    (feed,) = collect(open_data(tmp_path / "x.npy", dynamic))
    assert feed["x"].dtype == np.float32


# ------------------------------------------------------------------------------- .npz
@pytest.mark.parametrize("compressed", [False, True])
def test_npz_streams_named_members_and_ignores_labels(
    tmp_path: pathlib.Path, compressed: bool
) -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((45, 4)).astype(np.float32)
    ids = rng.integers(0, 9, (45, 7))
    save = np.savez_compressed if compressed else np.savez
    save(tmp_path / "d.npz", a=a, ids=ids, labels=np.arange(45))
    source = open_data(tmp_path / "d.npz", model_from_text(TWO_INPUTS), batch_size=20)
    feeds = collect(source)
    assert [sorted(f) for f in feeds] == [["a", "ids"]] * 3
    assert [f["a"].shape[0] for f in feeds] == [20, 20, 5]
    np.testing.assert_array_equal(np.concatenate([f["a"] for f in feeds]), a)
    np.testing.assert_array_equal(np.concatenate([f["ids"] for f in feeds]), ids)
    assert source.num_samples == 45


def test_npz_without_model_takes_every_non_label_array(tmp_path: pathlib.Path) -> None:
    np.savez(tmp_path / "d.npz", input=np.zeros((3, 2), np.float32), labels=np.arange(3))
    (feed,) = collect(open_data(tmp_path / "d.npz"))
    assert list(feed) == ["input"]


def test_npz_fortran_order_members_still_work(tmp_path: pathlib.Path, dynamic) -> None:
    x = np.asfortranarray(np.arange(12, dtype=np.float32).reshape(4, 3))
    np.savez(tmp_path / "d.npz", x=x)
    feeds = collect(open_data(tmp_path / "d.npz", dynamic, batch_size=3))
    np.testing.assert_array_equal(np.concatenate([f["x"] for f in feeds]), x)


def test_npz_member_headers_are_read_without_loading(tmp_path: pathlib.Path) -> None:
    np.savez_compressed(tmp_path / "d.npz", x=np.zeros((1000, 3), np.float32))
    source = NpzFileSource(tmp_path / "d.npz", ["x"], batch_size=100)
    assert source.num_samples == 1000
    assert max(f["x"].nbytes for f in source()) == 100 * 3 * 4


def test_npz_missing_input_names_the_input(tmp_path: pathlib.Path) -> None:
    np.savez(tmp_path / "d.npz", a=np.zeros((2, 4), np.float32))
    with pytest.raises(DataError, match=r"input 'ids' \(expects int64 \[N, S\]\)"):
        open_data(tmp_path / "d.npz", model_from_text(TWO_INPUTS))


def test_npz_with_one_wrongly_named_array_names_input(tmp_path: pathlib.Path, dynamic) -> None:
    np.savez(tmp_path / "d.npz", X=np.zeros((2, 3), np.float32))
    with pytest.raises(DataError, match=r"no array named 'x'.*\['X'\]"):
        open_data(tmp_path / "d.npz", dynamic)


# ----------------------------------------------------------------------- array folders
def test_folder_of_arrays_with_varying_shapes(tmp_path: pathlib.Path) -> None:
    model = model_from_text(TWO_INPUTS)
    for i, length in enumerate([3, 5, 9]):
        np.savez(
            tmp_path / f"{i:02d}.npz",
            a=np.full((4,), i, np.float32),  # one sample: a batch axis is added
            ids=np.arange(length, dtype=np.int32)[None],  # int32 -> int64
        )
    feeds = collect(open_data(tmp_path, model))
    assert [f["ids"].shape for f in feeds] == [(1, 3), (1, 5), (1, 9)]
    assert all(f["ids"].dtype == np.int64 for f in feeds)
    assert [f["a"].shape for f in feeds] == [(1, 4)] * 3
    assert [float(f["a"][0, 0]) for f in feeds] == [0.0, 1.0, 2.0]


def test_folder_of_npy_files(tmp_path: pathlib.Path, dynamic) -> None:
    for i in range(3):
        np.save(tmp_path / f"s{i}.npy", np.full((2, 3), i, np.float32))
    feeds = collect(open_data(tmp_path, dynamic))
    assert [float(f["x"][0, 0]) for f in feeds] == [0.0, 1.0, 2.0]


def test_folder_with_images_and_arrays_is_refused(tmp_path: pathlib.Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros(3))
    (tmp_path / "b.png").write_bytes(b"")
    with pytest.raises(DataError, match="both images and arrays"):
        open_data(tmp_path)


# ------------------------------------------------------------------------------ images
def _write_ppm(path: pathlib.Path, rgb: np.ndarray) -> None:
    h, w, _ = rgb.shape
    path.write_bytes(f"P6\n# test\n{w} {h}\n255\n".encode() + rgb.astype(np.uint8).tobytes())


def _write_pgm(path: pathlib.Path, gray: np.ndarray) -> None:
    h, w = gray.shape
    path.write_bytes(f"P5 {w} {h} 255\n".encode() + gray.astype(np.uint8).tobytes())


def test_image_folder_preprocessing_from_spec(tmp_path: pathlib.Path) -> None:
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 0] = 255  # pure red
    for i in range(3):
        _write_ppm(tmp_path / f"im{i}.ppm", rgb)
    spec = f"{tmp_path}?mean=0.5,0.5,0.5&std=0.5,0.5,0.5&channels=bgr&batch=2"
    feeds = collect(open_data(spec, model_from_text(IMAGE)))
    assert [f["img"].shape for f in feeds] == [(2, 3, 4, 6), (1, 3, 4, 6)]
    img = feeds[0]["img"][0]
    # BGR order: red lands in channel 2; (1 - 0.5) / 0.5 = 1, (0 - 0.5) / 0.5 = -1.
    np.testing.assert_allclose(img[2], 1.0)
    np.testing.assert_allclose(img[0], -1.0)


def test_image_size_and_gray_come_from_the_model(tmp_path: pathlib.Path) -> None:
    _write_ppm(tmp_path / "a.ppm", np.full((8, 8, 3), 255, np.uint8))
    (feed,) = collect(open_data(tmp_path, model_from_text(GRAY)))
    assert feed["img"].shape == (1, 1, 4, 4)
    np.testing.assert_allclose(feed["img"], 1.0, rtol=1e-5)


def test_image_nhwc_layout_and_preprocess_json(tmp_path: pathlib.Path) -> None:
    _write_pgm(tmp_path / "a.pgm", np.full((2, 2), 51, np.uint8))
    (tmp_path / "preprocess.json").write_text(
        json.dumps({"layout": "nhwc", "scale": 255, "mean": [0.1], "std": [0.1]})
    )
    (feed,) = collect(open_data(tmp_path))
    assert feed["input"].shape == (1, 2, 2, 1)
    np.testing.assert_allclose(feed["input"], (0.2 - 0.1) / 0.1, rtol=1e-5)


def test_images_of_different_sizes_without_resize_are_separate_feeds(
    tmp_path: pathlib.Path,
) -> None:
    _write_pgm(tmp_path / "a.pgm", np.zeros((2, 2)))
    _write_pgm(tmp_path / "b.pgm", np.zeros((3, 5)))
    feeds = collect(open_data(tmp_path))
    assert [f["input"].shape for f in feeds] == [(1, 1, 2, 2), (1, 1, 3, 5)]


def test_png_images_through_pillow(tmp_path: pathlib.Path) -> None:
    image_module = pytest.importorskip("PIL.Image")
    array = np.zeros((5, 5, 3), np.uint8)
    array[..., 1] = 255
    image_module.fromarray(array).save(tmp_path / "g.png")
    spec = f"{tmp_path}?size=4x6"
    (feed,) = collect(open_data(spec, model_from_text(IMAGE)))
    assert feed["img"].shape == (1, 3, 4, 6)
    np.testing.assert_allclose(feed["img"][0, 1], 1.0)
    np.testing.assert_allclose(feed["img"][0, 0], 0.0)


def test_bad_image_options_are_refused(tmp_path: pathlib.Path) -> None:
    _write_pgm(tmp_path / "a.pgm", np.zeros((2, 2)))
    with pytest.raises(DataError, match=r"unknown image preprocessing option.*colour"):
        open_data(f"{tmp_path}?colour=red")
    with pytest.raises(DataError, match="layout"):
        ImagePreprocess(layout="chw")


def test_resize_bilinear_matches_half_pixel_interpolation() -> None:
    image = np.array([[0.0, 1.0]], np.float32)[:, :, None]
    out = resize_bilinear(image, (1, 4))[0, :, 0]
    np.testing.assert_allclose(out, [0.0, 0.25, 0.75, 1.0])


# ---------------------------------------------------------------------------- callables
@pytest.fixture
def feeds_module(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "my_feeds.py").write_text(
        textwrap.dedent(
            """
            import numpy as np

            def dicts():
                for i in range(3):
                    yield {"x": np.full((2, 3), i, np.float32)}

            def tuples():
                return [(np.zeros((1, 3), np.float32),)]

            def with_model(model):
                yield {"x": np.zeros((len(model.graph.inputs), 3), np.float32)}

            def wrong_dtype():
                yield {"x": np.zeros((1, 3), np.int64)}

            def nothing():
                return iter(())
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_feeds"


def test_callable_source_is_called_afresh(feeds_module: str, dynamic: ir.Model) -> None:
    source = open_data(f"py:{feeds_module}:dicts", dynamic)
    assert [float(f["x"][0, 0]) for f in source()] == [0.0, 1.0, 2.0]
    assert [float(f["x"][0, 0]) for f in source()] == [0.0, 1.0, 2.0]


def test_callable_source_accepts_tuples_and_a_model_argument(
    feeds_module: str, dynamic: ir.Model
) -> None:
    (feed,) = collect(open_data(f"py:{feeds_module}:tuples", dynamic))
    assert feed["x"].shape == (1, 3)
    (feed,) = collect(open_data(f"py:{feeds_module}:with_model", dynamic))
    assert feed["x"].shape == (1, 3)


def test_callable_with_wrong_dtype_names_input(feeds_module: str, dynamic) -> None:
    with pytest.raises(DataError, match=r"input 'x' expects float32 \[N, 3\].*int64"):
        open_data(f"py:{feeds_module}:wrong_dtype", dynamic)


def test_callable_yielding_nothing_is_empty(feeds_module: str, dynamic) -> None:
    with pytest.raises(DataError, match="empty"):
        open_data(f"py:{feeds_module}:nothing", dynamic)


def test_unknown_module_is_a_data_error(dynamic: ir.Model) -> None:
    with pytest.raises(DataError, match="cannot import 'no_such_module_xyz'"):
        open_data("py:no_such_module_xyz:feeds", dynamic)


def test_callable_from_a_named_file(tmp_path: pathlib.Path, dynamic: ir.Model) -> None:
    (tmp_path / "gen.py").write_text(
        "import numpy as np\n\ndef feeds():\n    yield {'x': np.ones((1, 3), np.float32)}\n"
    )
    (feed,) = collect(open_data(f"py:{tmp_path / 'gen.py'}:feeds", dynamic))
    assert feed["x"].sum() == 3


def test_path_with_a_colon_is_never_imported(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, dynamic: ir.Model
) -> None:
    (tmp_path / "data.py").write_text("raise SystemExit('data.py was imported')\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="no such file or folder") as info:
        open_data("data:feeds", dynamic)
    assert "py:data:feeds" in (info.value.hint or "")
    with pytest.raises(DataError, match="cannot import 'data'"):
        open_data("py:data:feeds", dynamic)  # the current folder is not importable


# ------------------------------------------------------------------------------ random
def test_random_feeds_warn_and_are_seeded(caplog: pytest.LogCaptureFixture) -> None:
    model = model_from_text(TWO_INPUTS)
    with caplog.at_level(logging.WARNING, logger="irpass.data"):
        source = open_data("random:3?S=5", model)
    assert "only indicative" in caplog.text
    assert source.indicative
    feeds = collect(source)
    assert len(feeds) == 3
    assert feeds[0]["ids"].shape == (1, 5) and feeds[0]["ids"].dtype == np.int64
    np.testing.assert_array_equal(feeds[0]["a"], collect(source)[0]["a"])


def test_random_needs_a_model() -> None:
    with pytest.raises(DataError, match="need the model"):
        open_data("random")


# -------------------------------------------------------------------------- bad input
def test_rank_mismatch_names_input_and_expected_rank(tmp_path: pathlib.Path, dynamic) -> None:
    np.save(tmp_path / "x.npy", np.zeros((2, 3, 1, 1), np.float32))
    with pytest.raises(DataError, match=r"input 'x' expects rank 2 \(float32 \[N, 3\]\)"):
        open_data(tmp_path / "x.npy", dynamic)


def test_fixed_dimension_mismatch(tmp_path: pathlib.Path, dynamic) -> None:
    np.save(tmp_path / "x.npy", np.zeros((2, 5), np.float32))
    with pytest.raises(DataError, match=r"input 'x' expects float32 \[N, 3\].*axis 1: 5 != 3"):
        open_data(tmp_path / "x.npy", dynamic)


def test_float_data_for_integer_input_is_refused(tmp_path: pathlib.Path) -> None:
    np.savez(tmp_path / "d.npz", a=np.zeros((2, 4), np.float32), ids=np.zeros((2, 3)))
    with pytest.raises(DataError, match=r"input 'ids' expects int64.*float64"):
        open_data(tmp_path / "d.npz", model_from_text(TWO_INPUTS))


def test_integer_overflow_is_refused(tmp_path: pathlib.Path) -> None:
    model = model_from_text(TWO_INPUTS.replace("int64[N, S] ids", "int8[N, S] ids"))
    np.savez(tmp_path / "d.npz", a=np.zeros((1, 4), np.float32), ids=np.full((1, 2), 300))
    with pytest.raises(DataError, match="input 'ids' expects int8"):
        open_data(tmp_path / "d.npz", model)


def test_npy_for_two_input_model_is_refused(tmp_path: pathlib.Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((2, 4), np.float32))
    with pytest.raises(DataError, match="one array"):
        open_data(tmp_path / "x.npy", model_from_text(TWO_INPUTS))


@pytest.mark.parametrize("kind", ["npy", "folder"])
def test_empty_data_are_an_error(tmp_path: pathlib.Path, dynamic, kind: str) -> None:
    if kind == "npy":
        np.save(tmp_path / "x.npy", np.zeros((0, 3), np.float32))
        spec = tmp_path / "x.npy"
    else:
        spec = tmp_path / "empty"
        spec.mkdir()
    with pytest.raises(DataError, match=r"empty|no data"):
        open_data(spec, dynamic)


def test_missing_path_and_unknown_option(tmp_path: pathlib.Path, dynamic) -> None:
    with pytest.raises(DataError, match="no such file or folder"):
        open_data(tmp_path / "nope.npz", dynamic)
    np.save(tmp_path / "x.npy", np.zeros((2, 3), np.float32))
    with pytest.raises(DataError, match="unknown option"):
        open_data(f"{tmp_path / 'x.npy'}?colour=red", dynamic)
    (tmp_path / "x.txt").write_text("1")
    with pytest.raises(DataError, match="unknown data file type"):
        open_data(tmp_path / "x.txt", dynamic)


def test_array_source_checks_lengths() -> None:
    with pytest.raises(DataError, match="different numbers of samples"):
        ArraySource({"a": np.zeros(3), "b": np.zeros(4)})


# ------------------------------------------------------------------------------ labels
def test_labels_from_every_format(tmp_path: pathlib.Path) -> None:
    np.save(tmp_path / "l.npy", np.array([1, 2, 3]))
    np.savez(tmp_path / "d.npz", input=np.zeros((3, 2)), labels=np.array([4, 5, 6]))
    np.savez(tmp_path / "k.npz", a=np.zeros(3), b=np.array([7, 8, 9]))
    (tmp_path / "l.txt").write_text("1\n0\n\n2\n")
    (tmp_path / "l.csv").write_text("0.5\n1.5\n")
    assert load_labels(tmp_path / "l.npy").tolist() == [1, 2, 3]
    assert load_labels(tmp_path / "d.npz").tolist() == [4, 5, 6]
    assert load_labels(f"{tmp_path / 'k.npz'}:b").tolist() == [7, 8, 9]
    labels = load_labels(tmp_path / "l.txt")
    assert labels.tolist() == [1, 0, 2] and labels.dtype == np.int64
    assert load_labels(tmp_path / "l.csv").tolist() == [0.5, 1.5]


def test_bad_labels(tmp_path: pathlib.Path) -> None:
    np.savez(tmp_path / "k.npz", a=np.zeros(3), b=np.zeros(3))
    with pytest.raises(DataError, match="which array holds the labels"):
        load_labels(tmp_path / "k.npz")
    np.save(tmp_path / "e.npy", np.zeros(0))
    with pytest.raises(DataError, match="empty"):
        load_labels(tmp_path / "e.npy")
    with pytest.raises(DataError, match="no such file"):
        load_labels(tmp_path / "missing.npy")


def test_labels_from_class_subfolders_line_up_with_the_images(tmp_path: pathlib.Path) -> None:
    for cls, value in (("cat", 10), ("dog", 200)):
        (tmp_path / cls).mkdir()
        for i in range(2):
            _write_pgm(tmp_path / cls / f"{i}.pgm", np.full((2, 2), value))
    labels = load_labels(tmp_path)
    assert labels.tolist() == [0, 0, 1, 1]
    images = np.concatenate([f["input"] for f in open_data(tmp_path)()])
    assert images[labels == 1].min() > images[labels == 0].max()
    (tmp_path / "loose.pgm").write_bytes((tmp_path / "cat" / "0.pgm").read_bytes())
    with pytest.raises(DataError, match="one subfolder per class"):
        load_labels(tmp_path)


def test_npz_streaming_memory_is_bounded(tmp_path: pathlib.Path, dynamic) -> None:
    import tracemalloc

    big = np.ones((400_000, 3), np.float32)  # 4.8 MB
    np.savez_compressed(tmp_path / "big.npz", x=big)
    del big
    source = open_data(tmp_path / "big.npz", dynamic, batch_size=1000)
    tracemalloc.start()
    total = sum(f["x"].shape[0] for f in source())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert total == 400_000
    assert peak < 1_000_000  # a few batches of 12 kB, never the whole 4.8 MB array
