"""Model backends: uint8 face crops in, ages and gender probabilities out.

The ONNX backend needs only numpy and onnxruntime, so inference runs without the torch stack.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Protocol

import numpy as np

from agegender.data.records import GENDER_NAMES
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

    def require_feature_map(self) -> None:
        """Raise, saying what to do, if the file cannot give class activation maps."""
        if not self.has_feature_map:
            raise ValueError(f"{self.path}: this ONNX model has no feature-map output; re-export "
                             "it with `agegender export CHECKPOINT.pt` (models with linear heads "
                             "over pooled features), or explain the .pt checkpoint (Grad-CAM)")

    def predict(self, faces: np.ndarray) -> FacePredictions:
        outputs = self._run(faces, ONNX_OUTPUTS)
        return FacePredictions(*(output.astype(np.float32) for output in outputs))

    def predict_with_feature_map(self, faces: np.ndarray) -> tuple[FacePredictions, np.ndarray]:
        """`predict`'s outputs and the last feature map of each face (N×F×h×w float32)."""
        self.require_feature_map()
        *outputs, feature_map = self._run(faces, (*ONNX_OUTPUTS, ONNX_FEATURE_OUTPUT))
        return (FacePredictions(*(output.astype(np.float32) for output in outputs)),
                feature_map.astype(np.float32))

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
    batches = [backend.predict(np.asarray(faces[start:start + batch_size]))
               for start in range(0, len(faces), batch_size)]
    columns = [field.name for field in fields(FacePredictions)]
    return FacePredictions(**{
        name: np.concatenate([getattr(batch, name) for batch in batches])
        if batches else np.zeros(0, np.float32) for name in columns})
