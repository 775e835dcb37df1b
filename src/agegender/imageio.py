"""Decode image files into RGB arrays, with errors that name the input."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff",
                            ".ppm", ".pgm"})
"""Suffixes taken as images when searching folders; files named explicitly are tried whatever
their suffix."""

MAX_PIXELS = 80_000_000
"""Decompression-bomb cap: larger images are refused rather than exhausting memory."""


class ImageReadError(ValueError):
    """An input could not be read as an image; the message names the input and the reason."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class NotAnImageError(ImageReadError):
    """The content is in no image format Pillow knows (sniffed from the bytes, never the name)."""


class ImageTooLargeError(ImageReadError):
    """The image has more pixels than `MAX_PIXELS` (a possible decompression bomb)."""


def decode_image(data: bytes | Path | str, source: str | None = None) -> np.ndarray:
    """Return an H×W×3 uint8 RGB array, EXIF orientation applied.

    Accepts raw bytes or a path. Grayscale, palette, RGBA, CMYK and 16-bit images are converted.
    """
    name = source or str(data if not isinstance(data, bytes) else "<bytes>")
    try:
        if isinstance(data, bytes):
            if not data:
                raise ImageReadError(name, "empty file")
            stream: io.BytesIO | Path = io.BytesIO(data)
        else:
            stream = Path(data)
            if not stream.is_file():
                raise ImageReadError(name, "no such file")
            if stream.stat().st_size == 0:
                raise ImageReadError(name, "empty file")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(stream) as image:
                if image.width * image.height > MAX_PIXELS:
                    raise ImageTooLargeError(name, _too_large(image.width, image.height))
                image.load()
                image = ImageOps.exif_transpose(image)
                return _to_rgb(image)
    except ImageReadError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as error:
        raise ImageTooLargeError(name, f"image too large, refused as a possible decompression bomb "
                                   f"({error})") from error
    except (OSError, SyntaxError, ValueError) as error:
        reason = str(error) or type(error).__name__
        if "cannot identify image file" in reason:
            raise NotAnImageError(name, "not an image file") from error
        raise ImageReadError(name, reason) from error


def _too_large(width: int, height: int) -> str:
    return (f"image too large: {width}x{height} is {width * height / 1e6:.0f} megapixels, over "
            f"the {MAX_PIXELS / 1e6:.0f}-megapixel limit (refused as a possible decompression "
            "bomb)")


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
    return np.asarray(image.convert("RGB"), dtype=np.uint8)
