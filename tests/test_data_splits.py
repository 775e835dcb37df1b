"""Split assignment: split file first, then the records' own splits, then a stratified split."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest

from agegender.data import FaceRecord, assign_splits, find_split_file


def utk_record(age: float | None, gender: int | None, number: int) -> FaceRecord:
    return FaceRecord(f"/data/UTKFace/{age}_{gender}_0_{number:017d}.jpg", age, gender, 0)


@pytest.fixture
def records() -> list[FaceRecord]:
    """Uneven strata, including ones with a missing age or gender."""
    ages = [5] * 37 + [None] * 11 + [67] * 23 + [25] * 120
    genders = [0, 1] * 95 + [None]
    return [utk_record(age, gender, number)
            for number, (age, gender) in enumerate(zip(ages, genders, strict=True))]


def test_split_file_is_joined_on_name(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    records = [utk_record(20, 0, 1), utk_record(30, 1, 2), utk_record(40, 0, 3)]
    split_file = tmp_path / "split.csv"
    split_file.write_text(f"file,split\n{records[1].name},test\n{records[0].name},val\n")

    with caplog.at_level(logging.WARNING, logger="agegender"):
        splits = assign_splits(records, split_file=split_file)

    assert splits == ["val", "test", "unassigned"]
    [warning] = caplog.records
    assert "1 of 3 records are not listed" in warning.getMessage()


def test_split_file_without_its_columns_is_rejected(tmp_path: Path) -> None:
    split_file = tmp_path / "split.csv"
    split_file.write_text("name,fold\na.jpg,train\n")

    with pytest.raises(ValueError, match="expected the columns file,split"):
        assign_splits([utk_record(20, 0, 1)], split_file=split_file)


def test_records_own_splits_used_when_all_have_one() -> None:
    records = [FaceRecord(f"/celeba/{i}.jpg", None, 0, split=s)
               for i, s in enumerate(["train", "test", "val"])]

    assert assign_splits(records) == ["train", "test", "val"]


def test_stratified_split_is_seeded(records: list[FaceRecord]) -> None:
    first = assign_splits(records, seed=3)

    assert assign_splits(records, seed=3) == first
    assert assign_splits(records, seed=4) != first


def test_stratified_split_proportional_within_each_stratum(records: list[FaceRecord]) -> None:
    fractions = (0.6, 0.3, 0.1)

    splits = assign_splits(records, seed=0, fractions=fractions)

    strata: dict[tuple, Counter] = {}
    for record, split in zip(records, splits, strict=True):
        decade = None if record.age is None else record.age // 10
        strata.setdefault((record.gender, decade), Counter())[split] += 1
    assert len(strata) == 9  # 3 decades + no age, × 2 genders; and 25-year-olds without gender
    for counts in strata.values():
        total = counts.total()
        for name, fraction in zip(("train", "val", "test"), fractions, strict=True):
            assert abs(counts[name] - total * fraction) < 1


def test_stratified_split_rejects_bad_fractions(records: list[FaceRecord]) -> None:
    with pytest.raises(ValueError, match="fractions"):
        assign_splits(records, fractions=(0.8, 0.1))


def test_find_split_file(tmp_path: Path) -> None:
    archive = tmp_path / "UTKFace.tar.gz"
    archive.touch()
    folder = tmp_path / "faces"
    folder.mkdir()
    assert find_split_file(archive) is None
    assert find_split_file(folder) is None

    (tmp_path / "split.csv").touch()

    assert find_split_file(archive) == tmp_path / "split.csv"
    assert find_split_file(folder) == tmp_path / "split.csv"  # the archive unpacked beside it

    (folder / "split.csv").touch()

    assert find_split_file(folder) == folder / "split.csv"  # its own split file comes first
