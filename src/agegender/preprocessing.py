"""The single definition of how a face image becomes model input.

Training, evaluation, export and prediction all call these functions with the
`Preprocessing` stored in the checkpoint, so a model never sees a different crop,
size, colour mode or normalisation than it was trained on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from agegender.options import option

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TF_LITE_MEAN = (127 / 255,) * 3
TF_LITE_STD = (128 / 255,) * 3
SFACE_MEAN = (127.5 / 255,) * 3
"""SFace's own normalisation, (x − 127.5) / 128 on 0–255 pixels, as the graph's Sub and Mul do."""
SFACE_STD = (128 / 255,) * 3
DLIB_MEAN = (122.782 / 255, 117.001 / 255, 104.298 / 255)
"""dlib's input layer: (RGB byte − [122.782, 117.001, 104.298]) / 256 (the package's manifest)."""
DLIB_STD = (256 / 255,) * 3
"""The input statistics of the pretrained backbones (torchvision's ImageNet models; the
TensorFlow Lite EfficientNets; the face-trained SFace and Cydral/dlib networks), here so that
presets and the command line need no torch."""

Stat = float | tuple[float, ...]
"""One value for all channels, or one per channel (RGB order), for pixels scaled to [0, 1]."""


@dataclass(frozen=True)
class Preprocessing:
    """How a face crop is turned into a model input tensor."""

    size: int = option(64, doc="side in pixels of the square model input")
    grayscale: bool = option(False, flag="--grayscale-input",
                             doc="the model reads one grey channel instead of RGB")
    mean: Stat = option(0.5, cli=False, doc="subtracted from pixels in [0, 1]")
    std: Stat = option(0.25, cli=False, doc="pixels are divided by this after the mean")
    align: bool = option(False, doc="map the face's 5 detected points onto the canonical "
                                    "template (faces.align) before resizing")

    def __post_init__(self) -> None:
        for name in ("mean", "std"):
            value = getattr(self, name)
            if isinstance(value, list | tuple):
                if len(value) != self.channels:
                    raise ValueError(f"{name} has {len(value)} values for {self.channels} channels")
                object.__setattr__(self, name, tuple(float(v) for v in value))

    @property
    def channels(self) -> int:
        return 1 if self.grayscale else 3

    def channel_stats(self, channels_first: bool) -> tuple[float | np.ndarray, float | np.ndarray]:
        """Mean and std shaped to broadcast over N×C×H×W (channels_first) or N×H×W×C batches."""
        shape = (-1, 1, 1) if channels_first else (-1,)

        def shaped(value: Stat) -> float | np.ndarray:
            if isinstance(value, tuple):
                return np.asarray(value, dtype=np.float32).reshape(shape)
            return float(value)

        return shaped(self.mean), shaped(self.std)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Preprocessing:
        names = ("size", "grayscale", "mean", "std", "align")
        return cls(**{name: values[name] for name in names if name in values})


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


def standardize(scaled, prep: Preprocessing, channels_first: bool = False,
                as_array: Callable = np.asarray):
    """Pixels in [0, 1] → model input. `as_array` converts the statistics to the batch's kind
    (`torch.as_tensor` for tensors), so training and inference share this one formula."""
    mean, std = (as_array(stat) for stat in prep.channel_stats(channels_first))
    return (scaled - mean) / std


def normalize(batch: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """uint8 N×H×W×C → float32 N×C×H×W, scaled and standardised as in training: one table
    lookup per pixel into `input_levels` (the same values as computing each pixel, in one
    pass instead of five over the batch)."""
    inputs = np.empty((len(batch), batch.shape[3], *batch.shape[1:3]), dtype=np.float32)
    for channel, levels in enumerate(input_levels(prep)):
        np.take(levels, batch[..., channel], out=inputs[:, channel], mode="clip")
    return inputs


@lru_cache(maxsize=8)
def input_levels(prep: Preprocessing) -> np.ndarray:
    """C×256 float32: the model input for each uint8 value of each channel, by the formula
    training uses (`standardize` of the value / 255)."""
    values = np.repeat(np.arange(256, dtype=np.float32)[:, None], prep.channels, axis=1) / 255.0
    return np.ascontiguousarray(np.asarray(standardize(values, prep), dtype=np.float32).T)
