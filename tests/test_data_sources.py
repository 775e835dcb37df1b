"""Pixel CSV, CelebA and class-folder loaders, and format auto-detection by open_source."""

from __future__ import annotations

import csv
import logging
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agegender.data import FaceSource, open_source
from agegender.data.celeba import CelebA
from agegender.data.class_folders import ClassFolders
from agegender.data.pixel_csv import PixelCSV
from agegender.data.records import FEMALE, MALE
from agegender.data.utkface import UTKFaceArchive, UTKFaceFolder

ATTRIBUTE_NAMES = ["5_o_Clock_Shadow", "Male", "Young"]


def write_face(path: Path, shade: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), (shade, shade, shade)).save(path, "JPEG")


def pixels(side: int, start: int = 0) -> str:
    return " ".join(str((start + i) % 256) for i in range(side * side))


@pytest.fixture
def pixel_csv(tmp_path: Path) -> Path:
    """Two good 4×4 rows (one without img_name) and one row of each malformed kind."""
    path = tmp_path / "age_gender.csv"
    rows = [
        ["age", "ethnicity", "gender", "img_name", "pixels"],
        ["25", "2", "1", "a.jpg.chip.jpg", pixels(4)],
        ["70", "0", "0", "", pixels(4, start=100)],
        ["30", "1", "0", "bad_count.jpg", pixels(4)[:-4]],
        ["old", "1", "0", "bad_age.jpg", pixels(4)],
        ["30", "1", "0", "bad_pixels.jpg", pixels(4).replace("5", "x")],
        ["30", "9", "0", "bad_race.jpg", pixels(4)],
        ["30", "1", "0", "bright.jpg", pixels(4).replace("15", "300")],
        ["30", "1"],
    ]
    with path.open("w", newline="") as file:
        csv.writer(file).writerows(rows)
    return path


@pytest.fixture
def celeba_dir(tmp_path: Path) -> Path:
    """img_align_celeba/ with 3 images; attributes for 5 (one missing file, one bad line)."""
    root = tmp_path / "celeba"
    for name in ("000001.jpg", "000002.jpg", "000003.jpg"):
        write_face(root / "img_align_celeba" / name)
    (root / "list_attr_celeba.txt").write_text(
        "5\n" + " ".join(ATTRIBUTE_NAMES) + "\n"
        "000001.jpg -1  1  1\n"
        "000002.jpg  1 -1 -1\n"
        "000003.jpg  1  1\n"
        "000004.jpg -1  1  1\n"
        "000005.jpg -1  0  1\n")
    return root


@pytest.fixture
def class_dir(tmp_path: Path) -> Path:
    root = tmp_path / "faces"
    write_face(root / "Men" / "a.jpg")
    write_face(root / "Men" / "sub" / "b.png")
    write_face(root / "women" / "c.jpg")
    write_face(root / "loose.jpg")
    (root / "other").mkdir()
    return root


@pytest.fixture
def utkface_dir(tmp_path: Path) -> Path:
    root = tmp_path / "UTKFace"
    write_face(root / "25_0_1_20170116174525125.jpg.chip.jpg")
    write_face(root / "39_1_20170116174525125.jpg.chip.jpg")
    return root


def test_pixel_csv_labels_sources_and_skipped_rows(pixel_csv: Path) -> None:
    source = PixelCSV(pixel_csv)

    assert [(r.source, r.age, r.gender, r.race) for r in source.records] == [
        (f"{pixel_csv}#a.jpg.chip.jpg", 25, FEMALE, 2),
        (f"{pixel_csv}#3", 70, MALE, 0),
    ]
    reasons = dict(source.skipped)
    assert reasons[f"{pixel_csv}#bad_count.jpg"] == "15 pixels do not form a square image"
    assert reasons[f"{pixel_csv}#bad_age.jpg"] == "age 'old' is not a non-negative integer"
    assert reasons[f"{pixel_csv}#bad_pixels.jpg"] == "pixels are not all integers"
    assert reasons[f"{pixel_csv}#bad_race.jpg"] == "race 9 outside 0–4"
    assert reasons[f"{pixel_csv}#bright.jpg"] == "pixel values outside 0–255"
    assert reasons[f"{pixel_csv}#9"] == "missing column(s) gender, img_name, pixels"


def test_pixel_csv_images_are_gray_replicated_to_rgb(pixel_csv: Path) -> None:
    faces = dict(PixelCSV(pixel_csv).iter_images([1, 0]))

    expected = np.arange(100, 116, dtype=np.uint8).reshape(4, 4)
    assert faces[1].shape == (4, 4, 3) and faces[1].dtype == np.uint8
    assert all(np.array_equal(faces[1][:, :, channel], expected) for channel in range(3))


