"""The interface every backbone keeps, apart so that families defined in other modules
(`face_backbones`) share it without importing the registry in `backbones`."""

from __future__ import annotations

import torch
from torch import nn


class ImageNetNet(nn.Module):
    """Common interface: `forward_feature_map` gives the last N×`num_features`×h×w map,
    `forward_features` its global average, `forward` adds the head.

    `cam_layer` names the module whose output is that map: class activation maps and Grad-CAM
    read it (with forward hooks), like timm's `forward_intermediates`.
    """

    num_features: int
    input_size: int
    input_mean: tuple[float, float, float]
    input_std: tuple[float, float, float]
    classifier_modules: tuple[str, ...]
    cam_layer: str

    def forward_feature_map(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_feature_map(images).mean((2, 3))

    def drop_classifier(self) -> None:
        """Replace the ImageNet head by identities, so `forward` returns the pooled features."""
        for attribute in self.classifier_modules:
            setattr(self, attribute, nn.Identity())
