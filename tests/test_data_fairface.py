"""FairFace label CSVs → age ranges, gender, UTKFace race groups and splits, on a fixture in the
release's format (we do not ship FairFace)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from agegender.data import assign_splits, open_source
from agegender.data.fairface import AGE_BINS, RACES, FairFace
from agegender.data.records import FEMALE, MALE, RACE_NAMES

HEADER = "file,age,gender,race,service_test\n"


def write_face(path: Path, shade: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 12), (shade, shade, shade)).save(path, "JPEG")


@pytest.fixture
def fairface(tmp_path: Path) -> Path:
    """train/1-6.jpg and val/1-2.jpg, with the two label CSVs, malformed rows included."""
    root = tmp_path / "fairface"
    for index in range(1, 7):
        write_face(root / "train" / f"{index}.jpg", index * 30)
    for index in (1, 2):
        write_face(root / "val" / f"{index}.jpg", index * 30)
    (root / "fairface_label_train.csv").write_text(
        HEADER
        + "train/1.jpg,50-59,Male,East Asian,True\n"
        + "train/2.jpg,more than 70,Female,Latino_Hispanic,False\n"
        + "train/3.jpg,0-2,Female,Middle Eastern,True\n"
        + "train/4.jpg,70-79,Male,White,True\n"  # line 5: not a FairFace bin
        + "train/5.jpg,20-29,male,White,True\n"
        + "train/6.jpg,20-29,Male,Asian,True\n"
        + "train/99.jpg,20-29,Male,White,True\n"
        + "train/1.jpg,3-9,Male,Black,True\n"  # line 9: the same image again
        + "train/6.jpg,20-29\n")
    (root / "fairface_label_val.csv").write_text(
        HEADER
        + "val/1.jpg,3-9,Male,Southeast Asian,False\n"
        + "val/2.jpg,10-19,Female,Indian,True\n")
    return root


def test_records_age_ranges_gender_race_and_split(fairface: Path) -> None:
    source = FairFace(fairface)

    assert [(r.source, r.age, r.age_range, r.gender, RACE_NAMES[r.race], r.split, r.person)
            for r in source.records] == [
        (str(fairface / "train" / "1.jpg"), None, (50, 59), MALE, "Asian", "train", None),
        (str(fairface / "train" / "2.jpg"), None, (70, 100), FEMALE, "Others", "train", None),
        (str(fairface / "train" / "3.jpg"), None, (0, 2), FEMALE, "Others", "train", None),
        (str(fairface / "val" / "1.jpg"), None, (3, 9), MALE, "Asian", "val", None),
        (str(fairface / "val" / "2.jpg"), None, (10, 19), FEMALE, "Indian", "val", None),
    ]
    assert assign_splits(source.records) == ["train"] * 3 + ["val"] * 2
    faces = dict(source.iter_images([4, 0]))
    assert faces[4].shape == (12, 12, 3) and faces[4][..., 0].mean() == pytest.approx(60, abs=3)


def test_malformed_rows_skipped_with_line_and_reason(fairface: Path) -> None:
    labels = fairface / "fairface_label_train.csv"

    assert FairFace(fairface).skipped == [
        (f"{labels}:5", "age '70-79' is not a FairFace age bin"),
        (f"{labels}:6", "gender 'male' is not Male or Female"),
        (f"{labels}:7", "race 'Asian' is not one of FairFace's 7"),
        (f"{labels}:8", "train/99.jpg: no such image"),
        (f"{labels}:9", "train/1.jpg already labelled on line 2"),
        (f"{labels}:10", "missing field(s) gender, race, service_test"),
    ]


def test_every_bin_and_race_maps_as_documented() -> None:
    assert AGE_BINS == {
        "0-2": (0, 2), "3-9": (3, 9), "10-19": (10, 19), "20-29": (20, 29),
        "30-39": (30, 39), "40-49": (40, 49), "50-59": (50, 59), "60-69": (60, 69),
        "more than 70": (70, 100)}
    assert {race: RACE_NAMES[group] for race, group in RACES.items()} == {
        "White": "White", "Black": "Black", "East Asian": "Asian", "Southeast Asian": "Asian",
        "Indian": "Indian", "Latino_Hispanic": "Others", "Middle Eastern": "Others"}


def test_open_source_detects_the_folder_and_either_csv(fairface: Path) -> None:
    assert type(open_source(fairface)) is FairFace
    val_only = open_source(fairface / "fairface_label_val.csv")
    assert type(val_only) is FairFace
    assert [r.split for r in val_only.records] == ["val", "val"]


def test_val_csv_alone_in_the_folder(fairface: Path) -> None:
    (fairface / "fairface_label_train.csv").unlink()

    source = open_source(fairface)

    assert type(source) is FairFace and {r.split for r in source.records} == {"val"}


def test_missing_column_names_the_file(fairface: Path) -> None:
    (fairface / "fairface_label_val.csv").write_text("file,age,gender\nval/1.jpg,3-9,Male\n")

    with pytest.raises(ValueError, match=r"fairface_label_val\.csv: missing column\(s\) race"):
        FairFace(fairface)
