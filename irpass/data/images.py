"""Image folders as data: decoding (Pillow, or built-in PGM/PPM), resizing, normalizing."""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from irpass.data.sources import DataSource
from irpass.errors import DataError

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageFolderSource",
    "ImagePreprocess",
    "resize_bilinear",
]


#: File suffixes read as images.
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pnm"}
)


@dataclasses.dataclass(frozen=True)
class ImagePreprocess:
    """How image files become an input tensor.

    Pixels are divided by ``scale``, resized (bilinear, half-pixel centers) to ``size``,
    normalized as ``(x - mean) / std`` per channel, put in ``channels`` order and laid out as
    ``layout`` with a batch axis in front.
    """

    size: tuple[int, int] | None = None
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    layout: str = "nchw"
    channels: str | None = None
    scale: float = 255.0

    def __post_init__(self) -> None:
        if self.layout not in ("nchw", "nhwc"):
            raise DataError(
                f"image layout must be nchw or nhwc, got {self.layout!r}",
                hint='write ?layout=nchw or ?layout=nhwc',
            )
        if self.channels not in (None, "rgb", "bgr", "gray"):
            raise DataError(
                f"image channels must be rgb, bgr or gray, got {self.channels!r}",
                hint='write ?channels=rgb, bgr or gray',
            )
        if any(s == 0 for s in self.std):
            raise DataError(
                "image std must not be 0",
                hint='give a non-zero std per channel, e.g. ?std=0.229,0.224,0.225',
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> ImagePreprocess:
        """Build from ``size=HxW&mean=a,b,c&...`` style values (strings or JSON values)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise DataError(
                f"unknown image preprocessing option(s): {', '.join(sorted(unknown))}",
                hint="valid: " + ", ".join(sorted(known)),
            )
        kwargs: dict[str, Any] = {}
        try:
            for key, value in values.items():
                if key == "size":
                    if isinstance(value, str):
                        parts = value.lower().replace(",", "x").split("x")
                        value = (int(parts[0]), int(parts[-1]))
                    kwargs[key] = tuple(int(v) for v in value)
                elif key in ("mean", "std"):
                    if isinstance(value, str):
                        value = value.split(",")
                    if isinstance(value, (int, float)):
                        value = [value]
                    kwargs[key] = tuple(float(v) for v in value)
                elif key == "scale":
                    kwargs[key] = float(value)
                else:
                    kwargs[key] = str(value).lower()
        except (TypeError, ValueError) as exc:
            raise DataError(
                f"bad image preprocessing value: {exc}",
                hint="see the image options: size=HxW, mean=, std=, layout=nchw|nhwc, channels=, "
                "scale=",
            ) from exc
        return cls(**kwargs)


def _decode_netpbm(path: pathlib.Path) -> np.ndarray:
    """Binary PGM (P5) / PPM (P6), 8 or 16 bit, without any imaging library."""
    data = path.read_bytes()
    tokens: list[bytes] = []
    pos = 0
    while len(tokens) < 4:
        while pos < len(data) and data[pos : pos + 1].isspace():
            pos += 1
        if data[pos : pos + 1] == b"#":
            pos = data.index(b"\n", pos)
            continue
        end = pos
        while end < len(data) and not data[end : end + 1].isspace():
            end += 1
        tokens.append(data[pos:end])
        pos = end
    magic, width, height, maxval = tokens[0], int(tokens[1]), int(tokens[2]), int(tokens[3])
    if magic not in (b"P5", b"P6"):
        raise DataError(
            f"{path}: only binary PGM (P5) and PPM (P6) are read without Pillow",
            hint='pip install pillow to read other image formats',
        )
    channels = 3 if magic == b"P6" else 1
    dtype = np.dtype(">u2") if maxval > 255 else np.dtype(np.uint8)
    count = width * height * channels
    pixels = np.frombuffer(data, dtype, count, offset=pos + 1).astype(np.float32)
    pixels *= 255.0 / maxval
    return pixels.reshape(height, width, channels)


def _decode_image(path: pathlib.Path) -> np.ndarray:
    """Decode to float32 HxWxC (C = 1 or 3) with values in 0..255."""
    try:
        from PIL import Image
    except ImportError:
        if path.suffix.lower() in (".pgm", ".ppm", ".pnm"):
            return _decode_netpbm(path)
        raise DataError(
            f"{path}: reading {path.suffix} images needs Pillow",
            hint="pip install pillow (PGM/PPM images are read without it)",
        ) from None
    try:
        with Image.open(path) as image:
            mode = "L" if image.mode in ("1", "L", "I;16", "I", "F") else "RGB"
            array = np.asarray(image.convert(mode), dtype=np.float32)
    except OSError as exc:
        raise DataError(
            f"{path}: cannot decode the image ({exc})",
            hint='the file may be damaged or not an image; remove it from the folder',
        ) from exc
    return array[:, :, None] if array.ndim == 2 else array


def resize_bilinear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of HxWxC with half-pixel centers (as ONNX Resize, no antialiasing)."""
    height, width = image.shape[:2]
    out_h, out_w = size
    if (height, width) == (out_h, out_w):
        return image

    def coords(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        x = np.clip(x, 0, n_in - 1)
        lo = np.floor(x).astype(np.int64)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, (x - lo).astype(np.float32)

    y0, y1, wy = coords(height, out_h)
    x0, x1, wx = coords(width, out_w)
    top = image[y0][:, x0] * (1 - wx)[None, :, None] + image[y0][:, x1] * wx[None, :, None]
    bottom = image[y1][:, x0] * (1 - wx)[None, :, None] + image[y1][:, x1] * wx[None, :, None]
    return (top * (1 - wy)[:, None, None] + bottom * wy[:, None, None]).astype(np.float32)


class ImageFolderSource(DataSource):
    """A folder (searched recursively, sorted) of images, preprocessed into one input."""

    def __init__(
        self,
        folder: pathlib.Path,
        files: Sequence[pathlib.Path],
        preprocess: ImagePreprocess,
        input_name: str,
        batch_size: int,
        dtype: np.dtype | None = None,
    ) -> None:
        self.folder = folder
        self.files = list(files)
        self.preprocess = preprocess
        self.input_name = input_name
        self.batch_size = batch_size
        self.dtype = dtype or np.dtype(np.float32)
        self.description = f"{folder} ({len(self.files)} images)"

    @property
    def num_samples(self) -> int | None:  # noqa: D102
        return len(self.files)

    def _load(self, path: pathlib.Path) -> np.ndarray:
        p = self.preprocess
        image = _decode_image(path)
        if p.channels == "gray" and image.shape[2] == 3:
            image = image @ np.array([[0.299], [0.587], [0.114]], np.float32)
        elif p.channels in ("rgb", "bgr") and image.shape[2] == 1:
            image = np.repeat(image, 3, axis=2)
        if p.channels == "bgr":
            image = image[:, :, ::-1]
        image = image / p.scale
        if p.size is not None:
            image = resize_bilinear(image, p.size)
        mean = np.asarray(p.mean, np.float32)
        std = np.asarray(p.std, np.float32)
        if mean.size not in (1, image.shape[2]) or std.size not in (1, image.shape[2]):
            raise DataError(
                f"{path}: mean/std have {mean.size}/{std.size} values for "
                f"{image.shape[2]} channel(s)",
                hint='give one mean and one std value per channel (or a single value for all)',
            )
        image = (image - mean) / std
        if p.layout == "nchw":
            image = image.transpose(2, 0, 1)
        return np.ascontiguousarray(image, dtype=self.dtype)

    def feeds(self) -> Iterator[dict[str, np.ndarray]]:  # noqa: D102
        pending: list[np.ndarray] = []
        for path in self.files:
            image = self._load(path)
            if pending and (image.shape != pending[0].shape or len(pending) == self.batch_size):
                yield {self.input_name: np.stack(pending)}
                pending = []
            pending.append(image)
        if pending:
            yield {self.input_name: np.stack(pending)}
