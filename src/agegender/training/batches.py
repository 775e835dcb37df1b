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
    coverage = read_coverage(data, rows, config, device) if generator is not None else None
    return model_input(pixels, config, generator, coverage), gender, age


def read_batch(data: LabelledFaces, rows: np.ndarray, device: torch.device | str = "cpu"
               ) -> Batch:
    """N×C×H×W pixels in [0, 1], gender and age labels of `rows` in the order given, on `device`.

    The uint8 pixels travel to the device before conversion, so augmentation runs there.
    """
    pixels = torch.from_numpy(_read_rows(data.images, rows)).to(device).permute(0, 3, 1, 2)
    return (pixels.float().div_(255), torch.from_numpy(data.gender[rows]).to(device),
            torch.from_numpy(data.age[rows]).to(device))


def read_coverage(data: LabelledFaces, rows: np.ndarray, config: TrainConfig,
                  device: torch.device | str = "cpu") -> torch.Tensor | None:
    """N×1×H×W share in [0, 1] of each pixel of `rows` that shows the photo; None when the
    augmentation has no use for it (no border fill) or the data has none (every crop whole),
    so a run without border fill reads nothing more per step."""
    if not config.augment.border_fill or data.coverage is None:
        return None
    coverage = torch.from_numpy(_read_rows(data.coverage, rows)).to(device)
    return coverage[:, None].float().div_(255)


def _read_rows(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """`array[rows]`, read in ascending order: sequential reads in the memory-mapped cache."""
    ascending = np.argsort(rows, kind="stable")
    return np.asarray(array[rows[ascending]])[np.argsort(ascending)]


def model_input(pixels: torch.Tensor, config: TrainConfig, generator: torch.Generator | None,
                coverage: torch.Tensor | None = None) -> torch.Tensor:
    """Pixels in [0, 1] → the model's input (augmented when a generator is given; `coverage`
    as `read_coverage` gives it); `pixels` is left unchanged, so one read can give several
    augmented views."""
    if generator is not None:
        pixels = augment_batch(pixels, config.augment, generator, coverage)
    return standardize(pixels, config.preprocessing, channels_first=True,
                       as_array=partial(torch.as_tensor, device=pixels.device)).contiguous(
        memory_format=torch.channels_last)
