"""Training: configuration, presets, augmentation, the loop and checkpoints (needs torch)."""

from agegender.training.config import AugmentConfig, TrainConfig
from agegender.training.presets import PRESETS, get_preset
from agegender.training.trainer import Trainer, train

__all__ = ["PRESETS", "AugmentConfig", "TrainConfig", "Trainer", "get_preset", "train"]
