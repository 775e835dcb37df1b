"""Model backends: uint8 face crops in, ages and gender probabilities out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from agegender.preprocessing import Preprocessing, normalize


@dataclass
class FacePredictions:
    """Per-face outputs of a model, aligned with the input batch."""

    age: np.ndarray
    prob_female: np.ndarray


class ModelBackend(Protocol):
    preprocessing: Preprocessing

    def predict(self, faces: np.ndarray) -> FacePredictions:
        """faces: N×size×size×C uint8, already passed through `resize_face`."""
        ...


class TorchCheckpointBackend:
    """Runs a training checkpoint with PyTorch (needs the `train` extra)."""

    def __init__(self, model, preprocessing: Preprocessing):
        self.model = model.eval()
        self.preprocessing = preprocessing

    @classmethod
    def from_checkpoint(cls, path: Path) -> TorchCheckpointBackend:
        from agegender.training.checkpoint import load_model

        model, config = load_model(path)
        return cls(model, config.preprocessing)

    def predict(self, faces: np.ndarray) -> FacePredictions:
        import torch

        with torch.inference_mode():
            inputs = torch.from_numpy(normalize(faces, self.preprocessing))
            gender_logit, age = self.model(inputs)
        return FacePredictions(age=age.numpy().astype(np.float32),
                               prob_female=torch.sigmoid(gender_logit).numpy().astype(np.float32))


def load_backend(path: Path | str) -> ModelBackend:
    """Pick the backend from the model file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file")
    if path.suffix in (".pt", ".pth", ".ckpt"):
        return TorchCheckpointBackend.from_checkpoint(path)
    raise ValueError(f"{path}: unsupported model format {path.suffix!r} "
                     "(expected a .pt checkpoint)")


def predict_in_batches(backend: ModelBackend, faces: np.ndarray,
                       batch_size: int = 256) -> FacePredictions:
    """Run `backend` over many faces without holding all float inputs in memory at once."""
    ages, probs = [], []
    for start in range(0, len(faces), batch_size):
        batch = backend.predict(np.asarray(faces[start:start + batch_size]))
        ages.append(batch.age)
        probs.append(batch.prob_female)
    if not ages:
        return FacePredictions(np.zeros(0, np.float32), np.zeros(0, np.float32))
    return FacePredictions(np.concatenate(ages), np.concatenate(probs))
