"""Predict age and gender for image files, one result row per face."""

from __future__ import annotations

import dataclasses
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np
from PIL import Image

from agegender.data.records import GENDER_NAMES, GENDER_THRESHOLD
from agegender.faces.align import crop_transform
from agegender.faces.canonical import aligned_crop, canonical_crop, crop_of_face_image
from agegender.faces.detector import Detection, DetectorConfig, FaceDetector
from agegender.imageio import ImageReadError, ReducedImage, as_rgb, decode_image, decode_reduced
from agegender.inference.backends import (
    FacePredictions,
    ModelBackend,
    load_backend,
    predict_in_batches,
    predict_with_age_distribution,
)
from agegender.inference.inputs import expand_inputs
from agegender.inference.video import VideoReadError, is_video, iter_frames
from agegender.limits import check
from agegender.precision import model_file, resolve_precision

T = TypeVar("T")


@dataclass
class FaceResult:
    """One output row. `gender_prob` is the probability of the stated `gender`.

    A file that failed has `error` set and no face fields. `frame` (index) and `time` (seconds)
    are set for video frames only. `face` numbers an image's faces from 0, largest first. The
    box (x, y, w, h) lies within the image; `landmarks` are the detector's 5 points (x, y):
    the eyes, the nose tip and the mouth corners as they appear in the image (left to right),
    None for an image taken whole. Values are at full precision; the CSV and JSON writers
    round them (`agegender.inference.output.ROUNDING`, the schema in docs/output-schema.md).
    """

    file: str
    frame: int | None = None
    time: float | None = None
    face: int | None = None
    x: float | None = None
    y: float | None = None
    w: float | None = None
    h: float | None = None
    det_score: float | None = None
    landmarks: list[list[float]] | None = None
    age: float | None = None
    age_low: float | None = None
    age_high: float | None = None
    gender: str | None = None
    gender_prob: float | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        """The row as a dict with its own copy of the landmarks (`dataclasses.asdict` takes
        several times as long, once per face of every video frame)."""
        row = {name: getattr(self, name) for name in _FIELD_NAMES}
        if self.landmarks is not None:
            row["landmarks"] = [list(point) for point in self.landmarks]
        return row


RESULT_COLUMNS = [f.name for f in fields(FaceResult)]
_FIELD_NAMES = tuple(RESULT_COLUMNS)


BUNDLED_MODEL = "agegender_mobilenet_v2.onnx"
"""The default model, shipped in `agegender.assets` (see MODEL_CARD.md)."""

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
    """One face to predict: its canonical crop and where it was found (box x, y, w, h; the 5
    detected points, None for an image taken whole)."""

    crop: np.ndarray
    box: tuple[float, float, float, float]
    score: float | None
    landmarks: np.ndarray | None = None


@dataclass
class ImageResult:
    """The outcome for one input image or video frame: its rows, and the decoded image when it
    was kept. With `distributions` asked of `predict_paths`, `age_log_probs` holds each face
    row's age distribution (faces × 101 log-probabilities) and `appearance` each face's unit
    feature vector, or None (`predict_with_age_distribution`)."""

    file: str
    rows: list[FaceResult]
    image: np.ndarray | None = None
    frame: int | None = None
    age_log_probs: np.ndarray | None = None
    appearance: np.ndarray | None = None


@dataclass
class WorkItem:
    """One image to analyse: a still to decode (`image` None), a decoded video frame, or the
    error that stopped a video. `name` is the rows' `file` when it is not the path (a live
    source's URL)."""

    path: Path
    image: np.ndarray | None = None
    frame: int | None = None
    time: float | None = None
    error: VideoReadError | None = None
    name: str | None = None


@dataclass
class _Analysed:
    file: str
    faces: list[FoundFace] | ImageReadError | VideoReadError
    image: np.ndarray | None
    frame: int | None = None
    time: float | None = None


ImageInput = str | Path | np.ndarray | Image.Image
"""What `Predictor.predict` takes: a path, a numpy array or a PIL image (see `as_rgb`)."""

STDIN = Path("-")
"""The path argument that means standard input (`agegender predict -`)."""


