"""Transfer learning: a pretrained backbone with a gender logit and an age distribution head."""

from __future__ import annotations

import torch
from torch import nn

from agegender.models.age_distribution import NUM_AGE_BINS, expected_age
from agegender.models.backbones import create_backbone

LUMA_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R BT.601 luma, the weights of Pillow's `convert("L")`."""


class LuminanceInput(nn.Module):
    """Replaces each pixel's colour by its luma, in the normalised space the network reads.

    A colour photo and its grayscale copy then give the network the same input (up to
    Pillow's rounding of the grey value), so colour casts, faded prints and black-and-white
    photos cannot move the answer through colour. Fixed buffers, not saved in checkpoints.
    """

    def __init__(self, mean: float | tuple[float, ...], std: float | tuple[float, ...]):
        super().__init__()
        for name, value in (("mean", mean), ("std", std), ("weights", LUMA_WEIGHTS)):
            values = torch.tensor(value, dtype=torch.float32).reshape(-1)
            self.register_buffer(name, values.expand(3).reshape(1, 3, 1, 1).clone(),
                                 persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        luma = ((images * self.std + self.mean) * self.weights).sum(1, keepdim=True)
        return (luma - self.mean) / self.std


class TransferModel(nn.Module):
    """Backbone features → dropout → gender logit, and logits over ages 0..100 (DLDL).

    Returns (gender logit, expected age, age logits): the first two follow the contract every
    model keeps; the logits feed the label-distribution loss and the age interval.
    """

    def __init__(self, backbone: str, pretrained: bool, dropout: float, antialias: bool = False,
                 colour: nn.Module | None = None, output_stride: int = 32):
        """`colour` maps the normalised input before the backbone (`LuminanceInput`)."""
        super().__init__()
        self.colour = colour or nn.Identity()
        self.backbone, features = create_backbone(backbone, pretrained=pretrained,
                                                  antialias=antialias, output_stride=output_stride)
        self.num_features = features
        self.dropout = nn.Dropout(dropout)
        self.gender_head = nn.Linear(features, 1)
        self.age_head = nn.Linear(features, NUM_AGE_BINS)

    @property
    def cam_layers(self) -> dict[str, str]:
        """Per output, the module whose output is the last feature map (for Grad-CAM)."""
        layer = f"backbone.{self.backbone.cam_layer}"
        return {"gender": layer, "age": layer}

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.forward_head(self.backbone(self.colour(images)))

    def forward_with_feature_map(self, images: torch.Tensor
                                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """`forward`'s outputs and the last feature map they are pooled from: the heads are
        linear over its global average, so it gives exact class activation maps."""
        feature_map = self.backbone.forward_feature_map(self.colour(images))
        return (*self.forward_head(feature_map.mean((2, 3))), feature_map)

    def forward_head(self, features: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The outputs from the backbone's pooled features (apart so training can also read
        the features, e.g. for feature distillation)."""
        features = self.dropout(features)
        age_logits = self.age_head(features)
        return self.gender_head(features).squeeze(1), expected_age(age_logits), age_logits
