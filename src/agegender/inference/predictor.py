"""Predict age and gender for image files, one result row per face."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path

import numpy as np

from agegender.data.records import GENDER_NAMES
from agegender.faces.canonical import canonical_crop
from agegender.faces.detector import FaceDetector
from agegender.imageio import ImageReadError, decode_image
from agegender.inference.backends import ModelBackend, load_backend


@dataclass
class FaceResult:
    """One output row. `gender_prob` is the probability of the stated `gender`.

    A file that failed has `error` set and no face fields.
    """

    file: str
    face: int | None = None
    x: int | None = None
    y: int | None = None
    w: int | None = None
    h: int | None = None
    det_score: float | None = None
    age: float | None = None
    age_low: float | None = None
    age_high: float | None = None
    gender: str | None = None
    gender_prob: float | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


RESULT_COLUMNS = [f.name for f in fields(FaceResult)]


BUNDLED_MODEL = "agegender_mobilenet_v2.onnx"
"""The default model, shipped in `agegender.assets` (see MODEL_CARD.md)."""

CROP_FALLBACK_MAX_SIDE = 512
"""An image this small in which no face is detected is taken whole as a face crop."""

NO_FACE = "no face detected"


def bundled_model_path() -> Path:
    """Path of the bundled default model inside the installed package."""
    path = Path(str(resources.files("agegender.assets").joinpath(BUNDLED_MODEL)))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the bundled model is missing from this installation; "
                                "pass --model")
    return path


@dataclass(frozen=True)
class _Face:
    """One face to predict: its canonical crop and where it was found."""

    crop: np.ndarray
    box: tuple[float, float, float, float]
    score: float | None


class Predictor:
    """Finds the faces in images and predicts each one's age (with an 80 % interval) and gender.

    With a model trained on aligned faces (`Preprocessing.align`), every image goes through the
    RetinaFace detector and each face is aligned to the template the model was trained on.
    A small image without a detected face is taken whole as a face crop, as in training.
    Models trained without alignment take every image whole.
    """

    def __init__(self, model: Path | str | ModelBackend | None = None, batch_size: int = 32,
                 detector: FaceDetector | None = None):
        if model is None:
            model = bundled_model_path()
        self.backend = load_backend(model) if isinstance(model, (str, Path)) else model
        self.batch_size = batch_size
        self.preprocessing = self.backend.preprocessing
        self.detector = detector or (FaceDetector() if self.preprocessing.align else None)

    def find_faces(self, image: np.ndarray) -> list[_Face]:
        """Canonical crops of the faces in an RGB uint8 image, largest first."""
        height, width = image.shape[:2]
        detections = self.detector.detect(image) if self.detector is not None else []
        if detections:
            return [_Face(canonical_crop(image, self.preprocessing, detection), detection.box,
                          detection.score) for detection in detections]
        if self.detector is None or max(height, width) <= CROP_FALLBACK_MAX_SIDE:
            return [_Face(canonical_crop(image, self.preprocessing, None),
                          (0.0, 0.0, float(width), float(height)), None)]
        return []

    def predict_crops(self, crops: np.ndarray) -> list[dict]:
        """Age, interval, gender and its probability for N canonical crops (uint8)."""
        out = self.backend.predict(crops)
        results = []
        for age, low, high, prob_female in zip(out.age, out.age_low, out.age_high,
                                               out.prob_female, strict=True):
            female = bool(prob_female >= 0.5)
            results.append({
                "age": round(float(age), 1), "age_low": _rounded(low), "age_high": _rounded(high),
                "gender": GENDER_NAMES[int(female)],
                "gender_prob": round(float(prob_female if female else 1 - prob_female), 4)})
        return results

    def predict_image(self, image: np.ndarray, file: str = "") -> list[FaceResult]:
        """One row per face in `image` (largest first), or one row noting that none was found."""
        return list(self._rows([(file, image)]))

    def predict_paths(self, paths: Iterable[Path]) -> Iterator[FaceResult]:
        """Yield rows in input order; an unreadable file yields an error row and the run goes on."""
        pending: list[tuple[str, np.ndarray | ImageReadError]] = []
        for path in paths:
            try:
                pending.append((str(path), decode_image(path, source=str(path))))
            except ImageReadError as error:
                pending.append((str(path), error))
            if len(pending) >= self.batch_size:
                yield from self._rows(pending)
                pending = []
        yield from self._rows(pending)

    def _rows(self, images: list[tuple[str, np.ndarray | ImageReadError]]
              ) -> Iterator[FaceResult]:
        """Detect in each image, predict all their faces in one batch, yield rows in order."""
        found = [(file, image if isinstance(image, ImageReadError) else self.find_faces(image))
                 for file, image in images]
        crops = [face.crop for _, faces in found if isinstance(faces, list) for face in faces]
        predictions = iter(self.predict_crops(np.stack(crops)) if crops else [])
        for file, faces in found:
            if isinstance(faces, ImageReadError):
                yield FaceResult(file=file, error=faces.reason)
            elif not faces:
                yield FaceResult(file=file, error=NO_FACE)
            for index, face in enumerate(faces if isinstance(faces, list) else []):
                x, y, w, h = (round(value) for value in face.box)
                yield FaceResult(file=file, face=index, x=x, y=y, w=w, h=h,
                                 det_score=None if face.score is None else round(face.score, 4),
                                 **next(predictions))


def _rounded(value: float) -> float | None:
    return round(float(value), 1) if np.isfinite(value) else None