@dataclass(frozen=True)
class FaceFilter:
    """Which detected faces to report: at most `max_faces` (the largest; None: all), each at
    least `min_face` pixels wide and high within the image, with a detector score of at least
    `min_score` (None: the detector's own threshold, `DetectorConfig.score_threshold`)."""

    max_faces: int | None = None
    min_face: float = 0
    min_score: float | None = None

    def __post_init__(self) -> None:
        check("max_faces", self.max_faces)
        check("min_face", self.min_face)
        check("min_score", self.min_score)

    def apply(self, faces: list[FoundFace]) -> list[FoundFace]:
        """The faces kept, largest first as the detector gives them."""
        kept = [face for face in faces
                if min(face.box[2], face.box[3]) >= self.min_face
                and (self.min_score is None or (face.score or 0.0) >= self.min_score)]
        return kept if self.max_faces is None else kept[:self.max_faces]


class Predictor:
    """Finds the faces in images and predicts each one's age (with an 80 % interval) and gender.

    With a model trained on aligned faces (`Preprocessing.align`), every image goes through the
    RetinaFace detector and each face is aligned to the template the model was trained on. An
    image in which no face is found gets one row saying so (`NO_FACE`), whatever its size: no
    face is made up. `faces` (a `FaceFilter`) keeps the largest, the large enough or the surely
    detected ones.

    Crops of one face each can be taken as such, only when asked:
    - `whole_image`: each image is one face (a crop that is not aligned): the detected face at
      its centre, aligned, or the whole image when none is detected, as training and
      evaluation take a dataset's crops (one row per image, no filter);
    - `aligned`: each image is a face crop already aligned like the training data (a face
      dataset's crops, such as UTKFace's): no detection, mapped onto the template by the fixed
      transform of that crop style (`aligned_crop`).
    Models trained without alignment take every image whole: they know no other input.

    Thread-safe: it holds no per-call state, and onnxruntime sessions may be run concurrently.
    """

    def __init__(self, model: Path | str | ModelBackend | None = None, batch_size: int = 32,
                 detector: FaceDetector | None = None, detector_threads: int | None = None,
                 aligned: bool = False, whole_image: bool = False,
                 faces: FaceFilter | None = None, precision: str | None = None,
                 reduced_decoding: bool = True, detector_config: DetectorConfig | None = None):
        """`detector_threads`: onnxruntime threads of the default detector; None (automatic)
        uses all cores for one image at a time and one thread per worker in `predict_paths`
        with several workers, so that each worker detects on its own core instead of all of
        them contending for one shared pool (on 2 cores, 600 mixed images took 39.9 s instead
        of 44.2 s).

        `precision`: "fp32" runs the float model, "int8" its INT8 copy (`<name>.int8.onnx`
        beside it; see `agegender.precision`); None is `DEFAULT_PRECISION`, falling back to
        fp32 for a model without an INT8 copy. The detector runs in float either way.
        `reduced_decoding`: image files are decoded at the scale detection needs (large JPEGs
        at 1/2, 1/4 or 1/8 scale), and each face is cropped from those pixels when they are
        enough for its crop, else from the full image.
        `detector_config`: the settings of the default detector (`DetectorConfig`; None: its
        defaults)."""
        check("batch_size", batch_size)
        if aligned and whole_image:
            raise ValueError("aligned and whole_image both say how to take a face crop; give "
                             "one")
        if model is None:
            model = bundled_model_path()
        self.precision = resolve_precision(model, precision)
        # The detector runs between model calls, so the model's threads should not spin.
        self.backend = (load_backend(model_file(model, self.precision), spinning=False)
                        if isinstance(model, (str, Path)) else model)
        self.reduced_decoding = reduced_decoding
        self.batch_size = batch_size
        self.preprocessing = self.backend.preprocessing
        self.aligned = aligned
        self.whole_image = whole_image or not self.preprocessing.align
        self.faces = faces or FaceFilter()
        self.detector = detector or (FaceDetector(detector_config, threads=detector_threads or 0)
                                     if self.preprocessing.align and not aligned else None)
        automatic = detector is None and detector_threads is None and self.detector is not None
        self._worker_detector = (_Lazy(lambda: FaceDetector(self.detector.config, threads=1))
                                 if automatic else None)

    def find_faces(self, image: np.ndarray, detector: FaceDetector | None = None
                   ) -> list[FoundFace]:
        """Canonical crops of the faces in an RGB uint8 image, largest first (found by
        `detector`, by default the predictor's own), as the filter and the mode keep them."""
        height, width = image.shape[:2]
        if self.aligned:
            return [FoundFace(aligned_crop(image, self.preprocessing),
                              (0.0, 0.0, float(width), float(height)), None)]
        detector = detector or self.detector
        if self.whole_image:
            crop, _, subject = crop_of_face_image(image, self.preprocessing, detector)
            if subject is None:
                return [FoundFace(crop, (0.0, 0.0, float(width), float(height)), None)]
            return [_found(crop, subject, width, height)]
        if detector is None:
            return []
        faces = [_found(canonical_crop(image, self.preprocessing, detection), detection,
                        width, height) for detection in detector.detect(image)]
        return self.faces.apply(faces)

    def find_faces_reduced(self, image: ReducedImage, detector: FaceDetector | None = None
                           ) -> list[FoundFace]:
        """`find_faces` of an image decoded at a reduced scale: detection on the reduced
        pixels, boxes and points in full-resolution pixels, each crop from the reduced pixels
        where a crop pixel spans at least one of them, else from the full image."""
        detector = detector or self.detector
        if image.scale == 1.0 or detector is None or self.aligned or self.whole_image:
            return self.find_faces(image.full(), detector)
        width, height = image.full_size
        reduced_of: dict[int, Detection] = {}
        uncropped = []
        for reduced in detector.detect(image.pixels):
            full = _scaled(reduced, image.scale)
            uncropped.append(_found(_NO_CROP, full, width, height))
            reduced_of[id(uncropped[-1])] = reduced
        faces = []
        for face in self.faces.apply(uncropped):  # filtered before any full decode
            reduced = reduced_of[id(face)]
            enough = _crop_scale(reduced.landmarks, self.preprocessing.size) <= 1.0
            crop = (canonical_crop(image.pixels, self.preprocessing, reduced) if enough
                    else canonical_crop(image.full(), self.preprocessing,
                                        _scaled(reduced, image.scale)))
            faces.append(dataclasses.replace(face, crop=crop))
        return faces

    def predict_crops(self, crops: np.ndarray) -> list[dict]:
        """Age, interval, gender and its probability for N canonical crops (uint8), at full
        precision, in model calls of at most `batch_size` crops."""
        return _prediction_dicts(predict_in_batches(self.backend, crops, self.batch_size))

    def predict_crops_with_distribution(self, crops: np.ndarray
                                        ) -> tuple[list[dict], np.ndarray, np.ndarray | None]:
        """`predict_crops`' dicts, each crop's age distribution (N×101 log-probabilities), the
        evidence `agegender.tracking` combines over a person's faces, and each crop's
        appearance (unit feature vectors, or None), which tracking matches faces by."""
        out, log_probs, appearance = predict_with_age_distribution(self.backend, crops,
                                                                   self.batch_size)
        return _prediction_dicts(out), log_probs, appearance


    def predict(self, image: ImageInput, file: str | None = None, bgr: bool = False
                ) -> list[FaceResult]:
        """Rows for one image: one per face, largest first; one `NO_FACE` row when no face is
        found. The image is a path (`str` or `Path`), a PIL image, or a numpy array (uint8, or
        float in 0–1 or 0–255; grayscale H×W, RGB H×W×3, RGBA H×W×4; BGR(A) with `bgr`, as
        OpenCV gives), named `file` in the rows.

        Raises `ImageReadError` naming the input when it cannot be read: `MissingImageError`
        (also a `FileNotFoundError`) for a missing file, `NotAnImageError`,
        `CorruptImageError`, `ImageTooLargeError` (all in `agegender.imageio`).
        """
        analysed = self._analyse_input(image, file, bgr)
        if isinstance(analysed.faces, ImageReadError):
            raise analysed.faces
        return self._predict_analysed([analysed])[0].rows

    def predict_batch(self, images: Sequence[ImageInput],
                      files: Sequence[str | None] | None = None,
                      bgr: bool = False) -> list[list[FaceResult]]:
        """Rows for each image (as `predict` takes them), in order: one per face, largest
        first, at full precision.

        For batch use, an input that cannot be read gives one row with its `error` instead of
        raising; so does an image in which no face is found (`NO_FACE`). `files` names the
        arrays (default ""); a path is named by itself. The faces of all images go through the
        model together, `batch_size` at a time. Every image is decoded before the model runs:
        for many files, `predict_paths` streams.
        """
        names = [None] * len(images) if files is None else files
        analysed = [self._analyse_input(image, name, bgr)
                    for image, name in zip(images, names, strict=True)]
        return [result.rows for result in self._predict_analysed(analysed)]

    def predict_paths(self, paths: Iterable[Path | str], workers: int = 1,
                      keep_images: bool = False, every: int = 1, distributions: bool = False
                      ) -> Iterator[ImageResult]:
        """One result per image (per sampled frame of a video: every `every`-th), in input
        order; unreadable files give error rows and never stop the run. A folder stands for its
        images and videos (searched recursively); `-` is standard input; globs are not expanded
        here (`agegender.inference.inputs.expand_inputs` does). `distributions`: each result
        also carries its faces' age distributions (`ImageResult.age_log_probs`).

        `workers` threads decode, detect and align ahead of the model (a bounded window, so
        memory does not grow with the number of paths); faces of several images share a batch.
        """
        check("every", every)
        return self.predict_items(_items((Path(path) for path in paths), every), workers,
                                  keep_images, distributions)

    def predict_items(self, items: Iterable[WorkItem], workers: int = 1, keep_images: bool = False,
                      distributions: bool = False) -> Iterator[ImageResult]:
        """`predict_paths` over items already listed (stills, decoded frames, errors)."""
        check("workers", workers)
        pending: list[_Analysed] = []
        faces = 0
        detector = self.detector_for(workers)
        for analysed in _ordered_map(
                lambda item: self._analyse_item(item, keep_images, detector), items, workers):
            pending.append(analysed)
            faces += len(analysed.faces) if isinstance(analysed.faces, list) else 0
            if faces >= self.batch_size or len(pending) >= self.batch_size:
                yield from self._predict_analysed(pending, distributions)
                pending, faces = [], 0
        yield from self._predict_analysed(pending, distributions)

    def detector_for(self, workers: int) -> FaceDetector | None:
        """The detector `predict_paths` uses with this many worker threads."""
        if workers > 1 and self._worker_detector is not None:
            return self._worker_detector.get()
        return self.detector

    def _analyse_item(self, item: WorkItem, keep_image: bool,
                      detector: FaceDetector | None = None) -> _Analysed:
        file = item.name or str(item.path)
        if item.error is not None:
            return _Analysed(file, item.error, None)
        if item.image is not None:
            return _Analysed(file, self.find_faces(item.image, detector),
                             item.image if keep_image else None, item.frame, item.time)
        data, source = ((sys.stdin.buffer.read(), "standard input") if item.path == STDIN
                        else (item.path, file))
        try:
            faces, image, _ = self.faces_in_file(data, source, keep_image, detector)
        except ImageReadError as error:
            return _Analysed(file, error, None)
        return _Analysed(file, faces, image)

    def faces_in_file(self, data: bytes | Path, source: str, keep_image: bool = False,
                      detector: FaceDetector | None = None
                      ) -> tuple[list[FoundFace], np.ndarray | None, tuple[int, int]]:
        """The faces in an image file's content (`find_faces`), the decoded image when
        `keep_image` (else None) and its (width, height). Decoded at the scale detection needs
        unless the image is kept or `reduced_decoding` is off. Raises `ImageReadError`."""
        detector = detector or self.detector
        if keep_image or not self.reduced_decoding or detector is None:
            image = decode_image(data, source=source)
            return (self.find_faces(image, detector), image if keep_image else None,
                    (image.shape[1], image.shape[0]))
        reduced = decode_reduced(data, detector.config.min_side, source=source)
        return self.find_faces_reduced(reduced, detector), None, reduced.full_size

    def _analyse_input(self, image: ImageInput, file: str | None, bgr: bool) -> _Analysed:
        if isinstance(image, str | Path):
            return self._analyse_item(WorkItem(Path(image)), keep_image=False)
        try:
            array = as_rgb(image, source=file or "image", bgr=bgr)
        except ImageReadError as error:
            return _Analysed(file or "", error, None)
        return _Analysed(file or "", self.find_faces(array), None)

    def _predict_analysed(self, batch: list[_Analysed], distributions: bool = False
                          ) -> list[ImageResult]:
        """The one batching path (`predict_batch`, `predict_paths`): every face of the batch's
        images through `predict_crops` (or `predict_crops_with_distribution`); rows per
        image."""
        crops = [face.crop for item in batch if isinstance(item.faces, list)
                 for face in item.faces]
        log_probs = appearance = None
        if not crops:
            predicted: list[dict] = []
        elif distributions:
            predicted, log_probs, appearance = self.predict_crops_with_distribution(
                np.stack(crops))
        else:
            predicted = self.predict_crops(np.stack(crops))
        predictions = iter(predicted)
        results, start = [], 0
        for item in batch:
            count = len(item.faces) if isinstance(item.faces, list) else 0
            results.append(ImageResult(
                item.file, _rows(item, predictions), item.image, item.frame,
                None if log_probs is None else log_probs[start:start + count],
                None if appearance is None else appearance[start:start + count]))
            start += count
        return results


