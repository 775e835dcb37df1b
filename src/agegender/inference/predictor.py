"""Predict age and gender for image files, one result row per face."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from agegender.data.records import GENDER_NAMES
from agegender.imageio import ImageReadError, decode_image
from agegender.inference.backends import ModelBackend, load_backend
from agegender.preprocessing import resize_face


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


class Predictor:
    """Runs a model on whole images taken as face crops (aligned crops such as UTKFace's)."""

    def __init__(self, model: Path | str | ModelBackend, batch_size: int = 32):
        self.backend = load_backend(model) if isinstance(model, (str, Path)) else model
        self.batch_size = batch_size

    def predict_faces(self, faces: list[np.ndarray]) -> list[tuple[float, str, float]]:
        """(age, gender, probability of that gender) for each RGB face crop."""
        prep = self.backend.preprocessing
        batch = np.stack([resize_face(face, prep) for face in faces])
        out = self.backend.predict(batch)
        results = []
        for age, prob_female in zip(out.age, out.prob_female, strict=True):
            female = bool(prob_female >= 0.5)
            results.append((round(float(age), 1), GENDER_NAMES[int(female)],
                            round(float(prob_female if female else 1 - prob_female), 4)))
        return results

    def predict_paths(self, paths: Iterable[Path]) -> Iterator[FaceResult]:
        """Yield rows in input order; an unreadable file yields an error row and the run goes on."""
        pending: list[tuple[Path, np.ndarray]] = []
        for path in paths:
            try:
                pending.append((path, decode_image(path, source=str(path))))
            except ImageReadError as error:
                yield from self._flush(pending)
                pending = []
                yield FaceResult(file=str(path), error=error.reason)
                continue
            if len(pending) >= self.batch_size:
                yield from self._flush(pending)
                pending = []
        yield from self._flush(pending)

    def _flush(self, pending: list[tuple[Path, np.ndarray]]) -> Iterator[FaceResult]:
        if not pending:
            return
        predictions = self.predict_faces([image for _, image in pending])
        for (path, image), (age, gender, prob) in zip(pending, predictions, strict=True):
            yield FaceResult(file=str(path), face=0, x=0, y=0, w=image.shape[1], h=image.shape[0],
                             age=age, gender=gender, gender_prob=prob)
