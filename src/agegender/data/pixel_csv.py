"""Faces stored as rows of grayscale pixel values in a CSV (the Kaggle "age_gender.csv" layout)."""

from __future__ import annotations

import csv
import math
import warnings
from collections.abc import Iterable, Iterator
from functools import cached_property
from pathlib import Path

import numpy as np

from agegender.data.base import FaceSource
from agegender.data.files import fingerprint_files
from agegender.data.records import FaceRecord
from agegender.data.utkface import parse_labels
from agegender.imageio import ImageReadError

COLUMNS = ("age", "ethnicity", "gender", "img_name", "pixels")
"""Ethnicity uses the UTKFace race codes, gender the UTKFace 0 = male, 1 = female."""


class PixelCSV(FaceSource):
    """A CSV with columns `age,ethnicity,gender,img_name,pixels`; pixels are a square gray image.

    Parsed eagerly: the pixels of ~23k 48×48 faces are ~50 MB as uint8, and parsing once up
    front lets malformed rows be reported as skipped instead of failing mid-training.
    A record's source is `<csv path>#<img_name>`, or `#<line number>` when img_name is empty.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        records: list[FaceRecord] = []
        skipped: list[tuple[str, str]] = []
        self._faces: list[np.ndarray] = []
        with self.path.open(newline="", encoding="utf-8-sig") as file:
            reader = csv.DictReader(file)
            missing = [column for column in COLUMNS if column not in (reader.fieldnames or ())]
            if missing:
                raise ValueError(f"{self.path}: missing column(s) {', '.join(missing)}")
            try:
                for row in reader:
                    source = f"{self.path}#{row['img_name'] or reader.line_num}"
                    try:
                        face, labels = _parse_row(row)
                    except ValueError as error:
                        skipped.append((source, str(error)))
                    else:
                        records.append(FaceRecord(source, *labels))
                        self._faces.append(face)
            except csv.Error as error:
                raise ValueError(f"{self.path}, line {reader.line_num}: {error}") from error
        super().__init__(records, skipped)

    @cached_property
    def fingerprint(self) -> str:
        return fingerprint_files([self.path])

    def iter_images(
        self, indices: Iterable[int]
    ) -> Iterator[tuple[int, np.ndarray | ImageReadError]]:
        for index in dict.fromkeys(indices):
            yield index, np.repeat(self._faces[index][:, :, None], 3, axis=2)


def _parse_row(row: dict) -> tuple[np.ndarray, tuple[int, int, int]]:
    """(side×side uint8 face, (age, gender, race)) or ValueError naming what is malformed."""
    missing = [column for column in COLUMNS if row[column] is None]
    if missing:
        raise ValueError(f"missing column(s) {', '.join(missing)}")
    if None in row:
        raise ValueError(f"{len(row[None])} field(s) more than the header")
    labels = parse_labels(row["age"], row["gender"], row["ethnicity"])
    return _parse_pixels(row["pixels"]), labels


def _parse_pixels(text: str) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # older numpy only warns on bad text
        try:
            pixels = np.fromstring(text, dtype=np.int64, sep=" ")
        except (ValueError, DeprecationWarning) as error:
            raise ValueError("pixels are not all integers") from error
    side = math.isqrt(pixels.size)
    if pixels.size == 0 or side * side != pixels.size:
        raise ValueError(f"{pixels.size} pixels do not form a square image")
    if pixels.min() < 0 or pixels.max() > 255:
        raise ValueError("pixel values outside 0–255")
    return pixels.astype(np.uint8).reshape(side, side)