def _prediction_dicts(out: FacePredictions) -> list[dict]:
    """Age, interval, gender and its probability per face, at full precision."""
    results = []
    for age, low, high, prob_female in zip(out.age, out.age_low, out.age_high,
                                           out.prob_female, strict=True):
        female = bool(prob_female >= GENDER_THRESHOLD)
        results.append({
            "age": float(age), "age_low": _finite(low), "age_high": _finite(high),
            "gender": GENDER_NAMES[int(female)],
            "gender_prob": float(prob_female if female else 1 - prob_female)})
    return results


_NO_CROP = np.zeros((0, 0, 3), dtype=np.uint8)
"""The crop of a face not cropped yet (while the filter decides which faces to crop)."""


def _scaled(detection: Detection, scale: float) -> Detection:
    """`detection` found in an image reduced by `scale`, in the full image's pixels."""
    return Detection(tuple(value * scale for value in detection.box), detection.score,
                     detection.landmarks * scale)


def _crop_scale(landmarks: np.ndarray, size: int) -> float:
    """Crop pixels per image pixel of the canonical crop of the face with these points: at
    most 1, the image holds enough pixels for the crop."""
    return float(np.hypot(*crop_transform(landmarks, size)[:, 0]))


def _found(crop: np.ndarray, detection: Detection, width: int, height: int) -> FoundFace:
    """A detected face, its box clipped to the image (a face at the edge reaches past it);
    its points are kept as detected."""
    x, y, w, h = detection.box
    left, top = min(max(x, 0.0), width), min(max(y, 0.0), height)
    right, bottom = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
    return FoundFace(crop, (float(left), float(top), float(right - left), float(bottom - top)),
                     detection.score, detection.landmarks)


