"""Decoded-face cache: built once, memory-mapped after; keyed on data, preprocessing, selection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agegender.data import load_faces
from agegender.data.utkface import UTKFaceFolder
from agegender.preprocessing import Preprocessing

PREP = Preprocessing(size=8)
BROKEN_NAME = "33_1_0_20170117000000000.jpg.chip.jpg"


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def source(tmp_path: Path) -> UTKFaceFolder:
    """Four 20×20 faces of different colours and one broken JPEG."""
    root = tmp_path / "UTKFace"
    root.mkdir()
    for number in range(4):
        colour = (60 * number, 200 - 40 * number, 90)
        Image.new("RGB", (20, 20), colour).save(root / f"{20 + number}_0_1_2017{number}.jpg")
    (root / BROKEN_NAME).write_bytes(b"GIF89a but not really")
    return UTKFaceFolder(root)


def test_rows_follow_requested_indices_and_broken_image_is_an_error(
    source: UTKFaceFolder, cache_dir: Path
) -> None:
    broken = next(i for i, record in enumerate(source.records) if record.name == BROKEN_NAME)
    indices = [3, broken, 0, 3]

    faces = load_faces(source, indices, PREP, cache_dir=cache_dir, progress=False)

    assert faces.images.shape == (4, 8, 8, 3) and faces.images.dtype == np.uint8
    assert list(faces.errors) == [1] and "corrupt image" in faces.errors[1]
    assert faces.valid.tolist() == [True, False, True, True]
    assert not faces.images[1].any()
    assert np.array_equal(faces.images[0], faces.images[3])
    assert not np.array_equal(faces.images[0], faces.images[2])


def test_second_load_reads_the_cache_without_decoding(
    source: UTKFaceFolder, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    indices = list(range(len(source.records)))
    first = load_faces(source, indices, PREP, cache_dir=cache_dir, progress=False)

    def no_decoding(*_args, **_kwargs):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr("agegender.data.files.decode_image", no_decoding)
    second = load_faces(source, indices, PREP, cache_dir=cache_dir, progress=False)

    assert isinstance(second.images, np.memmap)
    assert np.array_equal(first.images, second.images)
    assert second.errors == first.errors
    assert first.coverage is None and second.coverage is None  # crops taken whole
    assert sorted(path.name.split(".", 1)[1] for path in cache_dir.iterdir()) == [
        "errors.json", "npy"]


@pytest.mark.parametrize("other", [Preprocessing(size=12), Preprocessing(size=8, grayscale=True)])
def test_different_preprocessing_builds_a_different_cache(
    source: UTKFaceFolder, cache_dir: Path, other: Preprocessing
) -> None:
    indices = [0, 1]
    load_faces(source, indices, PREP, cache_dir=cache_dir, progress=False)

    faces = load_faces(source, indices, other, cache_dir=cache_dir, progress=False)

    assert faces.images.shape == (2, other.size, other.size, other.channels)
    assert len(list(cache_dir.glob("*.npy"))) == 2


def test_different_selection_builds_a_different_cache(
    source: UTKFaceFolder, cache_dir: Path
) -> None:
    load_faces(source, [0, 1], PREP, cache_dir=cache_dir, progress=False)
    load_faces(source, [1, 0], PREP, cache_dir=cache_dir, progress=False)

    assert len(list(cache_dir.glob("*.npy"))) == 2


def test_failed_build_leaves_no_cache(
    source: UTKFaceFolder, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*_args):
        raise KeyboardInterrupt

    monkeypatch.setattr("agegender.data.cache.crop_of_face_image", crash)

    with pytest.raises(KeyboardInterrupt):
        load_faces(source, [0, 1], PREP, cache_dir=cache_dir, progress=False)

    assert list(cache_dir.iterdir()) == []


def test_default_cache_dir_from_environment(
    source: UTKFaceFolder, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGEGENDER_CACHE", str(cache_dir))

    load_faces(source, [0], PREP, progress=False)

    assert len(list(cache_dir.glob("*.errors.json"))) == 1
