"""Helpers shared by the formats whose records are image files on disk."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from functools import cached_property
from pathlib import Path, PurePath

import numpy as np

from agegender.data.base import FaceSource
from agegender.imageio import IMAGE_SUFFIXES, ImageReadError, decode_image


def find_image_files(root: Path) -> list[Path]:
    """Image files under root, recursively, sorted; hidden ones (macOS `._x.jpg`) left out."""
    return sorted(path for path in root.rglob("*") if is_visible_image(path) and path.is_file())


def fingerprint_files(paths: Iterable[str | Path]) -> str:
    """sha256 over each file's absolute path, size and mtime: changes when any file changes."""
    digest = hashlib.sha256()
    for path in paths:
        try:
            stat = os.stat(path)
            state = f"{stat.st_size}\t{stat.st_mtime_ns}"
        except OSError as error:
            state = f"unreadable: {error.strerror}"
        digest.update(f"{os.path.abspath(path)}\t{state}\n".encode())
    return digest.hexdigest()


class ImageFileSource(FaceSource):
    """A source whose records' `source` is an image file path: decoding is one file per record."""

    @cached_property
    def fingerprint(self) -> str:
        return fingerprint_files(record.source for record in self.records)

    def iter_images(
        self, indices: Iterable[int]
    ) -> Iterator[tuple[int, np.ndarray | ImageReadError]]:
        for index in dict.fromkeys(indices):
            source = self.records[index].source
            try:
                yield index, decode_image(Path(source), source=source)
            except ImageReadError as error:
                yield index, error


def is_visible_image(path: PurePath) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
