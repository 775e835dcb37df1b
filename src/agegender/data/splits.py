"""Train/val/test assignment: a fixed split file when there is one, else a seeded stratified split.

A fixed split keeps figures from different runs comparable; stratifying by gender and age
decade keeps small groups (the very old, the very young) represented in every split.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from agegender.data.records import FaceRecord

log = logging.getLogger("agegender")

SPLIT_FILE = "split.csv"
SPLIT_NAMES = ("train", "val", "test")
UNASSIGNED = "unassigned"
"""Split of records that a split file does not list: callers leave them out."""


def find_split_file(data_path: Path | str) -> Path | None:
    """`split.csv` inside a data directory or beside it (where an archive unpacks), or beside
    an archive / CSV file; None if absent."""
    data_path = Path(data_path)
    places = [data_path, data_path.parent] if data_path.is_dir() else [data_path.parent]
    return next((p / SPLIT_FILE for p in places if (p / SPLIT_FILE).is_file()), None)


def assign_splits(records: Sequence[FaceRecord], split_file: Path | str | None = None,
                  seed: int = 0, fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> list[str]:
    """One split name per record, in record order.

    Priority: the split file (joined on `record.name`; unlisted records get "unassigned"),
    else the records' own splits when all have one, else a stratified split that is the
    same for the same records and seed, with each stratum's counts within ±1 of `fractions`.
    """
    if split_file is not None:
        return _splits_from_file(records, Path(split_file))
    own = sum(record.split is not None for record in records)
    if records and own == len(records):
        return [record.split for record in records]
    if own:
        log.warning("only %d of %d records have a split of their own; they are ignored and "
                    "all are split afresh", own, len(records))
    return _stratified_splits(records, seed, fractions)


def _splits_from_file(records: Sequence[FaceRecord], path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8-sig") as file:
        reader = csv.DictReader(file)
        if not {"file", "split"} <= set(reader.fieldnames or ()):
            raise ValueError(f"{path}: expected the columns file,split")
        split_by_name = {row["file"]: row["split"] for row in reader}
    splits = [split_by_name.get(record.name, UNASSIGNED) for record in records]
    unassigned = splits.count(UNASSIGNED)
    if unassigned:
        log.warning("%d of %d records are not listed in %s; they are left out as %r",
                    unassigned, len(records), path, UNASSIGNED)
    return splits


def _stratified_splits(records: Sequence[FaceRecord], seed: int,
                       fractions: Sequence[float]) -> list[str]:
    valid = len(fractions) == len(SPLIT_NAMES) and min(fractions) >= 0
    if not (valid and math.isclose(sum(fractions), 1.0)):
        raise ValueError(f"fractions {tuple(fractions)}: need 3 non-negative numbers summing to 1")
    strata: dict[tuple, list[int]] = {}
    for index, record in enumerate(records):
        strata.setdefault(_stratum(record), []).append(index)
    rng = np.random.default_rng(seed)
    splits = [""] * len(records)
    for members in strata.values():
        names = np.repeat(SPLIT_NAMES, _apportion(len(members), fractions, rng)).tolist()
        for index, name in zip(rng.permutation(members).tolist(), names, strict=True):
            splits[index] = name
    return splits


def _stratum(record: FaceRecord) -> tuple:
    """Gender × age decade (of the middle of `age_range` when the age is known as a range);
    a missing label is its own group (None) rather than guessed."""
    age = record.age
    if age is None and record.age_range is not None:
        age = sum(record.age_range) / 2
    decade = None if age is None else int(age // 10)
    return record.gender, decade


def _apportion(total: int, fractions: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """Largest-remainder counts summing to total, each within 1 of total × fraction.

    Ties between equal remainders are broken at random so that no split is favoured
    systematically across many small strata.
    """
    exact = np.asarray(fractions, dtype=float) * total
    counts = np.floor(exact).astype(int)
    order = np.lexsort((rng.random(len(counts)), counts - exact))
    counts[order[: total - counts.sum()]] += 1
    return counts