def _rows(item: _Analysed, predictions: Iterator[dict]) -> list[FaceResult]:
    """The rows of one analysed image, taking its faces' predictions from `predictions`."""
    where = {"file": item.file, "frame": item.frame, "time": item.time}
    if isinstance(item.faces, ImageReadError | VideoReadError):
        return [FaceResult(**where, error=item.faces.reason)]
    if not item.faces:
        return [FaceResult(**where, error=NO_FACE)]
    return face_rows(item.faces, predictions, **where)


def face_rows(faces: Sequence[FoundFace], predictions: Iterable[dict], **where
              ) -> list[FaceResult]:
    """One row per found face, with its prediction (`predict_crops`' dicts, taken in order:
    `predictions` may be an iterator over several images' faces, of which this takes as many
    as there are `faces`) and `where` (file, frame, time) on every row."""
    return [FaceResult(**where, face=index, x=face.box[0], y=face.box[1], w=face.box[2],
                       h=face.box[3], det_score=face.score,
                       landmarks=None if face.landmarks is None else
                       [[float(x), float(y)] for x, y in face.landmarks], **prediction)
            for index, (face, prediction) in enumerate(zip(faces, predictions, strict=False))]


class _Lazy(Generic[T]):
    """A value built on first use, once, even when several threads ask at the same time."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._value: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        with self._lock:
            if self._value is None:
                self._value = self._build()
            return self._value


def _items(paths: Iterable[Path], every: int) -> Iterator[WorkItem]:
    """Stills as they are; videos as their sampled frames, then their error if decoding failed;
    a folder's images and videos (searched recursively, as `agegender predict` does)."""
    for path in paths:
        if path.is_dir():
            yield from _items(_folder_files(path), every)
            continue
        if not is_video(path):
            yield WorkItem(path)
            continue
        try:
            for frame in iter_frames(path, every):
                yield WorkItem(path, frame.image, frame.index, frame.time)
        except VideoReadError as error:
            yield WorkItem(path, error=error)


def _folder_files(folder: Path) -> list[Path]:
    return [item.path for item in expand_inputs([str(folder)])[0]]


def _ordered_map(function: Callable[[WorkItem], _Analysed], items: Iterable[WorkItem],
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


def _finite(value: np.floating) -> float | None:
    return float(value) if np.isfinite(value) else None
