"""Open any supported dataset from its path, recognising the format from what is on disk."""

from __future__ import annotations

import logging
import tarfile
from pathlib import Path

from agegender.data.base import FaceSource
from agegender.data.celeba import ATTRIBUTES_FILE, CelebA
from agegender.data.class_folders import ClassFolders, gender_folders
from agegender.data.pixel_csv import PixelCSV
from agegender.data.utkface import UTKFaceArchive, UTKFaceFolder

log = logging.getLogger("agegender")

SKIPPED_SHOWN = 10
"""How many skipped entries the summary names before saying "and N more"."""


def open_source(path: Path | str) -> FaceSource:
    """Load the dataset at path; warn once about skipped entries.

    tar archive → UTKFace archive; `.csv` → pixel CSV; directory with `list_attr_celeba.txt`
    → CelebA; directory with gender subfolders → class folders; other directory → UTKFace.
    Raises FileNotFoundError / ValueError naming the path when nothing usable is there.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    source = _source_type(path)(path)
    if not source.records:
        raise ValueError(f"{path}: no usable face images found"
                         + (f"; {skipped_summary(path, source)}" if source.skipped else ""))
    if source.skipped:
        log.warning("%s: %s", path, skipped_summary(path, source))
    return source


def _source_type(path: Path) -> type[FaceSource]:
    if path.is_dir():
        if (path / ATTRIBUTES_FILE).is_file():
            return CelebA
        return ClassFolders if gender_folders(path) else UTKFaceFolder
    if tarfile.is_tarfile(path):
        return UTKFaceArchive
    if path.suffix.lower() == ".csv":
        return PixelCSV
    raise ValueError(f"{path}: not a dataset (expected a directory, a tar archive or a .csv)")


def skipped_summary(path: Path, source: FaceSource) -> str:
    """One line naming the first skipped entries (relative to path) with their reasons."""
    shown = "; ".join(f"{entry.removeprefix(str(path)).lstrip(':/')} ({reason})"
                      for entry, reason in source.skipped[:SKIPPED_SHOWN])
    more = len(source.skipped) - SKIPPED_SHOWN
    return (f"skipped {len(source.skipped)} of {len(source.records) + len(source.skipped)} "
            f"entries: {shown}" + (f", and {more} more" if more > 0 else ""))
