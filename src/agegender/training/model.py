"""The trainable whole: the network plus its training-only heads, with named outputs.

One module owns every parameter the optimizer updates, so a data-parallel wrapper can wrap it
as one. Checkpoints keep the network's own state (`net`), which is what inference rebuilds;
the training-only embedding head is stored beside it in `last.pt` for resuming.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Outputs:
    """A forward pass in float32. `age_logits` exist for distribution (transfer) models,
    `embedding` when the model learns a teacher's face descriptors."""

    gender_logit: torch.Tensor
    age: torch.Tensor
    age_logits: torch.Tensor | None = None
    embedding: torch.Tensor | None = None


class TrainingModel(nn.Module):
    """`net` (what ships) and, for feature distillation, a linear map from the backbone's
    pooled features to a teacher's descriptor (dropped after training)."""

    def __init__(self, net: nn.Module, embedding_size: int | None = None,
                 freeze_batchnorm: bool = False):
        super().__init__()
        self.net = net
        self.freeze_batchnorm = freeze_batchnorm
        self.embedding_head = (None if embedding_size is None
                               else nn.Linear(net.num_features, embedding_size))

    def train(self, mode: bool = True) -> TrainingModel:
        """As `nn.Module.train`, but BatchNorm stays in eval mode when frozen: it normalises
        with its stored statistics and never updates them."""
        super().train(mode)
        if self.freeze_batchnorm:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    @property
    def backbone(self) -> nn.Module | None:
        """The pretrained part, which trains at its own rate and may start frozen."""
        return getattr(self.net, "backbone", None)

    def forward(self, images: torch.Tensor) -> Outputs:
        if self.embedding_head is None:
            gender_logit, age, *age_logits = self.net(images)
            embedding = None
        else:
            features = self.net.backbone(images)
            gender_logit, age, *age_logits = self.net.forward_head(features)
            embedding = self.embedding_head(features.float())
        return Outputs(gender_logit.float(), age.float(),
                       age_logits[0].float() if age_logits else None, embedding)

    def parameter_groups(self, lr: float, backbone_lr_scale: float) -> list[dict]:
        """Adam parameter groups: a pretrained backbone (when the net has one) at
        `lr × backbone_lr_scale`, everything else at `lr`."""
        if self.backbone is None:
            return [{"params": list(self.parameters()), "lr": lr}]
        backbone_ids = {id(parameter) for parameter in self.backbone.parameters()}
        heads = [parameter for parameter in self.parameters() if id(parameter) not in backbone_ids]
        return [{"params": list(self.backbone.parameters()), "lr": lr * backbone_lr_scale},
                {"params": heads, "lr": lr}]
