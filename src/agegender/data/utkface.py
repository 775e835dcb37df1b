"""UTKFace: labels encoded in file names, read from a folder or streamed from a tar archive."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from agegender.data.files import ImageFileSource, find_image_files
from agegender.data.records import GENDER_NAMES, RACE_NAMES, FaceRecord
from agegender.data.tar_images import TarImageSource, list_image_members

MAX_AGE = 116

NAME_FIELDS = ("age", "gender", "race", "date&time")
LABEL_FIELDS = NAME_FIELDS[:3]


def parse_labels(age: str, gender: str, race: str) -> tuple[int, int, int]:
    """Validate UTKFace label texts (shared with the pixel CSV, which uses the same codes)."""
    age_value, gender_value, race_value = (
        _non_negative_int(field, text)
        for field, text in zip(LABEL_FIELDS, (age, gender, race), strict=True))
    if age_value > MAX_AGE:
        raise ValueError(f"age {age_value} outside 0–{MAX_AGE}")
    if gender_value >= len(GENDER_NAMES):
        raise ValueError(f"gender {gender_value} is not 0 (male) or 1 (female)")
    if race_value >= len(RACE_NAMES):
        raise ValueError(f"race {race_value} outside 0–{len(RACE_NAMES) - 1}")
    return age_value, gender_value, race_value


def _non_negative_int(field: str, text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"{field} {text!r} is not a non-negative integer")
    return int(text)


def parse_utkface_name(name: str) -> tuple[int, int, int]:
    """(age, gender, race) from a file name `age_gender_race_datetime.jpg[.chip.jpg]`.

    Raises ValueError saying exactly what is wrong, so skipped files can be reported.
    The date&time field is only required to start with a digit: the real release has
    16- and 18-digit stamps and one name missing the dot before `jpg.chip.jpg`.
    """
    if not name.lower().endswith(".jpg"):
        raise ValueError("not a .jpg file")
    if any(character.isspace() for character in name):
        raise ValueError("space in name")
    fields = name.split("_")
    if len(fields) < len(NAME_FIELDS):
        raise ValueError(f"missing field: {len(fields)} of 4 fields age_gender_race_datetime")
    if len(fields) > len(NAME_FIELDS):
        raise ValueError(f"{len(fields)} fields, expected 4: age_gender_race_datetime")
    if not fields[3][:1].isdigit():
        raise ValueError(f"date&time field {fields[3]!r} does not start with a digit")
    return parse_labels(*fields[:3])


def _utkface_records(
    entries: Iterable[tuple[str, str]],
) -> tuple[list[FaceRecord], list[tuple[str, str]]]:
    """(source, file name) pairs → records for well-formed names, (source, reason) for others."""
    records, skipped = [], []
    for source, name in entries:
        try:
            age, gender, race = parse_utkface_name(name)
        except ValueError as error:
            skipped.append((source, str(error)))
        else:
            records.append(FaceRecord(source, age, gender, race))
    return records, skipped


class UTKFaceFolder(ImageFileSource):
    """UTKFace images anywhere under a directory (e.g. the unpacked `UTKFace/`)."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        files = find_image_files(self.root)
        super().__init__(*_utkface_records((str(path), path.name) for path in files))


class UTKFaceArchive(TarImageSource):
    """UTKFace images inside a tar archive, streamed (see `TarImageSource`), never unpacked."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        super().__init__(*_utkface_records(
            (self.member_source(member), PurePosixPath(member).name)
            for member in list_image_members(self.path)))
