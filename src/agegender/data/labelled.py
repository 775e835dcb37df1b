"""Decoded, labelled, split faces ready for training or evaluation."""

from __future__ import annotations

import logging
from dataclasses import dataclass
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
    `coverage` (as `CachedFaces.coverage`) is None where every crop is covered whole."""

    images: np.ndarray
    age: np.ndarray
    gender: np.ndarray
    race: np.ndarray
    sources: list[str]
    split: np.ndarray
    coverage: np.ndarray | None = None

    def rows(self, split: str) -> np.ndarray:
        """Row indices of one split (`all` for every row)."""
        return np.arange(len(self.split)) if split == "all" else np.flatnonzero(self.split == split)


def label_array(values: list) -> np.ndarray:
    """Labels as float32, a missing one (None) as NaN, the masked form every loss expects."""
    return np.array([np.nan if v is None else v for v in values], dtype=np.float32)


def load_labelled_faces(data_path: Path | str, prep: Preprocessing,
                        split_file: Path | None = None, limit: int | None = None,
                        seed: int = 0, cache_dir: Path | None = None,
                        progress: bool = True) -> LabelledFaces:
    """Open any supported dataset, split it, optionally subsample, and decode through the cache."""
    source = open_source(data_path)
    split_file = split_file or find_split_file(Path(data_path))
    if split_file:
        log.info("using split file %s", split_file)
    splits = np.array(assign_splits(source.records, split_file=split_file, seed=seed))
    indices = np.flatnonzero(splits != "unassigned")
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
    return LabelledFaces(
        images=images,
        age=label_array([r.age for r in records]),
        gender=label_array([r.gender for r in records]),
        race=label_array([r.race for r in records]),
        sources=[r.source for r in records],
        split=splits[indices[keep]],
        coverage=coverage,
    )