def test_pixel_csv_without_required_columns_names_them(tmp_path: Path) -> None:
    path = tmp_path / "faces.csv"
    path.write_text("age,gender,pixels\n25,0,1 2 3 4\n")

    with pytest.raises(ValueError, match=r"faces\.csv: missing column\(s\) ethnicity, img_name"):
        PixelCSV(path)


def test_celeba_gender_from_male_attribute(celeba_dir: Path) -> None:
    source = CelebA(celeba_dir)

    image_dir = celeba_dir / "img_align_celeba"
    assert [(r.source, r.age, r.gender, r.split) for r in source.records] == [
        (str(image_dir / "000001.jpg"), None, MALE, None),
        (str(image_dir / "000002.jpg"), None, FEMALE, None),
    ]
    attributes = celeba_dir / "list_attr_celeba.txt"
    assert source.skipped == [
        (f"{attributes}:5", "2 values for 3 attributes"),
        (f"{attributes}:7", "Male value '0' is not 1 or -1"),
        (str(image_dir / "000004.jpg"), "in list_attr_celeba.txt but no such file"),
    ]
    assert all(face.shape == (16, 16, 3) for _, face in source.iter_images([0, 1]))


def test_celeba_split_from_partition_file(celeba_dir: Path) -> None:
    (celeba_dir / "list_eval_partition.txt").write_text("000001.jpg 2\n000002.jpg 1\n")

    assert [record.split for record in CelebA(celeba_dir).records] == ["test", "val"]


def test_celeba_malformed_partition_line_names_file_and_line(celeba_dir: Path) -> None:
    (celeba_dir / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg 7\n")

    with pytest.raises(ValueError, match=r"list_eval_partition\.txt:2: expected"):
        CelebA(celeba_dir)


def test_class_folders_recursive_case_insensitive(class_dir: Path) -> None:
    source = ClassFolders(class_dir)

    assert [(r.source, r.gender, r.age) for r in source.records] == [
        (str(class_dir / "Men" / "a.jpg"), MALE, None),
        (str(class_dir / "Men" / "sub" / "b.png"), MALE, None),
        (str(class_dir / "women" / "c.jpg"), FEMALE, None),
    ]
    assert [Path(entry).name for entry, _ in source.skipped] == ["loose.jpg", "other"]


@pytest.mark.parametrize(("fixture", "expected_type"), [
    ("pixel_csv", PixelCSV),
    ("celeba_dir", CelebA),
    ("class_dir", ClassFolders),
    ("utkface_dir", UTKFaceFolder),
])
def test_open_source_detects_format(
    fixture: str, expected_type: type[FaceSource], request: pytest.FixtureRequest
) -> None:
    assert type(open_source(request.getfixturevalue(fixture))) is expected_type


def test_open_source_detects_tar_archive(utkface_dir: Path, tmp_path: Path) -> None:
    archive_path = tmp_path / "faces.tgz"
    with tarfile.open(archive_path, "w:gz") as archive:
        archive.add(utkface_dir, arcname="UTKFace")

    assert type(open_source(archive_path)) is UTKFaceArchive


def test_open_source_missing_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere: no such file"):
        open_source(tmp_path / "nowhere")


def test_open_source_unrecognised_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")

    with pytest.raises(ValueError, match=r"notes\.txt: not a dataset"):
        open_source(path)


def test_open_source_without_usable_records(tmp_path: Path) -> None:
    write_face(tmp_path / "holiday.jpg")

    with pytest.raises(ValueError, match=r"no usable face images.*holiday\.jpg \(missing field"):
        open_source(tmp_path)


def test_open_source_summarises_skipped_in_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_face(tmp_path / "25_0_1_20170116174525125.jpg.chip.jpg")
    bad_names = [f"{age}_0_1_20170116174525125.jpg.chip.jpg" for age in range(200, 212)]
    for name in bad_names:
        write_face(tmp_path / name)

    with caplog.at_level(logging.WARNING, logger="agegender"):
        source = open_source(tmp_path)

    assert len(source.records) == 1
    [warning] = caplog.records
    message = warning.getMessage()
    assert "skipped 12 of 13 entries" in message
    assert f"{bad_names[0]} (age 200 outside 0–116)" in message
    assert bad_names[9] in message and bad_names[10] not in message
    assert message.endswith("and 2 more")
