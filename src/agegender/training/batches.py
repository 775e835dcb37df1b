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
    """Images (augmented when a generator is given), gender and age labels of `rows`, on `device`.

    The uint8 pixels travel to the device before conversion and augmentation, which then run there.
    """
    rows = np.sort(rows)  # sorted reads are sequential in the memory-mapped cache
    images = torch.from_numpy(np.asarray(data.images[rows])).to(device).permute(0, 3, 1, 2)
    images = images.float().div_(255)
    if generator is not None:
        images = augment_batch(images, config.augment, generator)
    images = standardize(images, config.preprocessing, channels_first=True,
                         as_array=partial(torch.as_tensor, device=images.device)).contiguous(
        memory_format=torch.channels_last)
    return (images, torch.from_numpy(data.gender[rows]).to(device),
            torch.from_numpy(data.age[rows]).to(device))
