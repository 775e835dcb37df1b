"""UTKFace name parsing, folder and archive loading, against fixtures in the real layout."""

from __future__ import annotations

import csv
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agegender.data import (
    assign_splits,
    find_split_file,
    open_source,
    parse_utkface_name,
    tar_images,
)
from agegender.data.utkface import UTKFaceArchive, UTKFaceFolder
from agegender.imageio import ImageReadError

REAL_MALFORMED = {
    "24_0_1_20170116220224657 .jpg.chip.jpg": "space in name",
    "39_1_20170116174525125.jpg.chip.jpg": "missing field",
    "61_1_20170109142408075.jpg.chip.jpg": "missing field",
    "61_1_20170109150557335.jpg.chip.jpg": "missing field",
}
GOOD_NAMES = {
    "25_0_1_20170116174525125.jpg.chip.jpg": (25, 0, 1),
    "1_1_4_20161221193016140.jpg.chip.jpg": (1, 1, 4),
    "116_1_2_20170112213001988.jpg.chip.jpg": (116, 1, 2),
    "40_0_3_2017.jpg": (40, 0, 3),
}
BROKEN_NAME = "33_1_0_20170117000000000.jpg.chip.jpg"


def write_face(path: Path, shade: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (24, 24), (shade, 255 - shade, shade // 2)).save(path, "JPEG")


@pytest.fixture
def utkface_dir(tmp_path: Path) -> Path:
    """UTKFace/ with good names (one nested), the real malformed names, a broken JPEG, a note."""
    root = tmp_path / "UTKFace"
    for shade, name in enumerate(GOOD_NAMES):
        write_face(root / ("nested" if shade == 3 else "") / name, shade * 40)
    for name in REAL_MALFORMED:
        write_face(root / name, 10)
    (root / BROKEN_NAME).write_bytes(b"\xff\xd8 truncated, not really a JPEG")
    (root / "README.txt").write_text("not an image, ignored")
    return root


def assert_real_malformed_skipped(skipped: list[tuple[str, str]]) -> None:
    reasons = {entry.rsplit("/", 1)[1]: reason for entry, reason in skipped}
    assert reasons.keys() == REAL_MALFORMED.keys()
    assert all(reasons[name].startswith(start) for name, start in REAL_MALFORMED.items())


def make_archive(folder: Path, archive_path: Path) -> Path:
    mode = "w:gz" if archive_path.name.endswith((".tar.gz", ".tgz")) else "w"
    with tarfile.open(archive_path, mode) as archive:
        archive.add(folder, arcname=folder.name)
    return archive_path


@pytest.mark.parametrize(("name", "labels"), [
    *GOOD_NAMES.items(),
    ("14_0_0_2017011022340900.jpg.chip.jpg", (14, 0, 0)),  # real: 16-digit stamp
    ("55_0_0_20170116232725357jpg.chip.jpg", (55, 0, 0)),  # real: no dot before jpg
    ("30_1_2_20170116174525125.JPG", (30, 1, 2)),
])
def test_parse_accepts_real_name_variants(name: str, labels: tuple[int, int, int]) -> None:
    assert parse_utkface_name(name) == labels


@pytest.mark.parametrize(("name", "reason"), [
    *REAL_MALFORMED.items(),
    ("117_0_0_20170116174525125.jpg.chip.jpg", "age 117 outside 0–116"),
    ("25_2_0_20170116174525125.jpg.chip.jpg", "gender 2 is not 0"),
    ("25_0_5_20170116174525125.jpg.chip.jpg", "race 5 outside 0–4"),
    ("x_0_0_20170116174525125.jpg.chip.jpg", "age 'x' is not"),
    ("25_-1_0_20170116174525125.jpg", "gender '-1' is not"),
    ("25_0_0_20170116174525125.png", "not a .jpg"),
    ("25_0_0_1_20170116174525125.jpg", "5 fields, expected 4"),
    ("25_0_0_.jpg", "date&time field"),
])
def test_parse_rejects_with_precise_reason(name: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_utkface_name(name)


def test_folder_records_sources_and_skipped(utkface_dir: Path) -> None:
    source = UTKFaceFolder(utkface_dir)

    by_name = {record.name: record for record in source.records}
    assert set(by_name) == {*GOOD_NAMES, BROKEN_NAME}
    for name, (age, gender, race) in GOOD_NAMES.items():
        assert (by_name[name].age, by_name[name].gender, by_name[name].race) == (age, gender, race)
    assert by_name["40_0_3_2017.jpg"].source == str(utkface_dir / "nested" / "40_0_3_2017.jpg")
    assert_real_malformed_skipped(source.skipped)


def test_folder_yields_broken_jpeg_as_error(utkface_dir: Path) -> None:
    source = UTKFaceFolder(utkface_dir)

    results = dict(source.iter_images(range(len(source.records))))

    broken = next(i for i, record in enumerate(source.records) if record.name == BROKEN_NAME)
    assert isinstance(results[broken], ImageReadError)
    assert results[broken].source == source.records[broken].source
    faces = [face for index, face in results.items() if index != broken]
    assert len(faces) == len(GOOD_NAMES)
    assert all(face.shape == (24, 24, 3) and face.dtype == np.uint8 for face in faces)


@pytest.mark.parametrize("archive_name", ["UTKFace.tar.gz", "UTKFace.tgz", "UTKFace.tar"])
def test_archive_matches_folder(utkface_dir: Path, tmp_path: Path, archive_name: str) -> None:
    archive_path = make_archive(utkface_dir, tmp_path / archive_name)

    source = UTKFaceArchive(archive_path)

    folder = UTKFaceFolder(utkface_dir)
    assert sorted((r.name, r.age, r.gender, r.race) for r in source.records) == sorted(
        (r.name, r.age, r.gender, r.race) for r in folder.records)
    assert all(r.source.startswith(f"{archive_path}::UTKFace/") for r in source.records)
    assert_real_malformed_skipped(source.skipped)
    assert f"{archive_path}::UTKFace/{BROKEN_NAME}" in {r.source for r in source.records}


def test_archive_decodes_only_requested_members_in_one_pass(
    utkface_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = UTKFaceArchive(make_archive(utkface_dir, tmp_path / "UTKFace.tar.gz"))
    decoded: list[str] = []
    real_decode = tar_images.decode_image

    def counting_decode(data: bytes, source: str) -> np.ndarray:
        decoded.append(source)
        return real_decode(data, source=source)

    monkeypatch.setattr(tar_images, "decode_image", counting_decode)
    opened = Counter()
    real_open = tarfile.open

    def counting_open(*args, **kwargs):
        opened[args[1] if len(args) > 1 else kwargs.get("mode")] += 1
        return real_open(*args, **kwargs)

    monkeypatch.setattr(tar_images.tarfile, "open", counting_open)
    broken = next(i for i, record in enumerate(source.records) if record.name == BROKEN_NAME)
    wanted = [broken, 0, 2, 0]

    results = dict(source.iter_images(wanted))

    assert opened == {"r|*": 1}
    assert sorted(results) == sorted({broken, 0, 2})
    assert sorted(decoded) == sorted(source.records[i].source for i in {broken, 0, 2})
    assert isinstance(results[broken], ImageReadError)
    assert results[0].shape == (24, 24, 3)


def test_archive_member_gone_since_listing_is_an_error(utkface_dir: Path, tmp_path: Path) -> None:
    archive_path = make_archive(utkface_dir, tmp_path / "UTKFace.tar.gz")
    source = UTKFaceArchive(archive_path)
    (utkface_dir / BROKEN_NAME).unlink()
    make_archive(utkface_dir, archive_path)
    gone = next(i for i, record in enumerate(source.records) if record.name == BROKEN_NAME)

    results = dict(source.iter_images(range(len(source.records))))

    assert len(results) == len(source.records)
    assert results[gone].reason == "no longer in the archive"


@pytest.mark.archive
def test_real_archive_listing_and_official_split(archive: Path) -> None:
    source = open_source(archive)

    assert len(source.records) == 20_113
    assert_real_malformed_skipped(source.skipped)
    split_file = find_split_file(archive)
    assert split_file == archive.parent / "split.csv"
    with split_file.open(newline="") as file:
        official = {row["file"]: row["split"] for row in csv.DictReader(file)}
    expected = Counter(official.values())
    assert expected == {"train": 16_009, "val": 2_035, "test": 2_073}
    expected.subtract(official[name] for name in REAL_MALFORMED)
    assert Counter(assign_splits(source.records, split_file)) == expected
