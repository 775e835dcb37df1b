"""Training: configuration, presets, augmentation, the loop and checkpoints (needs torch)."""

from agegender.training.config import AugmentConfig, TrainConfig
from agegender.training.presets import PRESETS, get_preset
from agegender.training.trainer import Trainer, train, train_on_faces

__all__ = ["PRESETS", "AugmentConfig", "TrainConfig", "Trainer", "get_preset", "train",
           "train_on_faces"]
