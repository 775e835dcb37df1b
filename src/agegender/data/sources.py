"""Open any supported dataset from its path, recognising the format from what is on disk."""

from __future__ import annotations

import csv
import logging
import tarfile
from collections.abc import Callable
from pathlib import Path

from agegender.data.base import FaceSource
from agegender.data.celeba import ATTRIBUTES_FILE, CelebA
from agegender.data.class_folders import ClassFolders, gender_folders
from agegender.data.fairface import FairFace, is_fairface_labels
from agegender.data.labelled_folder import LABELS_FILE, LabelledFolder
from agegender.data.lfw import is_lfw_directory, open_lfw
from agegender.data.pixel_csv import PixelCSV
from agegender.data.utkface import UTKFaceArchive, UTKFaceFolder

log = logging.getLogger("agegender")

SKIPPED_SHOWN = 10
"""How many skipped entries the summary names before saying "and N more"."""


def open_source(path: Path | str, warn: bool = True) -> FaceSource:
    """Load the dataset at path; warn once about skipped entries (unless `warn` is False:
    the caller reports them).

    A directory with `list_attr_celeba.txt` → CelebA; with `male_names.txt` and
    `female_names.txt` → LFW; with `fairface_label_train.csv` or `fairface_label_val.csv` →
    FairFace; with `labels.csv` → labelled folder; with gender subfolders → class folders;
    any other directory → UTKFace. A tar archive beside the LFW name lists → LFW, any other
    → UTKFace archive. A FairFace label CSV → FairFace (that file's rows); another `.csv`
    → labelled folder when its header has a `file` column and no `pixels` column, else
    pixel CSV.
    Raises FileNotFoundError / ValueError naming the path when nothing usable is there.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    source = _source_type(path)(path)
    if not source.records:
        raise ValueError(f"{path}: no usable face images found"
                         + (f"; {skipped_summary(path, source)}" if source.skipped else ""))
    if source.skipped and warn:
        log.warning("%s: %s", path, skipped_summary(path, source))
    return source


def _source_type(path: Path) -> Callable[[Path], FaceSource]:
    if path.is_dir():
        return _directory_type(path)
    if tarfile.is_tarfile(path):
        return open_lfw if is_lfw_directory(path.parent) else UTKFaceArchive
    if path.suffix.lower() == ".csv":
        if is_fairface_labels(path):
            return FairFace
        return LabelledFolder if _is_labels_header(path) else PixelCSV
    raise ValueError(f"{path}: not a dataset (expected a directory, a tar archive or a .csv)")


def _directory_type(path: Path) -> Callable[[Path], FaceSource]:
    if (path / ATTRIBUTES_FILE).is_file():
        return CelebA
    if is_lfw_directory(path):
        return open_lfw
    if is_fairface_labels(path):
        return FairFace
    if (path / LABELS_FILE).is_file():
        return LabelledFolder
    return ClassFolders if gender_folders(path) else UTKFaceFolder


def _is_labels_header(path: Path) -> bool:
    """A CSV whose header names a `file` column and no `pixels` column (the pixel CSV's)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:
            header = next(csv.reader(file), [])
    except (UnicodeDecodeError, csv.Error):
        return False  # the pixel CSV loader says what is wrong with it
    return "file" in header and "pixels" not in header


def skipped_summary(path: Path, source: FaceSource) -> str:
    """One line naming the first skipped entries (relative to path) with their reasons."""
    shown = "; ".join(f"{entry.removeprefix(str(path)).lstrip(':/')} ({reason})"
                      for entry, reason in source.skipped[:SKIPPED_SHOWN])
    more = len(source.skipped) - SKIPPED_SHOWN
    return (f"skipped {len(source.skipped)} of {len(source.records) + len(source.skipped)} "
            f"entries: {shown}" + (f", and {more} more" if more > 0 else ""))
