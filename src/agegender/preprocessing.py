"""The single definition of how a face image becomes model input.

Training, evaluation, export and prediction all call these functions with the
`Preprocessing` stored in the checkpoint, so a model never sees a different crop,
size, colour mode or normalisation than it was trained on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Preprocessing:
    """How a face crop is turned into a model input tensor."""

    size: int = 64
    grayscale: bool = False
    mean: float = 0.5
    std: float = 0.25

    @property
    def channels(self) -> int:
        return 1 if self.grayscale else 3

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Preprocessing:
        return cls(**{k: values[k] for k in ("size", "grayscale", "mean", "std") if k in values})


def resize_face(face: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """Resize an H×W×3 (or H×W) uint8 face crop to prep.size² × channels, uint8.

    This is the step the decoded-image cache stores, so it runs once per image, not per epoch.
    """
    image = Image.fromarray(face)
    if prep.grayscale:
        image = image.convert("L")
    elif image.mode != "RGB":
        image = image.convert("RGB")
    if image.size != (prep.size, prep.size):
        image = image.resize((prep.size, prep.size), Image.Resampling.BILINEAR, reducing_gap=None)
    array = np.asarray(image, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def standardize(scaled, prep: Preprocessing):
    """Pixels in [0, 1] → model input; works on numpy arrays and torch tensors alike."""
    return (scaled - prep.mean) / prep.std


def normalize(batch: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """uint8 N×H×W×C → float32 N×C×H×W, scaled and standardised as in training."""
    scaled = batch.astype(np.float32) / 255.0
    return np.ascontiguousarray(standardize(scaled, prep).transpose(0, 3, 1, 2))
