"""Predict age and gender for image files, one result row per face."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
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
class FoundFace:
    """One face to predict: its canonical crop and where it was found (box x, y, w, h)."""

    crop: np.ndarray
    box: tuple[float, float, float, float]
    score: float | None


@dataclass
class ImageResult:
    """The outcome for one input image: its rows, and the decoded image when it was kept."""

    file: str
    rows: list[FaceResult]
    image: np.ndarray | None = None


@dataclass
class _Analysed:
    file: str
    faces: list[FoundFace] | ImageReadError
    image: np.ndarray | None


ImageInput = str | Path | np.ndarray


class Predictor:
    """Finds the faces in images and predicts each one's age (with an 80 % interval) and gender.

    With a model trained on aligned faces (`Preprocessing.align`), every image goes through the
    RetinaFace detector and each face is aligned to the template the model was trained on.
    A small image without a detected face is taken whole as a face crop, as in training.
    Models trained without alignment take every image whole.

    Thread-safe: it holds no per-call state, and onnxruntime sessions may be run concurrently.
    """

    def __init__(self, model: Path | str | ModelBackend | None = None, batch_size: int = 32,
                 detector: FaceDetector | None = None):
        if model is None:
            model = bundled_model_path()
        self.backend = load_backend(model) if isinstance(model, (str, Path)) else model
        self.batch_size = batch_size
        self.preprocessing = self.backend.preprocessing
        self.detector = detector or (FaceDetector() if self.preprocessing.align else None)

    def find_faces(self, image: np.ndarray) -> list[FoundFace]:
        """Canonical crops of the faces in an RGB uint8 image, largest first."""
        height, width = image.shape[:2]
        detections = self.detector.detect(image) if self.detector is not None else []
        if detections:
            return [FoundFace(canonical_crop(image, self.preprocessing, detection),
                              detection.box, detection.score) for detection in detections]
        if self.detector is None or max(height, width) <= CROP_FALLBACK_MAX_SIDE:
            return [FoundFace(canonical_crop(image, self.preprocessing, None),
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

    def predict(self, image: ImageInput, file: str | None = None) -> list[FaceResult]:
        """Rows for one image (a path, or an RGB uint8 array), one per face, largest first.

        A file that cannot be read gives one row with its `error`; so does an image in which
        no face is found (`NO_FACE`).
        """
        if isinstance(image, np.ndarray):
            analysed = _Analysed(file or "", self.find_faces(image), None)
        else:
            analysed = self._analyse(Path(image))
        return self._predict_batch([analysed])[0].rows

    def predict_paths(self, paths: Iterable[Path], workers: int = 1,
                      keep_images: bool = False) -> Iterator[ImageResult]:
        """One result per path, in input order; unreadable files give error rows, never stop.

        `workers` threads decode, detect and align ahead of the model (a bounded window, so
        memory does not grow with the number of paths); faces of several images share a batch.
        """
        pending: list[_Analysed] = []
        faces = 0
        for analysed in _ordered_map(lambda path: self._analyse(path, keep_images), paths,
                                     workers):
            pending.append(analysed)
            faces += len(analysed.faces) if isinstance(analysed.faces, list) else 0
            if faces >= self.batch_size or len(pending) >= self.batch_size:
                yield from self._predict_batch(pending)
                pending, faces = [], 0
        yield from self._predict_batch(pending)

    def _analyse(self, path: Path, keep_image: bool = False) -> _Analysed:
        try:
            image = decode_image(path, source=str(path))
        except ImageReadError as error:
            return _Analysed(str(path), error, None)
        return _Analysed(str(path), self.find_faces(image), image if keep_image else None)

    def _predict_batch(self, batch: list[_Analysed]) -> list[ImageResult]:
        """Predict every face of the batch's images in one model call; rows per image."""
        crops = [face.crop for item in batch if isinstance(item.faces, list)
                 for face in item.faces]
        predictions = iter(self.predict_crops(np.stack(crops)) if crops else [])
        results = []
        for item in batch:
            if isinstance(item.faces, ImageReadError):
                rows = [FaceResult(file=item.file, error=item.faces.reason)]
            elif not item.faces:
                rows = [FaceResult(file=item.file, error=NO_FACE)]
            else:
                rows = [FaceResult(file=item.file, face=index, x=round(face.box[0]),
                                   y=round(face.box[1]), w=round(face.box[2]),
                                   h=round(face.box[3]),
                                   det_score=None if face.score is None else round(face.score, 4),
                                   **next(predictions))
                        for index, face in enumerate(item.faces)]
            results.append(ImageResult(item.file, rows, item.image))
        return results


def _ordered_map(function: Callable[[Path], _Analysed], items: Iterable[Path],
                 workers: int) -> Iterator[_Analysed]:
    """`map(function, items)` on `workers` threads, in order, at most 4 × workers ahead."""
    if workers <= 1:
        yield from map(function, items)
        return
    with ThreadPoolExecutor(workers) as pool:
        window: deque[Future[_Analysed]] = deque()
        for item in items:
            window.append(pool.submit(function, item))
            if len(window) >= 4 * workers:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()


def _rounded(value: float) -> float | None:
    return round(float(value), 1) if np.isfinite(value) else None
