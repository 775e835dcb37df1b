"""What a student learns beside the labels: teacher networks run on each batch, and tables of
a teacher's precomputed answers per image."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from agegender.data.records import source_name
from agegender.models.checkpoint import load_checkpoint
from agegender.preprocessing import Preprocessing


class Teachers:
    """Checkpoints whose mean gender probability and age distribution a student learns."""

    def __init__(self, paths: list[str], preprocessing: Preprocessing, device: torch.device):
        self.device = device
        self.networks = [self._load(Path(path), preprocessing) for path in paths]

    def _load(self, path: Path, preprocessing: Preprocessing) -> torch.nn.Module:
        teacher = load_checkpoint(path)
        if json.dumps(asdict(teacher.preprocessing)) != json.dumps(asdict(preprocessing)):
            raise ValueError(f"teacher {path} was trained with other preprocessing "
                             f"({teacher.preprocessing}) than this run ({preprocessing})")
        return teacher.model.to(self.device, memory_format=torch.channels_last).requires_grad_(
            False)

    def __bool__(self) -> bool:
        return bool(self.networks)

    @torch.no_grad()
    def targets(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The teachers' mean probability of female and mean age distribution on this batch."""
        prob_female, age_distribution = 0.0, 0.0
        for teacher in self.networks:
            with autocast(self.device):
                gender_logit, _, age_logits = teacher(images)
            prob_female = prob_female + torch.sigmoid(gender_logit.float())
            age_distribution = age_distribution + F.softmax(age_logits.float(), dim=-1)
        return prob_female / len(self.networks), age_distribution / len(self.networks)


def autocast(device: torch.device) -> torch.autocast:
    """bfloat16 mixed precision on a GPU; losses are computed in float32 outside it."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


SOFT_TARGETS = ("prob_female", "age_distribution", "descriptor")
"""What a teacher table may hold per image: a probability of female
(`tools/face_embedding_teacher.py`), an age distribution over ages 0…100
(`tools/age_teachers.py`), a face descriptor."""


def read_soft_targets(path: Path, sources: list[str], required: list[str]
                      ) -> dict[str, np.ndarray]:
    """Every `SOFT_TARGETS` array of a teacher table for each row of the data, NaN where the
    image is not listed, joined on the file name as `split.csv` is; `required` must be there."""
    try:
        with np.load(path) as table:
            names = table["name"].tolist()
            missing = [key for key in required if key not in table.files]
            arrays = {key: np.asarray(table[key], dtype=np.float32)
                      for key in SOFT_TARGETS if key in table.files}
    except (OSError, KeyError, ValueError) as error:
        raise ValueError(f"{path}: not a soft-target table with a 'name' array ({error})"
                         ) from error
    if missing or not arrays:
        raise ValueError(f"{path}: a soft-target table needs 'name' and "
                         f"{required or 'one of ' + str(list(SOFT_TARGETS))} arrays; it has "
                         f"{sorted(arrays)}")
    position = {name: index for index, name in enumerate(names)}
    found = np.array([position.get(source_name(source), -1) for source in sources])
    if (found < 0).all():
        raise ValueError(f"{path}: lists none of this data's images")
    joined = {}
    for key, values in arrays.items():
        if len(names) != len(values):
            raise ValueError(f"{path}: {len(names)} names but {len(values)} rows of {key!r}")
        joined[key] = np.full((len(sources), *values.shape[1:]), np.nan, dtype=np.float32)
        joined[key][found >= 0] = values[found[found >= 0]]
    return joined
