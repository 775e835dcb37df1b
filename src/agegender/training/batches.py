"""Model-input batches from the cached faces: the one path training and calibration share."""

from __future__ import annotations

from functools import partial

import numpy as np
import torch

from agegender.data.labelled import LabelledFaces
from agegender.preprocessing import standardize
from agegender.training.augment import augment_batch
from agegender.training.config import TrainConfig

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def make_batch(data: LabelledFaces, rows: np.ndarray, config: TrainConfig,
               generator: torch.Generator | None, device: torch.device | str = "cpu") -> Batch:
    """Images (augmented when a generator is given), gender and age labels of `rows`."""
    pixels, gender, age = read_batch(data, rows, device)
    return model_input(pixels, config, generator), gender, age


def read_batch(data: LabelledFaces, rows: np.ndarray, device: torch.device | str = "cpu"
               ) -> Batch:
    """N×C×H×W pixels in [0, 1], gender and age labels of `rows` in the order given, on `device`.

    The uint8 pixels travel to the device before conversion, so augmentation runs there.
    """
    ascending = np.argsort(rows, kind="stable")  # sequential reads in the memory-mapped cache
    images = np.asarray(data.images[rows[ascending]])[np.argsort(ascending)]
    pixels = torch.from_numpy(images).to(device).permute(0, 3, 1, 2)
    return (pixels.float().div_(255), torch.from_numpy(data.gender[rows]).to(device),
            torch.from_numpy(data.age[rows]).to(device))


def model_input(pixels: torch.Tensor, config: TrainConfig,
                generator: torch.Generator | None) -> torch.Tensor:
    """Pixels in [0, 1] → the model's input (augmented when a generator is given); `pixels`
    is left unchanged, so one read can give several augmented views."""
    if generator is not None:
        pixels = augment_batch(pixels, config.augment, generator)
    return standardize(pixels, config.preprocessing, channels_first=True,
                       as_array=partial(torch.as_tensor, device=pixels.device)).contiguous(
        memory_format=torch.channels_last)
