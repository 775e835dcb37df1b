"""Decoded, labelled, split faces ready for training or evaluation."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from agegender.data.cache import load_faces
from agegender.data.sources import open_source
from agegender.data.splits import assign_splits, find_split_file
from agegender.preprocessing import Preprocessing

log = logging.getLogger("agegender")


@dataclass
class LabelledFaces:
    """Row-aligned images and labels; missing labels are NaN and masked out downstream.

    `coverage` (as `CachedFaces.coverage`) is None where every crop is covered whole.
    `age_low`..`age_high` is an age known only as a range of whole years (NaN where the age
    is exact or unknown). `dataset` numbers the source of each row (an index into
    `dataset_names`) and `person` who the face is within its dataset (-1: not known), so
    sampling can weight sources and people.
    """

    images: np.ndarray
    age: np.ndarray
    gender: np.ndarray
    race: np.ndarray
    sources: list[str]
    split: np.ndarray
    coverage: np.ndarray | None = None
    age_low: np.ndarray | None = None
    age_high: np.ndarray | None = None
    dataset: np.ndarray | None = None
    person: np.ndarray | None = None
    dataset_names: list[str] = field(default_factory=lambda: ["data"])
    split_origin: str = "given"
    """Where the splits come from: a split file, the dataset's own, or drawn here."""

    def __post_init__(self) -> None:
        count = len(self.split)
        if self.age_low is None or self.age_high is None:
            self.age_low = self.age_high = np.full(count, np.nan, np.float32)
        if self.dataset is None:
            self.dataset = np.zeros(count, np.int64)
        if self.person is None:
            self.person = np.full(count, -1, np.int64)

    def rows(self, split: str) -> np.ndarray:
        """Row indices of one split (`all` for every row)."""
        return np.arange(len(self.split)) if split == "all" else np.flatnonzero(self.split == split)


def concatenate(parts: list[LabelledFaces]) -> LabelledFaces:
    """Several datasets as one, rows in order; `dataset` tells them apart (their splits stay
    their own, so no person crosses from one split to another). The images are read into
    memory."""
    if len(parts) == 1:
        return parts[0]
    coverage = None
    if any(part.coverage is not None for part in parts):
        coverage = np.concatenate([
            np.full(part.images.shape[:3], 255, np.uint8) if part.coverage is None
            else np.asarray(part.coverage) for part in parts])
    names = [name for part in parts for name in part.dataset_names]
    offsets = np.cumsum([0] + [len(part.dataset_names) for part in parts])[:-1]
    person_offsets = np.cumsum([0] + [int(part.person.max(initial=-1)) + 1
                                      for part in parts])[:-1]
    return LabelledFaces(
        images=np.concatenate([np.asarray(part.images) for part in parts]),
        age=np.concatenate([part.age for part in parts]),
        gender=np.concatenate([part.gender for part in parts]),
        race=np.concatenate([part.race for part in parts]),
        sources=[source for part in parts for source in part.sources],
        split=np.concatenate([part.split for part in parts]),
        coverage=coverage,
        age_low=np.concatenate([part.age_low for part in parts]),
        age_high=np.concatenate([part.age_high for part in parts]),
        dataset=np.concatenate([part.dataset + offset for part, offset in zip(parts, offsets,
                                                                             strict=True)]),
        person=np.concatenate([np.where(part.person >= 0, part.person + offset, -1)
                               for part, offset in zip(parts, person_offsets, strict=True)]),
        dataset_names=names,
    )


TEST_OR_ALL = "test-or-all"
"""The split evaluation scores when none is asked for: the test split of data that comes with
one (a split file, or every record's own), every image of data that does not (a labelled
folder without a split column): a split drawn here would score a tenth of the data."""

DRAWN = "drawn at random (seeded, stratified by gender and age)"


def split_origin(records: list, split_file: Path | None) -> str:
    """Where `assign_splits` takes the records' splits from, in words."""
    if split_file:
        return f"split file {split_file}"
    if records and all(record.split is not None for record in records):
        return "the dataset's own"
    return DRAWN


def label_array(values: list) -> np.ndarray:
    """Labels as float32, a missing one (None) as NaN, the masked form every loss expects."""
    return np.array([np.nan if v is None else v for v in values], dtype=np.float32)


def load_labelled_faces(data_path: Path | str, prep: Preprocessing,
                        split_file: Path | None = None, limit: int | None = None,
                        seed: int = 0, cache_dir: Path | None = None,
                        progress: bool = True, split: str | None = None) -> LabelledFaces:
    """Open any supported dataset, split it, optionally subsample, and decode through the cache.

    `limit` draws at most that many records from `split` (a split name, `all`, or
    `TEST_OR_ALL`; None: from every split). Without a limit every record is decoded (one
    cache for the whole dataset) and the caller selects its split's rows.
    """
    source = open_source(data_path)
    split_file = split_file or find_split_file(Path(data_path))
    if split_file:
        log.info("using split file %s", split_file)
    origin = split_origin(source.records, split_file)
    splits = np.array(assign_splits(source.records, split_file=split_file, seed=seed))
    indices = np.flatnonzero(splits != "unassigned")
    if limit is not None and split is not None:
        wanted = resolve_split(split, origin)
        if wanted != "all":
            indices = indices[splits[indices] == wanted]
    if limit is not None and limit < len(indices):
        indices = np.sort(np.random.default_rng(seed).choice(indices, size=limit, replace=False))
    cached = load_faces(source, indices.tolist(), prep, cache_dir=cache_dir, progress=progress)
    for row, reason in cached.errors.items():
        log.warning("skipping unreadable image %s: %s", source.records[indices[row]].source, reason)
    keep = np.flatnonzero(cached.valid)
    whole = len(keep) == len(indices)
    images = cached.images if whole else np.asarray(cached.images[keep])
    coverage = (cached.coverage if whole or cached.coverage is None
                else np.asarray(cached.coverage[keep]))
    records = [source.records[i] for i in indices[keep]]
    ranges = [record.age_range or (None, None) for record in records]
    people = {name: index for index, name in enumerate(
        sorted({record.person for record in records if record.person is not None}))}
    return LabelledFaces(
        images=images,
        age=label_array([r.age for r in records]),
        gender=label_array([r.gender for r in records]),
        race=label_array([r.race for r in records]),
        sources=[r.source for r in records],
        split=splits[indices[keep]],
        coverage=coverage,
        age_low=label_array([low for low, _ in ranges]),
        age_high=label_array([high for _, high in ranges]),
        person=np.array([people.get(r.person, -1) for r in records], np.int64),
        dataset_names=[Path(data_path).name],
        split_origin=origin,
    )


def resolve_split(split: str, origin: str) -> str:
    """The split name `split` stands for (`TEST_OR_ALL` by the data's split origin)."""
    if split != TEST_OR_ALL:
        return split
    return "all" if origin == DRAWN else "test"
