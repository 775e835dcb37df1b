"""Transfer learning: a pretrained backbone with a gender logit and an age distribution head."""

from __future__ import annotations

import torch
from torch import nn

from agegender.models.age_distribution import NUM_AGE_BINS, expected_age
from agegender.models.backbones import create_backbone


class TransferModel(nn.Module):
    """Backbone features → dropout → gender logit, and logits over ages 0..100 (DLDL).

    Returns (gender logit, expected age, age logits): the first two follow the contract every
    model keeps; the logits feed the label-distribution loss and the age interval.
    """

    def __init__(self, backbone: str, pretrained: bool, dropout: float, antialias: bool = False):
        super().__init__()
        self.backbone, features = create_backbone(backbone, pretrained=pretrained,
                                                  antialias=antialias)
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
        return self.forward_head(self.backbone(images))

    def forward_with_feature_map(self, images: torch.Tensor
                                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """`forward`'s outputs and the last feature map they are pooled from: the heads are
        linear over its global average, so it gives exact class activation maps."""
        feature_map = self.backbone.forward_feature_map(images)
        return (*self.forward_head(feature_map.mean((2, 3))), feature_map)

    def forward_head(self, features: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The outputs from the backbone's pooled features (apart so training can also read
        the features, e.g. for feature distillation)."""
        features = self.dropout(features)
        age_logits = self.age_head(features)
        return self.gender_head(features).squeeze(1), expected_age(age_logits), age_logits
