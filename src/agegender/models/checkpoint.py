"""Checkpoints as tensors and plain data: read safely, written atomically, rebuilt into networks.

A checkpoint is a dict of tensors (weights, optimizer state) and plain data (the run's
configuration, calibration, labels, counters), saved with `torch.save` and opened with
`torch.load(weights_only=True)`, which refuses anything else: a downloaded `.pt` can never
run code. Training, inference, calibration and export all read checkpoints through here, so
none of them needs the training stack to open one.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from agegender.atomic import write_bytes_atomic
from agegender.data.records import GENDER_NAMES
from agegender.models.config import ModelConfig
from agegender.models.deploy import Calibration, DeployedModel
from agegender.models.factory import create_model
from agegender.preprocessing import Preprocessing

FORMAT_VERSION = 1

CONVERT_COMMAND = "agegender convert-checkpoint OLD.pt --output NEW.pt"

LABELS = {"gender": list(GENDER_NAMES), "gender_output": "probability of female",
          "age_output": "years"}


def save_checkpoint(path: Path, model: nn.Module, config: dict, **state: Any) -> None:
    """Weights, the run's configuration (`TrainConfig.to_dict()`) and `state`, written to a
    temporary file in the same folder and renamed: a crash never corrupts `path`."""
    payload = {"format_version": FORMAT_VERSION, "model_state": model.state_dict(),
               "config": config, "labels": LABELS, **state}
    write_checkpoint(path, payload)


def write_checkpoint(path: Path, payload: dict) -> None:
    """Write a payload (as `read_checkpoint` returns it) atomically."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_bytes_atomic(Path(path), buffer.getvalue())


def read_checkpoint(path: Path | str) -> dict:
    """The payload of an agegender checkpoint, unpickling nothing but tensors and plain data."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"{path}: refused: it holds objects other than tensors and plain data, which "
            f"could run code when opened. If you trust its source (a checkpoint of an older "
            f"agegender version), convert it once with `{CONVERT_COMMAND}`") from error
    except Exception as error:  # torch raises many types for files that are not checkpoints
        raise ValueError(f"{path}: not a readable agegender checkpoint ({error})") from error
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: not an agegender checkpoint (format {FORMAT_VERSION} expected)")
    return payload


@dataclass
class LoadedCheckpoint:
    """A checkpoint's network (eval mode) with what is needed to run it."""

    model: nn.Module
    config: dict
    """The run's configuration as plain data (`TrainConfig.from_dict` rebuilds it)."""
    calibration: Calibration

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing.from_dict(self.config["preprocessing"])

    @property
    def model_config(self) -> ModelConfig:
        return ModelConfig(**self.config["model"])

    @property
    def preset(self) -> str:
        return str(self.config.get("preset", ""))

    def deployed(self) -> DeployedModel:
        """The network wrapped with its calibration: what export and the torch backend run."""
        return DeployedModel(self.model, self.calibration).eval()


def build_model(payload: dict) -> nn.Module:
    """The network a payload describes, with its weights, in eval mode."""
    config = payload["config"]
    model = create_model(ModelConfig(**config["model"]),
                         Preprocessing.from_dict(config["preprocessing"]), load_pretrained=False)
    model.load_state_dict(payload["model_state"])
    return model.eval()


def load_checkpoint(path: Path | str) -> LoadedCheckpoint:
    """Rebuild the network from the checkpoint's own configuration."""
    payload = read_checkpoint(path)
    return LoadedCheckpoint(build_model(payload), payload["config"],
                            Calibration.from_dict(payload.get("calibration")))
