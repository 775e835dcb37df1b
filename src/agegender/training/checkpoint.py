"""Checkpoints: weights + full configuration + label/preprocessing metadata, written atomically."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from agegender.atomic import write_bytes_atomic
from agegender.data.records import GENDER_NAMES
from agegender.models.deploy import Calibration, DeployedModel
from agegender.models.factory import create_model
from agegender.training.config import TrainConfig

FORMAT_VERSION = 1


def save_checkpoint(path: Path, model: nn.Module, config: TrainConfig, **state: Any) -> None:
    """Write to a temporary file in the same folder, then rename: a crash never corrupts `path`."""
    payload = {
        "format_version": FORMAT_VERSION,
        "model_state": model.state_dict(),
        "config": config.to_dict(),
        "labels": {"gender": list(GENDER_NAMES), "gender_output": "probability of female",
                   "age_output": "years"},
        **state,
    }
    write_bytes_atomic(path, serialize_checkpoint(payload))


def serialize_checkpoint(payload: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def write_config(path: Path, config: TrainConfig) -> None:
    """The human-readable copy of the configuration, saved beside the checkpoints."""
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


def read_checkpoint(path: Path) -> dict:
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise ValueError(f"{path}: not a readable agegender checkpoint ({error})") from error
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: not an agegender checkpoint (format {FORMAT_VERSION} expected)")
    return payload


def load_model(path: Path) -> tuple[nn.Module, TrainConfig]:
    """Rebuild the model from the checkpoint's own configuration, in eval mode."""
    return _build_model(read_checkpoint(path))


def load_deployed(path: Path) -> tuple[DeployedModel, TrainConfig]:
    """The model wrapped with the calibration stored in the checkpoint (if it was calibrated)."""
    payload = read_checkpoint(path)
    model, config = _build_model(payload)
    return DeployedModel(model, Calibration.from_dict(payload.get("calibration"))).eval(), config


def _build_model(payload: dict) -> tuple[nn.Module, TrainConfig]:
    config = TrainConfig.from_dict(payload["config"])
    model = create_model(config.model, config.preprocessing, load_pretrained=False)
    model.load_state_dict(payload["model_state"])
    return model.eval(), config
