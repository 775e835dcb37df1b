"""Model backends: uint8 face crops in, ages and gender probabilities out.

The ONNX backend needs only numpy and onnxruntime, so inference runs without the torch stack.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path
from typing import Protocol

import numpy as np

from agegender.data.records import GENDER_NAMES
from agegender.inference.cam import LinearHeads, age_log_distribution
from agegender.onnx_session import available_cores, cpu_session
from agegender.preprocessing import Preprocessing, normalize

# The contract between `agegender export` and OnnxBackend: graph names and metadata_props keys.
ONNX_INPUT = "image"
ONNX_OUTPUTS = ("age", "age_low", "age_high", "prob_female")
ONNX_FEATURE_OUTPUT = "feature_map"  # optional: N×F×h×w, the last map before the linear heads
ONNX_FORMAT_VERSION = "2"
META_FORMAT = "agegender.format_version"
META_VERSION = "agegender.version"
META_PREPROCESSING = "agegender.preprocessing"  # Preprocessing.to_dict() as JSON
META_ARCHITECTURE = "agegender.architecture"
META_PRESET = "agegender.preset"
META_LABELS = "agegender.labels"  # JSON: gender names by label, meaning of each output
META_HEADS = "agegender.heads"  # JSON: `inference.cam.LinearHeads`, with the feature output


@dataclass
class FacePredictions:
    """Per-face outputs of a model, aligned with the input batch.

    `age_low`..`age_high` is the 80 % interval; NaN for models that predict a single age.
    """

    age: np.ndarray
    age_low: np.ndarray
    age_high: np.ndarray
    prob_female: np.ndarray


class ModelBackend(Protocol):
    preprocessing: Preprocessing

    def predict(self, faces: np.ndarray) -> FacePredictions:
        """faces: N×size×size×C uint8, already passed through `resize_face`."""
        ...


class TorchCheckpointBackend:
    """Runs a training checkpoint with PyTorch (needs the `train` extra).

    `deployed` is a `models.deploy.DeployedModel`: the same wrapper `agegender export` puts in
    the ONNX graph, so both backends give the same numbers.
    """

    def __init__(self, deployed, preprocessing: Preprocessing):
        self.model = deployed.eval()
        self.preprocessing = preprocessing

    @classmethod
    def from_checkpoint(cls, path: Path) -> TorchCheckpointBackend:
        from agegender.models.checkpoint import load_checkpoint

        loaded = load_checkpoint(path)
        return cls(loaded.deployed(), loaded.preprocessing)

    def predict(self, faces: np.ndarray) -> FacePredictions:
        import torch

        with torch.inference_mode():
            outputs = self.model(torch.from_numpy(normalize(faces, self.preprocessing)))
        return FacePredictions(*(output.numpy().astype(np.float32) for output in outputs))


class OnnxBackend:
    """Runs an ONNX model written by `agegender export` with onnxruntime on the CPU.

    Everything it needs (preprocessing, label convention) is read from the .onnx file itself.
    """

    def __init__(self, path: Path | str, threads: int | None = None, spinning: bool = True):
        """`threads`: onnxruntime intra-op threads; default all cores available to this process.
        `spinning=False` lets the threads sleep right after a run: slightly slower alone, but
        faster when another session (the face detector) runs in between."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such model file")
        try:
            self.session = cpu_session(path, threads or available_cores(), spinning)
        except Exception as error:  # onnxruntime raises its own untyped errors for bad files
            raise ValueError(f"{path}: not a readable ONNX model ({error})") from error
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        if META_PREPROCESSING not in self.metadata:
            raise ValueError(f"{path}: ONNX model without agegender metadata "
                             "(write it with `agegender export`)")
        if self.metadata.get(META_FORMAT) != ONNX_FORMAT_VERSION:
            raise ValueError(f"{path}: agegender ONNX format {self.metadata.get(META_FORMAT)!r}, "
                             f"this version reads {ONNX_FORMAT_VERSION!r}")
        if json.loads(self.metadata.get(META_LABELS, "{}")).get("gender") != list(GENDER_NAMES):
            raise ValueError(f"{path}: gender labels differ from {list(GENDER_NAMES)}")
        self.preprocessing = Preprocessing.from_dict(json.loads(self.metadata[META_PREPROCESSING]))
        self.path = path

    @property
    def has_feature_map(self) -> bool:
        """Whether the file exposes the feature map and head weights class activation maps
        need: `agegender export` adds them for models with linear heads over pooled features;
        files from older versions and other models lack them."""
        outputs = {output.name for output in self.session.get_outputs()}
        return ONNX_FEATURE_OUTPUT in outputs and META_HEADS in self.metadata

    @cached_property
    def linear_heads(self) -> LinearHeads:
        """The head weights stored in the file, read once (every frame of a tracked video
        needs them)."""
        self.require_feature_map()
        return LinearHeads.from_json(self.metadata[META_HEADS])

    def require_feature_map(self) -> None:
        """Raise, saying what to do, if the file cannot give class activation maps."""
        if not self.has_feature_map:
            raise ValueError(f"{self.path}: this ONNX model has no feature-map output; re-export "
                             "it with `agegender export CHECKPOINT.pt` (models with linear heads "
                             "over pooled features), or explain the .pt checkpoint (Grad-CAM)")

    def predict(self, faces: np.ndarray) -> FacePredictions:
        outputs = self._run(faces, ONNX_OUTPUTS)
        return FacePredictions(*(output.astype(np.float32, copy=False) for output in outputs))

    def predict_with_feature_map(self, faces: np.ndarray) -> tuple[FacePredictions, np.ndarray]:
        """`predict`'s outputs and the last feature map of each face (N×F×h×w float32)."""
        self.require_feature_map()
        *outputs, feature_map = self._run(faces, (*ONNX_OUTPUTS, ONNX_FEATURE_OUTPUT))
        return (FacePredictions(*(output.astype(np.float32, copy=False) for output in outputs)),
                feature_map.astype(np.float32, copy=False))

    def _run(self, faces: np.ndarray, names: tuple[str, ...]) -> list[np.ndarray]:
        prep = self.preprocessing
        if faces.shape[1:] != (prep.size, prep.size, prep.channels):
            raise ValueError(f"faces must be N×{prep.size}×{prep.size}×{prep.channels} uint8, "
                             f"got shape {faces.shape}")
        return self.session.run(list(names), {ONNX_INPUT: normalize(faces, prep)})


CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
"""Model files read as torch checkpoints; `.onnx` is read by onnxruntime."""


def load_backend(path: Path | str, spinning: bool = True, threads: int | None = None
                 ) -> ModelBackend:
    """Pick the backend from the model file (`spinning`, `threads`: see `OnnxBackend`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file")
    if path.suffix in CHECKPOINT_SUFFIXES:
        return TorchCheckpointBackend.from_checkpoint(path)
    if path.suffix == ".onnx":
        return OnnxBackend(path, threads=threads, spinning=spinning)
    raise ValueError(f"{path}: unsupported model format {path.suffix!r} "
                     "(expected a .pt checkpoint or an .onnx model)")


def predict_in_batches(backend: ModelBackend, faces: np.ndarray,
                       batch_size: int = 256) -> FacePredictions:
    """Run `backend` over many faces without holding all float inputs in memory at once."""
    return _concatenated([backend.predict(np.asarray(faces[start:start + batch_size]))
                          for start in range(0, len(faces), batch_size)])


def _concatenated(batches: list[FacePredictions]) -> FacePredictions:
    columns = [field.name for field in fields(FacePredictions)]
    return FacePredictions(**{
        name: np.concatenate([getattr(batch, name) for batch in batches])
        if batches else np.zeros(0, np.float32) for name in columns})


AGE_BINS = np.arange(101, dtype=np.float64)
"""The ages of a distribution model's bins: 0, 1, …, 99 and 100+ (`models.age_distribution`)."""

INTERVAL_Z = 1.2816
"""The standard normal's 90 % quantile: an 80 % interval spans 2 × 1.2816 standard deviations."""

NO_INTERVAL_SIGMA = 6.0
"""Years of spread assumed for a model that gives no interval (about the bundled model's
typical 80 % interval width, 15 years, over 2 × 1.28)."""


def predict_with_age_distribution(backend: ModelBackend, faces: np.ndarray,
                                  batch_size: int = 256
                                  ) -> tuple[FacePredictions, np.ndarray, np.ndarray | None]:
    """`predict_in_batches`' outputs, each face's age distribution as N×101 natural-log
    probabilities over `AGE_BINS`, and each face's appearance: its pooled features scaled to
    unit length (N×F; None for models without a feature map), which tell one face from
    another well enough to keep two crossing people's tracks apart.

    An ONNX model with its heads in the file (`has_feature_map`, the bundled one) gives the
    very distribution it reads its age and interval from: softmax((W·pooled + c) / T) at the
    reported temperature. Other models get a normal distribution with the reported age as
    its centre and a spread that matches the 80 % interval (`interval_log_distribution`).
    """
    if isinstance(backend, OnnxBackend) and backend.has_feature_map:
        heads = backend.linear_heads
        batches, distributions, appearances = [], [], []
        for start in range(0, len(faces), batch_size):
            outputs, feature_map = backend.predict_with_feature_map(
                np.asarray(faces[start:start + batch_size]))
            batches.append(outputs)
            pooled = feature_map.mean(axis=(2, 3), dtype=np.float64)
            distributions.append(age_log_distribution(pooled, heads))
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            appearances.append(pooled / np.maximum(norms, 1e-12))
        if batches:
            return (_concatenated(batches), np.concatenate(distributions).astype(np.float32),
                    np.concatenate(appearances).astype(np.float32))
    outputs = predict_in_batches(backend, faces, batch_size)
    return (outputs, interval_log_distribution(outputs.age, outputs.age_low, outputs.age_high),
            None)


def interval_log_distribution(age: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """N×101 log-probabilities of a normal distribution over `AGE_BINS` centred on `age`, its
    standard deviation that of an 80 % interval `low`..`high` (`NO_INTERVAL_SIGMA` where NaN)."""
    width = np.asarray(high, np.float64) - np.asarray(low, np.float64)
    sigma = np.where(np.isfinite(width), np.maximum(width, 1.0) / (2 * INTERVAL_Z),
                     NO_INTERVAL_SIGMA)
    z = (AGE_BINS - np.asarray(age, np.float64)[:, None]) / sigma[:, None]
    logits = -0.5 * z * z
    return (logits - _log_sum_exp(logits)).astype(np.float32)


def _log_sum_exp(logits: np.ndarray) -> np.ndarray:
    """log Σ exp over the last axis, kept as a column."""
    peak = logits.max(axis=-1, keepdims=True)
    return peak + np.log(np.exp(logits - peak).sum(axis=-1, keepdims=True))
