"""Users' own data: images anywhere in a folder, labelled by a `labels.csv` beside them.

`labels.csv` has a `file` column (the image's path relative to the folder, `/`-separated)
and at least one label column:

- `age`: the age in years (a number, 0–120);
- `age_min`, `age_max` (together): an age known only as a range of whole years, both ends
  included (`age_range`); a row gives either `age` or the range, not both;
- `gender`: `male`/`m`/`0` or `female`/`f`/`1`, in any case (UTKFace's 0 = male, 1 = female).

Optional: `split` (`train`, `val` or `test`; used when every row has one, see
`agegender.data.splits`) and `person` (who the face is, so sampling can cap faces per
person). Other columns are ignored. An empty cell is a missing label, never guessed; a
row with a malformed value, without any label, naming a missing image or naming one twice
is skipped with a reason that names its line.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from agegender.data.files import ImageFileSource
from agegender.data.records import FEMALE, MALE, FaceRecord
from agegender.data.splits import SPLIT_NAMES

LABELS_FILE = "labels.csv"
MAX_AGE = 120
GENDER_VALUES = {"male": MALE, "m": MALE, "0": MALE, "female": FEMALE, "f": FEMALE, "1": FEMALE}
RANGE_COLUMNS = ("age_min", "age_max")
LABEL_COLUMNS = ("age", *RANGE_COLUMNS, "gender")

RowParser = Callable[[dict[str, str]], dict[str, Any]]
"""A CSV row (every value present) → FaceRecord fields other than `source`, or ValueError."""


class LabelledFolder(ImageFileSource):
    """A folder with `labels.csv` (or that CSV itself, the folder being the one it is in)."""

    def __init__(self, path: Path | str):
        path = Path(path)
        self.labels_path = path if path.is_file() else path / LABELS_FILE
        self.root = self.labels_path.parent
        super().__init__(*read_labelled_rows(self.labels_path, self.root, _label_columns,
                                             _parse_labels))


def read_labelled_rows(
    csv_path: Path, root: Path, check_columns: Callable[[Path, list[str]], None],
    parse: RowParser,
) -> tuple[list[FaceRecord], list[tuple[str, str]]]:
    """Records of a CSV whose `file` column names images relative to root, and (`csv:line`,
    reason) for each row that is malformed, names no existing image or repeats one.

    `check_columns(csv_path, header)` raises ValueError when the header is unusable.
    """
    records, skipped = [], []
    first_line: dict[Path, int] = {}
    with csv_path.open(newline="", encoding="utf-8-sig") as file:
        reader = csv.DictReader(file)
        header = list(reader.fieldnames or ())
        if "file" not in header:
            raise ValueError(f"{csv_path}: no 'file' column")
        check_columns(csv_path, header)
        try:
            for row in reader:
                try:
                    path = _row_image(row, root, first_line)
                    fields = parse(row)
                except ValueError as error:
                    skipped.append((f"{csv_path}:{reader.line_num}", str(error)))
                else:
                    first_line[path] = reader.line_num
                    records.append(FaceRecord(str(path), **fields))
        except csv.Error as error:
            raise ValueError(f"{csv_path}, line {reader.line_num}: {error}") from error
    return records, skipped


def _row_image(row: dict, root: Path, first_line: dict[Path, int]) -> Path:
    """The existing image a well-formed row names, not named by an earlier row."""
    if None in row:
        raise ValueError(f"{len(row[None])} field(s) more than the header")
    missing = [column for column, value in row.items() if value is None]
    if missing:
        raise ValueError(f"missing field(s) {', '.join(missing)}")
    name = PurePosixPath(row["file"].strip())
    if not name.parts or name.is_absolute() or ".." in name.parts:
        raise ValueError(f"file {row['file']!r} is not a path inside the folder")
    path = root.joinpath(*name.parts)
    if path in first_line:
        raise ValueError(f"{name} already labelled on line {first_line[path]}")
    if not path.is_file():
        raise ValueError(f"{name}: no such image")
    return path


def _label_columns(csv_path: Path, header: list[str]) -> None:
    if not any(column in header for column in LABEL_COLUMNS):
        raise ValueError(f"{csv_path}: no label column: expected age, age_min and age_max, "
                         "or gender beside file")
    present = [column in header for column in RANGE_COLUMNS]
    if any(present) and not all(present):
        raise ValueError(f"{csv_path}: age_min and age_max need each other; only "
                         f"{RANGE_COLUMNS[present.index(True)]} is there")


def _parse_labels(row: dict[str, str]) -> dict[str, Any]:
    cells = {column: value.strip() for column, value in row.items()}
    fields = {
        "age": _age(cells["age"]) if cells.get("age") else None,
        "age_range": _age_range(cells.get("age_min", ""), cells.get("age_max", "")),
        "gender": _gender(cells["gender"]) if cells.get("gender") else None,
        "split": _split(cells["split"]) if cells.get("split") else None,
        "person": cells.get("person") or None,
    }
    if fields["age"] is not None and fields["age_range"] is not None:
        raise ValueError("both age and age_min/age_max given")
    if all(fields[label] is None for label in ("age", "age_range", "gender")):
        raise ValueError("no label")
    return fields


def _age(text: str) -> float:
    try:
        age = float(text)
    except ValueError:
        raise ValueError(f"age {text!r} is not a number") from None
    if not (math.isfinite(age) and 0 <= age <= MAX_AGE):
        raise ValueError(f"age {text} outside 0–{MAX_AGE}")
    return age


def _age_range(low: str, high: str) -> tuple[int, int] | None:
    if not (low or high):
        return None
    if not (low and high):
        raise ValueError("age_min and age_max must both be given or both be empty")
    ages = []
    for column, text in zip(RANGE_COLUMNS, (low, high), strict=True):
        if not (text.isascii() and text.isdigit()):
            raise ValueError(f"{column} {text!r} is not a whole number of years")
        if int(text) > MAX_AGE:
            raise ValueError(f"{column} {text} outside 0–{MAX_AGE}")
        ages.append(int(text))
    if ages[0] > ages[1]:
        raise ValueError(f"age_min {ages[0]} above age_max {ages[1]}")
    return ages[0], ages[1]


def _gender(text: str) -> int:
    if text.lower() not in GENDER_VALUES:
        raise ValueError(f"gender {text!r} is not male/m/0 or female/f/1")
    return GENDER_VALUES[text.lower()]


def _split(text: str) -> str:
    if text.lower() not in SPLIT_NAMES:
        raise ValueError(f"split {text!r} is not one of {', '.join(SPLIT_NAMES)}")
    return text.lower()
