"""The classic age/gender CNNs from the tutorials: conv/max-pool blocks, dense + dropout."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def conv_trunk(
    in_channels: int, size: int, widths: Sequence[int], dense: Sequence[int],
    dropout: float, batchnorm: bool,
) -> tuple[nn.Sequential, int]:
    """Conv 3×3 → [BatchNorm] → ReLU → MaxPool per width, then dense layers with dropout.

    Returns the trunk and its output width.
    """
    layers: list[nn.Module] = []
    channels = in_channels
    for width in widths:
        layers.append(nn.Conv2d(channels, width, 3, padding=1, bias=not batchnorm))
        if batchnorm:
            layers.append(nn.BatchNorm2d(width))
        layers += [nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        channels = width
    side = size // 2 ** len(widths)
    if side < 1:
        raise ValueError(f"input size {size} is too small for {len(widths)} pooling blocks")
    layers.append(nn.Flatten())
    features = channels * side * side
    for units in dense:
        layers += [nn.Linear(features, units), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        features = units
    return nn.Sequential(*layers), features


def last_conv_block(trunk: nn.Sequential) -> str:
    """Name (in `trunk`) of the last pooling layer before the dense layers: its output is the
    last spatial feature map, the target layer of Grad-CAM."""
    return str(max(index for index, layer in enumerate(trunk) if isinstance(layer, nn.MaxPool2d)))


def _age_head(features: int, initial_age: float) -> nn.Linear:
    """A linear age output whose bias starts at a typical age, so training starts near the mean."""
    head = nn.Linear(features, 1)
    nn.init.constant_(head.bias, initial_age)
    return head


class SeedCNN(nn.Module):
    """One shared CNN with two outputs: a gender logit (sigmoid → P(female)) and a ReLU age."""

    def __init__(self, in_channels: int, size: int, widths: Sequence[int], dense: Sequence[int],
                 dropout: float, batchnorm: bool, initial_age: float):
        super().__init__()
        self.trunk, features = conv_trunk(in_channels, size, widths, dense, dropout, batchnorm)
        self.gender_head = nn.Linear(features, 1)
        self.age_head = _age_head(features, initial_age)

    @property
    def cam_layers(self) -> dict[str, str]:
        """Per output, the module whose output is the last feature map (for Grad-CAM)."""
        layer = f"trunk.{last_conv_block(self.trunk)}"
        return {"gender": layer, "age": layer}

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.trunk(images)
        return self.gender_head(features).squeeze(1), torch.relu(self.age_head(features)).squeeze(1)


class SeparateCNNs(nn.Module):
    """Independent gender and age CNNs (the 48×48 CSV tutorial), trained side by side."""

    def __init__(self, in_channels: int, size: int, widths: Sequence[int], dense: Sequence[int],
                 dropout: float, batchnorm: bool, initial_age: float):
        super().__init__()
        self.gender_trunk, features = conv_trunk(
            in_channels, size, widths, dense, dropout, batchnorm)
        self.age_trunk, _ = conv_trunk(in_channels, size, widths, dense, dropout, batchnorm)
        self.gender_head = nn.Linear(features, 1)
        self.age_head = _age_head(features, initial_age)

    @property
    def cam_layers(self) -> dict[str, str]:
        """Per output, the module whose output is the last feature map (for Grad-CAM)."""
        return {"gender": f"gender_trunk.{last_conv_block(self.gender_trunk)}",
                "age": f"age_trunk.{last_conv_block(self.age_trunk)}"}

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gender_logit = self.gender_head(self.gender_trunk(images)).squeeze(1)
        age = torch.relu(self.age_head(self.age_trunk(images))).squeeze(1)
        return gender_logit, age
