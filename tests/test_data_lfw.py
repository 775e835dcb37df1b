"""LFW deep-funneled: gender lists, persons, skipped entries and the split, on the real release
in ../shared (skipped when absent) and on a small fixture in the same layout."""

from __future__ import annotations

import csv
import os
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agegender.data import assign_splits, find_split_file, open_source
from agegender.data.lfw import LFWArchive, LFWFolder, open_lfw
from agegender.data.records import FEMALE, MALE

LFW = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw"
BOTH = {"Allison_Searing_0001.jpg", "Claudia_Coslovich_0001.jpg", "Elizabeth_Hill_0001.jpg",
        "Erika_Reyes_0001.jpg", "Tatiana_Shchegoleva_0001.jpg"}
NEITHER = {"Robert_Evans_0001.jpg", "Robert_Evans_0002.jpg", "Tara_Kirk_0001.jpg",
           "Yasser_Arafat_0005.jpg"}


@pytest.fixture(scope="module")
def lfw_dir() -> Path:
    path = Path(os.environ.get("AGEGENDER_LFW", LFW))
    if not (path / "lfw-deepfunneled.tgz").is_file():
        pytest.skip(f"LFW archive not found in {path}")
    return path


@pytest.fixture(scope="module")
def real(lfw_dir: Path) -> LFWArchive:
    source = open_source(lfw_dir)
    assert type(source) is LFWArchive
    return source


def test_real_records_genders_and_persons(real: LFWArchive, lfw_dir: Path) -> None:
    assert len(real.records) == 13_224
    assert Counter(record.gender for record in real.records) == {MALE: 10_263, FEMALE: 2_961}
    assert all(record.age is None and record.age_range is None for record in real.records)
    assert all(record.name.startswith(f"{record.person}_") for record in real.records)
    assert len({record.person for record in real.records}) == 5_743
    prefix = f"{lfw_dir / 'lfw-deepfunneled.tgz'}::lfw-deepfunneled/"
    assert all(record.source.startswith(prefix) for record in real.records)
    genders = {record.name: record.gender for record in real.records}
    assert genders["Aaron_Eckhart_0001.jpg"] == MALE
    assert genders["Zumrati_Juma_0001.jpg"] == FEMALE


def test_real_skipped_names_both_lists_and_neither(real: LFWArchive) -> None:
    reasons = {entry.rsplit("/", 1)[1]: reason for entry, reason in real.skipped}
    assert reasons == (
        dict.fromkeys(BOTH, "on both male_names.txt and female_names.txt")
        | dict.fromkeys(NEITHER, "on neither male_names.txt nor female_names.txt"))


def test_real_split_from_split_csv_by_person(real: LFWArchive, lfw_dir: Path) -> None:
    split_file = find_split_file(lfw_dir)
    assert split_file == lfw_dir / "split.csv"
    with split_file.open(newline="") as file:
        official = {row["file"]: row["split"] for row in csv.DictReader(file)}
    expected = Counter(official.values())
    assert expected == {"train": 9_951, "val": 1_271, "test": 2_011}
    expected.subtract(official[name] for name in BOTH | NEITHER)

    splits = assign_splits(real.records, split_file)

    assert Counter(splits) == expected
    people = {}
    for record, split in zip(real.records, splits, strict=True):
        people.setdefault(record.person, set()).add(split)
    assert all(len(found) == 1 for found in people.values())


def test_real_decodes_a_few_images(real: LFWArchive) -> None:
    faces = dict(real.iter_images([2, 0, 1]))  # the first members: a short read

    assert sorted(faces) == [0, 1, 2]
    assert all(face.shape == (250, 250, 3) and face.dtype == np.uint8 for face in faces.values())


def test_real_archive_path_itself_is_lfw(lfw_dir: Path) -> None:
    source = open_source(lfw_dir / "lfw-deepfunneled.tgz")

    assert type(source) is LFWArchive and len(source.records) == 13_224


def write_face(path: Path, shade: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (20, 20), (shade, shade, 255 - shade)).save(path, "JPEG")


