"""Build a model from its configuration (the checkpoint stores the configuration, not code)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from torch import nn

from agegender.models.seed import SeedCNN, SeparateCNNs
from agegender.preprocessing import Preprocessing

ARCHITECTURES = {"seed-cnn": SeedCNN, "seed-separate": SeparateCNNs}


@dataclass
class ModelConfig:
    """Architecture hyper-parameters; every model outputs (gender logit, age in years)."""

    architecture: str = "seed-cnn"
    widths: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    dense: list[int] = field(default_factory=lambda: [256, 256])
    dropout: float = 0.3
    batchnorm: bool = True
    initial_age: float = 33.0

    def to_dict(self) -> dict:
        return asdict(self)


def create_model(config: ModelConfig, prep: Preprocessing) -> nn.Module:
    """Instantiate `config.architecture` for inputs shaped by `prep`."""
    try:
        architecture = ARCHITECTURES[config.architecture]
    except KeyError:
        raise ValueError(f"unknown architecture {config.architecture!r}; "
                         f"choose from {sorted(ARCHITECTURES)}") from None
    return architecture(
        in_channels=prep.channels, size=prep.size, widths=config.widths, dense=config.dense,
        dropout=config.dropout, batchnorm=config.batchnorm, initial_age=config.initial_age,
    )
