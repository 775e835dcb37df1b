"""On-disk cache of decoded, resized faces, memory-mapped on later runs.

Decoding every JPEG every epoch is the bottleneck on a small CPU, so each image is decoded
and resized once per (dataset, preprocessing, selection) and read back as a uint8 memmap.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from agegender.data.base import FaceSource
from agegender.faces.canonical import crop_of_face_image
from agegender.faces.detector import FaceDetector
from agegender.imageio import ImageReadError
from agegender.preprocessing import Preprocessing

log = logging.getLogger("agegender")

CACHE_FORMAT_VERSION = 1
"""Bump when the stored layout or the resize step changes, so old caches are not reused."""
ALIGNMENT_VERSION = 5
"""Bump when the template, the detector or the choice of face changes; part of the key of
aligned caches."""


@dataclass(frozen=True)
class CachedFaces:
    """Row i of `images` is the face of the i-th requested record, and row i of `coverage`
    says where that crop shows the image (255) and where its alignment reached past it (0);
    `coverage` is None without alignment, where every crop is the whole image.

    Rows listed in `errors` (row → reason) failed to decode, are all zeros, and must be
    left out by callers; `valid` is the mask of the usable rows.
    """

    images: np.ndarray
    coverage: np.ndarray | None
    errors: dict[int, str]

    @property
    def valid(self) -> np.ndarray:
        mask = np.ones(len(self.images), dtype=bool)
        mask[list(self.errors)] = False
        return mask


def default_cache_dir() -> Path:
    """`$AGEGENDER_CACHE`, else `~/.cache/agegender`."""
    return Path(os.environ.get("AGEGENDER_CACHE") or Path.home() / ".cache" / "agegender")


def cache_key(source: FaceSource, indices: Sequence[int], prep: Preprocessing) -> str:
    """sha256 identifying the data, the preprocessing that shapes the pixels, and the selection."""
    identity = [CACHE_FORMAT_VERSION, source.fingerprint, prep.size, prep.grayscale,
                [source.records[index].source for index in indices]]
    if prep.align:
        identity.append(["aligned", ALIGNMENT_VERSION])
    return hashlib.sha256(json.dumps(identity).encode()).hexdigest()


def load_faces(source: FaceSource, indices: Sequence[int], prep: Preprocessing,
               cache_dir: Path | str | None = None, progress: bool = True) -> CachedFaces:
    """Decoded, resized faces of `source.records[i] for i in indices`, from the cache if built.

    A cache is written under a temporary name and renamed into place, so an interrupted
    build never leaves a cache that a later run would trust.
    """
    indices = [int(index) for index in indices]
    shape = (len(indices), prep.size, prep.size, prep.channels)
    if not indices:
        coverage = np.zeros(shape[:3], np.uint8) if prep.align else None
        return CachedFaces(np.zeros(shape, dtype=np.uint8), coverage, {})
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = cache_key(source, indices, prep)
    images_path = directory / f"{key}.npy"
    errors_path = directory / f"{key}.errors.json"
    coverage_path = directory / f"{key}.coverage.npy" if prep.align else None
    needed = [images_path, errors_path] + ([coverage_path] if coverage_path else [])
    if not all(path.is_file() for path in needed):
        directory.mkdir(parents=True, exist_ok=True)
        _build(source, indices, prep, shape, images_path, errors_path, coverage_path, progress)
    errors = {int(row): reason for row, reason in json.loads(errors_path.read_text()).items()}
    coverage = np.load(coverage_path, mmap_mode="r") if coverage_path else None
    return CachedFaces(np.load(images_path, mmap_mode="r"), coverage, errors)


def _build(source: FaceSource, indices: list[int], prep: Preprocessing, shape: tuple,
           images_path: Path, errors_path: Path, coverage_path: Path | None,
           progress: bool) -> None:
    """Decode the requested images into a new cache; errors first, coverage (aligned caches)
    next, images renamed in last."""
    started = time.perf_counter()
    rows_by_index: dict[int, list[int]] = {}
    for row, index in enumerate(indices):
        rows_by_index.setdefault(index, []).append(row)
    temporary_images = _temporary_beside(images_path)
    temporary_errors = _temporary_beside(errors_path)
    temporary_coverage = _temporary_beside(coverage_path) if coverage_path else None
    try:
        images = np.lib.format.open_memmap(temporary_images, mode="w+", dtype=np.uint8,
                                           shape=shape)
        coverage = (np.lib.format.open_memmap(temporary_coverage, mode="w+", dtype=np.uint8,
                                              shape=shape[:3]) if temporary_coverage else None)
        errors, unaligned = _decode_into(source, rows_by_index, prep, images, coverage,
                                         progress)
        images.flush()
        if coverage is not None:
            coverage.flush()
        del images, coverage  # unmap before the rename
        temporary_errors.write_text(json.dumps(errors))
        os.replace(temporary_errors, errors_path)
        if temporary_coverage:
            os.replace(temporary_coverage, coverage_path)
        os.replace(temporary_images, images_path)
    except BaseException:
        for temporary in (temporary_images, temporary_errors, temporary_coverage):
            if temporary:
                temporary.unlink(missing_ok=True)
        raise
    if unaligned:
        log.warning("no face detected in %d of %d images; they were resized whole", unaligned,
                    len(rows_by_index))
    log.info("cached %d faces (%d unreadable) in %.1fs at %s", len(indices), len(errors),
             time.perf_counter() - started, images_path)


def _decode_into(source: FaceSource, rows_by_index: dict[int, list[int]], prep: Preprocessing,
                 images: np.ndarray, coverage: np.ndarray | None, progress: bool
                 ) -> tuple[dict[int, str], int]:
    """Crop every image into its rows of `images` (and `coverage`); the unreadable rows with
    their reasons, and how many images had no face to align."""
    errors: dict[int, str] = {}
    detector = FaceDetector() if prep.align else None
    unaligned = 0
    decoded = source.iter_images(rows_by_index)
    for index, face in tqdm(decoded, total=len(rows_by_index), desc="caching faces",
                            unit="img", disable=not progress):
        if isinstance(face, ImageReadError):
            errors.update((row, face.reason) for row in rows_by_index[index])
            continue
        crop, covered, detection = crop_of_face_image(face, prep, detector)
        unaligned += detector is not None and detection is None
        images[rows_by_index[index]] = crop
        if coverage is not None:
            coverage[rows_by_index[index]] = covered
    return errors, unaligned


def _temporary_beside(path: Path) -> Path:
    """A fresh, uniquely named file in path's directory, so concurrent builds never collide."""
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.", suffix=".tmp")
    os.close(handle)
    return Path(name)