@pytest.fixture
def lfw_copy(tmp_path: Path) -> Path:
    """lfw-deepfunneled/ in the release layout with one image of each kind; the male list
    ends lines in CRLF, the female list in LF."""
    root = tmp_path / "lfw"
    for shade, name in enumerate(["Ann_Lee_0001.jpg", "Ann_Lee_0002.jpg", "Bo_Ek_0001.jpg",
                                  "Cy_Do_0001.jpg", "Di_Fu_0001.jpg"]):
        write_face(root / "lfw-deepfunneled" / name.rsplit("_", 1)[0] / name, shade * 50)
    (root / "male_names.txt").write_bytes(b"Bo_Ek_0001.jpg\r\nCy_Do_0001.jpg\r\n")
    (root / "female_names.txt").write_bytes(
        b"Ann_Lee_0001.jpg\nAnn_Lee_0002.jpg\nCy_Do_0001.jpg\n\nEd_Gu_0003.jpg\n")
    return root


def pack(root: Path) -> Path:
    """The folder as the release's archive, beside the lists, and the folder removed."""
    archive_path = root / "lfw-deepfunneled.tgz"
    with tarfile.open(archive_path, "w:gz") as archive:
        archive.add(root / "lfw-deepfunneled", arcname="lfw-deepfunneled")
    for path in sorted((root / "lfw-deepfunneled").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    (root / "lfw-deepfunneled").rmdir()
    return archive_path


def summary(source) -> tuple[list, list]:
    records = sorted((r.name, r.gender, r.person) for r in source.records)
    skipped = sorted((entry.replace("::", "/").rsplit("/", 1)[1], reason)
                     for entry, reason in source.skipped)
    return records, skipped


EXPECTED_RECORDS = [
    ("Ann_Lee_0001.jpg", FEMALE, "Ann_Lee"),
    ("Ann_Lee_0002.jpg", FEMALE, "Ann_Lee"),
    ("Bo_Ek_0001.jpg", MALE, "Bo_Ek"),
]
EXPECTED_SKIPPED = [
    ("Cy_Do_0001.jpg", "on both male_names.txt and female_names.txt"),
    ("Di_Fu_0001.jpg", "on neither male_names.txt nor female_names.txt"),
    ("female_names.txt:5", "Ed_Gu_0003.jpg is listed but there is no such image"),
]


def test_unpacked_folder_labels_persons_and_skipped(lfw_copy: Path) -> None:
    source = open_source(lfw_copy)

    assert type(source) is LFWFolder
    assert summary(source) == (EXPECTED_RECORDS, EXPECTED_SKIPPED)
    assert source.records[0].source == str(lfw_copy / "lfw-deepfunneled/Ann_Lee/Ann_Lee_0001.jpg")
    assert all(face.shape == (20, 20, 3) for _, face in source.iter_images([0, 2]))


def test_archive_matches_folder_and_decodes_each_wanted_image(lfw_copy: Path) -> None:
    archive_path = pack(lfw_copy)
    source = open_source(lfw_copy)
    assert type(source) is LFWArchive and source.path == archive_path
    assert summary(source) == (EXPECTED_RECORDS, EXPECTED_SKIPPED)

    faces = dict(source.iter_images([2, 0, 1, 2]))  # one pass: see test_data_utkface

    assert sorted(faces) == [0, 1, 2]
    shades = {source.records[i].name: float(face[..., 0].mean()) for i, face in faces.items()}
    assert shades == pytest.approx({"Ann_Lee_0001.jpg": 0, "Ann_Lee_0002.jpg": 50,
                                    "Bo_Ek_0001.jpg": 100}, abs=3)


def test_archive_given_itself_finds_the_lists_beside_it(lfw_copy: Path) -> None:
    archive_path = pack(lfw_copy)

    assert summary(open_source(archive_path)) == (EXPECTED_RECORDS, EXPECTED_SKIPPED)


def test_lists_without_images_name_what_is_expected(lfw_copy: Path) -> None:
    pack(lfw_copy).unlink()

    with pytest.raises(ValueError, match=r"without the images: expected lfw-deepfunneled/"):
        open_lfw(lfw_copy)
