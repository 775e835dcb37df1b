"""Build a model from its configuration (the checkpoint stores the configuration, not code)."""

from __future__ import annotations

from torch import nn

from agegender.models.config import ARCHITECTURES, ModelConfig
from agegender.models.seed import SeedCNN, SeparateCNNs
from agegender.preprocessing import Preprocessing

SEED_ARCHITECTURES = {"seed-cnn": SeedCNN, "seed-separate": SeparateCNNs}


def create_model(config: ModelConfig, prep: Preprocessing, load_pretrained: bool = True
                 ) -> nn.Module:
    """Instantiate `config.architecture` for inputs shaped by `prep`.

    `load_pretrained=False` skips reading backbone weights, for models whose weights are about
    to come from a checkpoint.
    """
    if config.architecture == "transfer":
        from agegender.models.transfer import LuminanceInput, TransferModel

        if prep.grayscale or not config.backbone:
            raise ValueError("a transfer model needs a backbone and RGB input")
        colour = LuminanceInput(prep.mean, prep.std) if config.luminance else None
        return TransferModel(config.backbone, pretrained=config.pretrained and load_pretrained,
                             dropout=config.dropout, antialias=config.antialias, colour=colour,
                             output_stride=config.output_stride)
    try:
        architecture = SEED_ARCHITECTURES[config.architecture]
    except KeyError:
        raise ValueError(f"unknown architecture {config.architecture!r}; "
                         f"choose from {list(ARCHITECTURES)}") from None
    return architecture(
        in_channels=prep.channels, size=prep.size, widths=config.widths, dense=config.dense,
        dropout=config.dropout, batchnorm=config.batchnorm, initial_age=config.initial_age,
    )
