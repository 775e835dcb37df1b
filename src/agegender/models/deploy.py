"""The model as it ships: flip test-time augmentation, calibrated outputs, the 80 % age interval.

Export and the PyTorch backend both wrap a trained model in `DeployedModel`, so a checkpoint and
its ONNX file give the same numbers. The settings come from `Calibration`, fitted on the
validation split after training (`training.calibrate`) and stored in the checkpoint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from agegender.models.age_distribution import age_interval, expected_age, median_age

INTERVAL_COVERAGE = 0.8
"""The central probability mass `age_low`..`age_high` is meant to hold."""


@dataclass(frozen=True)
class Calibration:
    """Post-training settings: divide the gender logit by `gender_temperature`, the age logits by
    `age_temperature` before reading off the interval, average over a horizontal flip, and
    (`age_median`) report the median of the age distribution instead of its expectation."""

    gender_temperature: float = 1.0
    age_temperature: float = 1.0
    flip: bool = False
    age_median: bool = False

    @property
    def reported_age_temperature(self) -> float:
        """The temperature of the distribution whose age `DeployedModel` reports: the median
        reads the calibrated one, the expectation the network's own."""
        return self.age_temperature if self.age_median else 1.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict | None) -> Calibration:
        names = {field.name for field in fields(cls)}
        return cls(**{k: v for k, v in (values or {}).items() if k in names})


def model_outputs(model: nn.Module, images: torch.Tensor, flip: bool
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(gender logit, age, age logits or None), averaged over the image and its mirror if `flip`.

    Logits are averaged, and a distribution model's age is re-read from the averaged logits.
    """
    gender_logit, age, *rest = model(images)
    return _with_mirror(model, images, flip, gender_logit, age, rest[0] if rest else None)


def _with_mirror(model: nn.Module, images: torch.Tensor, flip: bool, gender_logit: torch.Tensor,
                 age: torch.Tensor, age_logits: torch.Tensor | None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The outputs of `images`, averaged with those of their mirror images if `flip`."""
    if flip:
        mirrored_logit, mirrored_age, *mirrored_rest = model(images.flip(3))
        gender_logit = (gender_logit + mirrored_logit) / 2
        if age_logits is None:
            age = (age + mirrored_age) / 2
        else:
            age_logits = (age_logits + mirrored_rest[0]) / 2
            age = expected_age(age_logits)
    return gender_logit, age, age_logits


def has_feature_map(model: nn.Module) -> bool:
    """Whether `model` has linear heads over globally pooled features, so that its last feature
    map and head weights give exact class activation maps (`TransferModel`)."""
    return hasattr(model, "forward_with_feature_map")


class DeployedModel(nn.Module):
    """image → (age, age_low, age_high, prob_female); the interval is NaN for models that
    predict a single age instead of a distribution.

    With `feature_map` (models for which `has_feature_map` holds) a fifth output is the last
    feature map of the image itself, never of its mirror: the class activation maps of
    `agegender explain` are computed from it without flip averaging.
    """

    def __init__(self, model: nn.Module, calibration: Calibration | None = None,
                 feature_map: bool = False):
        super().__init__()
        if feature_map and not has_feature_map(model):
            raise ValueError(f"{type(model).__name__} has no feature map before linear heads")
        self.model = model
        self.calibration = calibration or Calibration()
        self.feature_map = feature_map

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """`image`: the graph input's name in the exported ONNX model."""
        calibration = self.calibration
        if self.feature_map:
            gender_logit, age, age_logits, feature_map = self.model.forward_with_feature_map(image)
            gender_logit, age, age_logits = _with_mirror(
                self.model, image, calibration.flip, gender_logit, age, age_logits)
            return (*self._read_out(gender_logit, age, age_logits), feature_map)
        return self._read_out(*model_outputs(self.model, image, calibration.flip))

    def _read_out(self, gender_logit: torch.Tensor, age: torch.Tensor,
                  age_logits: torch.Tensor | None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        calibration = self.calibration
        prob_female = torch.sigmoid(gender_logit / calibration.gender_temperature)
        if age_logits is None:
            missing = torch.full_like(age, float("nan"))
            return age, missing, missing, prob_female
        scaled = age_logits / calibration.age_temperature
        low, high = age_interval(scaled, INTERVAL_COVERAGE)
        if calibration.age_median:
            age = median_age(scaled)
        return age, low, high, prob_female
