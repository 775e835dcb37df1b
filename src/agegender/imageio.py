"""Decode image files into RGB arrays, with errors that name the input."""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff",
                            ".ppm", ".pgm"})
"""Suffixes taken as images when searching folders; files named explicitly are tried whatever
their suffix."""

MAX_PIXELS = 80_000_000
"""Decompression-bomb cap, the one limit on an image's size (files, uploads, arrays alike):
larger images are refused rather than exhausting memory. Pillow's own, looser check is
reported with this limit too."""


class ImageReadError(ValueError):
    """An input could not be read as an image; the message names the input and the reason."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class NotAnImageError(ImageReadError):
    """The content is in no image format Pillow knows (sniffed from the bytes, never the name)."""


class CorruptImageError(ImageReadError):
    """The content starts as an image format Pillow knows, but cannot be decoded."""


class ImageTooLargeError(ImageReadError):
    """The image has more pixels than `MAX_PIXELS` (a possible decompression bomb)."""


class MissingImageError(ImageReadError, FileNotFoundError):
    """No file at the path given (also a `FileNotFoundError`)."""


def decode_image(data: bytes | Path | str, source: str | None = None) -> np.ndarray:
    """Return an H×W×3 uint8 RGB array, EXIF orientation applied.

    Accepts raw bytes or a path. Grayscale, palette, RGBA, CMYK and 16-bit images are converted.
    Raises `MissingImageError`, `NotAnImageError` (content in no image format),
    `CorruptImageError` (an image format that cannot be decoded), `ImageTooLargeError` or
    `ImageReadError` (empty, unreadable), each naming the input.
    """
    return _decode(data, source, None)[0]


@dataclass
class ReducedImage:
    """An image decoded at a reduced scale, and the way to its full-resolution pixels.

    `pixels` is RGB uint8 (EXIF orientation applied); one of its pixels spans `scale`
    full-resolution pixels each way (1.0: not reduced). `full()` decodes the whole image once,
    on first use, for the faces too small in `pixels` for their crop.
    """

    pixels: np.ndarray
    scale: float
    full_size: tuple[int, int]
    _data: bytes | Path | str
    _source: str | None
    _full: np.ndarray | None = None

    def full(self) -> np.ndarray:
        if self._full is None:
            self._full = (self.pixels if self.scale == 1.0
                          else _decode(self._data, self._source, None)[0])
        return self._full


def decode_reduced(data: bytes | Path | str, min_side: int, source: str | None = None
                   ) -> ReducedImage:
    """Decode an image with its longest side reduced towards `min_side`, never below it.

    JPEG is decoded by libjpeg at 1/2, 1/4 or 1/8 scale directly (Pillow's `Image.draft`), for
    a fraction of a full decode. PNG, WebP and the other formats have no reduced decode in
    Pillow (libpng has none; libwebp's scaled decoding is not exposed), so they are decoded
    whole (`scale` 1.0). Errors as `decode_image`.
    """
    pixels, scale, full_size = _decode(data, source, min_side)
    return ReducedImage(pixels, scale, full_size, data, source)


def _decode(data: bytes | Path | str, source: str | None, min_side: int | None
            ) -> tuple[np.ndarray, float, tuple[int, int]]:
    """The RGB pixels, decoded at a JPEG draft scale keeping the longest side at least
    `min_side` (None: full size); the reduction factor; the full (width, height), oriented."""
    name = source or str(data if not isinstance(data, bytes) else "<bytes>")
    try:
        if isinstance(data, bytes):
            if not data:
                raise ImageReadError(name, "empty file")
            stream: io.BytesIO | Path = io.BytesIO(data)
            prefix = data[:16]
        else:
            stream = Path(data)
            prefix = _file_prefix(stream, name)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(stream) as image:
                if image.width * image.height > MAX_PIXELS:
                    raise ImageTooLargeError(name, too_large(image.width * image.height,
                                                             image.size))
                full_size = image.size
                scale = (_draft(image, min_side)
                         if min_side is not None and image.format == "JPEG" else 1)
                image.load()
                stored = image.size
                ImageOps.exif_transpose(image, in_place=True)  # no copy when already upright
                if image.size != stored:  # turned a quarter by its EXIF orientation
                    full_size = full_size[::-1]
                return _to_rgb(image), float(scale), full_size
    except ImageReadError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as error:
        pixels = re.search(r"\((\d+) pixels\)", str(error))
        raise ImageTooLargeError(name, too_large(int(pixels[1]) if pixels else None)) from error
    except (OSError, SyntaxError, ValueError) as error:
        reason = str(error) or type(error).__name__
        if "cannot identify image file" in reason:
            if _known_format(prefix):
                raise CorruptImageError(name, "corrupt image: its format is recognised, but "
                                              "it cannot be decoded") from error
            raise NotAnImageError(name, "not an image file") from error
        raise CorruptImageError(name, reason) from error


def _draft(image: Image.Image, min_side: int) -> int:
    """Have libjpeg decode `image` at the smallest of its scales (1/2, 1/4, 1/8) whose longest
    side is still at least `min_side`; the reduction chosen (1: none). A reduced pixel covers
    that many full-resolution pixels each way (the last row and column may be partial)."""
    longest = max(image.size)
    reduction = 1
    while reduction < 8 and longest // (reduction * 2) >= min_side:
        reduction *= 2
    if reduction > 1:
        image.draft(image.mode, (-(-image.width // reduction), -(-image.height // reduction)))
    return round(longest / max(image.size))  # what libjpeg agreed to


def _file_prefix(path: Path, name: str) -> bytes:
    """The first bytes of the file at `path` (to tell a corrupt image from no image), or the
    reason it cannot be read: missing, a folder, a looping link, no permission."""
    try:
        with path.open("rb") as stream:
            prefix = stream.read(16)
    except FileNotFoundError:
        raise MissingImageError(name, "no such file") from None
    except IsADirectoryError:
        raise ImageReadError(name, "a folder, not a file") from None
    except OSError as error:
        raise ImageReadError(name, (error.strerror or str(error)).lower()) from None
    if not prefix:
        raise ImageReadError(name, "empty file")
    return prefix


def _known_format(prefix: bytes) -> bool:
    """Whether the first bytes are those of an image format Pillow recognises by its
    signature (formats that accept any bytes do not count)."""
    Image.init()
    padded = prefix.ljust(16, b"\0")  # some signature checks read a fixed length
    return any(accept is not None and _accepts(accept, padded)
               for _, accept in Image.OPEN.values())


def _accepts(accept: Any, prefix: bytes) -> bool:
    try:
        return bool(accept(prefix))
    except Exception:  # a plugin's check that trips on these bytes does not recognise them
        return False


def too_large(pixels: int | None, size: tuple[int, int] | None = None) -> str:
    """The one way a too-large image is refused, with the one limit, `MAX_PIXELS`."""
    shown = f"{size[0]}x{size[1]} is " if size else ""
    count = f"{shown}{pixels / 1e6:.0f} megapixels, " if pixels else ""
    return (f"image too large: {count}over the {MAX_PIXELS / 1e6:.0f}-megapixel limit "
            "(refused as a possible decompression bomb)")


def as_rgb(image: Any, source: str = "array", bgr: bool = False) -> np.ndarray:
    """An H×W×3 uint8 RGB array from what Python users hold: a PIL image (EXIF orientation
    applied), or a numpy array, uint8 or other integers in 0–255, float in 0–1 or 0–255;
    H×W (grayscale), H×W×1, ×3 (RGB, or BGR with `bgr`, as OpenCV gives) or ×4 (RGBA/BGRA,
    put on white). Raises `ImageReadError` naming `source` for anything else."""
    if isinstance(image, Image.Image):
        if image.width * image.height > MAX_PIXELS:
            raise ImageTooLargeError(source, too_large(image.width * image.height, image.size))
        return _to_rgb(ImageOps.exif_transpose(image))
    if not isinstance(image, np.ndarray):
        raise ImageReadError(source, f"cannot take a {type(image).__name__} as an image: give "
                                     "a path, a PIL image or a numpy array")
    array = _channels_last(image, source, bgr)
    if array.shape[0] * array.shape[1] > MAX_PIXELS:
        raise ImageTooLargeError(source, too_large(array.shape[0] * array.shape[1],
                                                   (array.shape[1], array.shape[0])))
    array = _to_uint8(array, source)
    if array.shape[2] == 4:
        alpha = array[:, :, 3:].astype(np.float32) / 255
        array = np.rint(array[:, :, :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
    return np.ascontiguousarray(array)


def _channels_last(array: np.ndarray, source: str, bgr: bool) -> np.ndarray:
    """H×W×C with C 3 (RGB) or 4 (RGBA), from H×W, H×W×1, ×3 or ×4 (BGR(A) when `bgr`)."""
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4) or 0 in array.shape:
        raise ImageReadError(source, f"an array of shape {array.shape} is not an image: give "
                                     "H×W (grayscale), H×W×3 (RGB) or H×W×4 (RGBA)")
    if array.shape[2] == 1:
        return np.repeat(array, 3, axis=2)
    if bgr:
        return array[:, :, [2, 1, 0, *range(3, array.shape[2])]]
    return array


def _to_uint8(array: np.ndarray, source: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ImageReadError(source, "the array holds NaN or infinite values")
        peak = float(array.max())
        scale = 255.0 if peak <= 1.0 else 1.0
        if array.min() < 0 or peak * scale > 255.0 + 1e-6:
            raise ImageReadError(source, "a float array must hold values in 0–1 or 0–255")
        return np.clip(np.rint(array * scale), 0, 255).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        if array.min() < 0 or array.max() > 255:
            raise ImageReadError(source, "an integer array must hold values in 0–255")
        return array.astype(np.uint8)
    raise ImageReadError(source, f"an array of {array.dtype} is not an image")


def _to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if array.max() > 255 else 255.0
        gray = np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    if image.mode != "RGB":  # converting to its own mode would copy the image
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8)
