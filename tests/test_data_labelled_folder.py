"""Users' labelled folders: labels.csv columns, skipped rows, splits, and detection by
open_source beside the pixel CSV."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from agegender.data import assign_splits, open_source
from agegender.data.labelled_folder import LabelledFolder
from agegender.data.pixel_csv import PixelCSV
from agegender.data.records import FEMALE, MALE, FaceRecord


def write_face(path: Path, shade: int = 90) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (10, 14), (shade, 0, 0)).save(path, "PNG" if path.suffix == ".png" else "JPEG")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Images at two depths, and labels.csv with good rows then one bad row of each kind."""
    root = tmp_path / "mine"
    for name in ("a.jpg", "b.jpg", "c.jpg", "d.jpg", "x.jpg", "deep/er/e.png"):
        write_face(root / name)
    (root / "labels.csv").write_text(
        "file,age,age_min,age_max,gender,split,person,notes\n"
        "a.jpg,31.5,,,M,train,ann,ignored\n"          # 2
        "deep/er/e.png,,20,29,Female,val,,\n"         # 3
        "b.jpg,,,,0,TEST,bo,\n"                       # 4
        "c.jpg,7,,,,train,,\n"                        # 5
        "d.jpg,forty,,,f,,,\n"                        # 6
        "d.jpg,,30,,f,,,\n"                           # 7
        "d.jpg,,40,30,f,,,\n"                         # 8
        "d.jpg,,2.5,9,f,,,\n"                         # 9
        "d.jpg,30,20,39,f,,,\n"                       # 10
        "d.jpg,130,,,,,,\n"                           # 11
        "d.jpg,30,,,woman,,,\n"                       # 12
        "d.jpg,30,,,f,later,,\n"                      # 13
        "d.jpg,,,,,train,dee,\n"                      # 14
        "missing.jpg,30,,,f,,,\n"                     # 15
        "../x.jpg,30,,,f,,,\n"                        # 16
        "a.jpg,40,,,m,,,\n"                           # 17
        "x.jpg,30\n")                                 # 18
    return root


def test_labels_of_every_column(folder: Path) -> None:
    source = LabelledFolder(folder)

    assert [(r.source, r.age, r.age_range, r.gender, r.split, r.person)
            for r in source.records] == [
        (str(folder / "a.jpg"), 31.5, None, MALE, "train", "ann"),
        (str(folder / "deep" / "er" / "e.png"), None, (20, 29), FEMALE, "val", None),
        (str(folder / "b.jpg"), None, None, MALE, "test", "bo"),
        (str(folder / "c.jpg"), 7.0, None, None, "train", None),
    ]
    assert assign_splits(source.records) == ["train", "val", "test", "train"]
    faces = dict(source.iter_images([1]))
    assert faces[1].shape == (14, 10, 3)


def test_bad_rows_skipped_naming_line_and_value(folder: Path) -> None:
    labels = folder / "labels.csv"

    assert [(entry.removeprefix(f"{labels}:"), reason)
            for entry, reason in LabelledFolder(folder).skipped] == [
        ("6", "age 'forty' is not a number"),
        ("7", "age_min and age_max must both be given or both be empty"),
        ("8", "age_min 40 above age_max 30"),
        ("9", "age_min '2.5' is not a whole number of years"),
        ("10", "both age and age_min/age_max given"),
        ("11", "age 130 outside 0–120"),
        ("12", "gender 'woman' is not male/m/0 or female/f/1"),
        ("13", "split 'later' is not one of train, val, test"),
        ("14", "no label"),
        ("15", "missing.jpg: no such image"),
        ("16", "file '../x.jpg' is not a path inside the folder"),
        ("17", "a.jpg already labelled on line 2"),
        ("18", "missing field(s) age_min, age_max, gender, split, person, notes"),
    ]


@pytest.mark.parametrize(("text", "gender"), [
    ("male", MALE), ("MALE", MALE), ("m", MALE), ("0", MALE),
    ("Female", FEMALE), ("F", FEMALE), (" f ", FEMALE), ("1", FEMALE),
])
def test_gender_spellings(tmp_path: Path, text: str, gender: int) -> None:
    write_face(tmp_path / "a.jpg")
    (tmp_path / "labels.csv").write_text(f"file,gender\na.jpg,{text}\n")

    [record] = LabelledFolder(tmp_path).records

    assert (record.gender, record.age, record.age_range) == (gender, None, None)


def test_without_a_label_column_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("file,split,person\na.jpg,train,ann\n")

    with pytest.raises(ValueError, match=r"labels\.csv: no label column"):
        LabelledFolder(tmp_path)


def test_half_an_age_range_header_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("file,age_min,gender\na.jpg,20,m\n")

    with pytest.raises(ValueError, match=r"labels\.csv: age_min and age_max need each other"):
        LabelledFolder(tmp_path)


def test_partial_own_splits_are_ignored_with_a_warning(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_face(folder / "f.jpg")
    with (folder / "labels.csv").open("a") as file:
        file.write("f.jpg,50,,,f,,,\n")
    records = LabelledFolder(folder).records

    with caplog.at_level(logging.WARNING, logger="agegender"):
        splits = assign_splits(records)

    assert "only 4 of 5 records have a split of their own" in caplog.text
    assert len(splits) == 5 and set(splits) <= {"train", "val", "test"}


def test_open_source_detects_folder_before_gender_subfolders(folder: Path) -> None:
    write_face(folder / "male" / "z.jpg")

    source = open_source(folder)

    assert type(source) is LabelledFolder and len(source.records) == 4


def test_open_source_takes_labels_csv_itself(folder: Path) -> None:
    source = open_source(folder / "labels.csv")

    assert type(source) is LabelledFolder
    assert [r.name for r in source.records] == ["a.jpg", "e.png", "b.jpg", "c.jpg"]


def test_a_csv_with_pixels_stays_a_pixel_csv(tmp_path: Path) -> None:
    path = tmp_path / "faces.csv"
    path.write_text("file,age,ethnicity,gender,img_name,pixels\nx.jpg,30,1,0,x.jpg,1 2 3 4\n")

    source = open_source(path)

    assert type(source) is PixelCSV and source.records[0].age == 30


def test_a_csv_without_file_column_is_reported_as_pixel_csv(tmp_path: Path) -> None:
    path = tmp_path / "faces.csv"
    path.write_text("age,gender\n30,0\n")

    with pytest.raises(ValueError, match=r"faces\.csv: missing column\(s\) ethnicity, img_name"):
        open_source(path)


def test_age_ranges_are_stratified_by_their_decade() -> None:
    records = [FaceRecord(f"{i}.jpg", age=None, gender=FEMALE, age_range=(0, 2) if i < 20
                          else (70, 100)) for i in range(40)]

    splits = assign_splits(records, seed=3)

    assert Counter(splits[:20]) == Counter(splits[20:]) == {"train": 16, "val": 2, "test": 2}
