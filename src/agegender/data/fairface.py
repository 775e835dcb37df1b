"""FairFace: age bins, gender and race from `fairface_label_{train,val}.csv` beside the images.

The release's CSVs have the columns `file,age,gender,race,service_test`; `file` is the image
path relative to the folder (`train/1.jpg`, `val/1.jpg`). Labels become FaceRecord fields:

- `age` is a bin of whole years, kept as `age_range` (both ends included) with `age` None:
  `0-2`, `3-9`, `10-19`, `20-29`, `30-39`, `40-49`, `50-59`, `60-69`, and `more than 70`,
  taken as (70, 100);
- `gender`: `Male` → 0, `Female` → 1 (UTKFace's convention);
- `race`: FairFace's 7 groups folded onto UTKFace's 5 (`RACE_NAMES`): White → White,
  Black → Black, East Asian and Southeast Asian → Asian, Indian → Indian, and
  Latino_Hispanic and Middle Eastern → Others;
- `split`: `train` for the rows of the train CSV, `val` for those of the val CSV. FairFace
  publishes no test labels, so a FairFace source has no test split of its own.

`service_test` (a flag of the release's balanced subset) is ignored. A row with an unknown
bin, gender or race, or naming a missing image, is skipped with a reason naming its line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agegender.data.files import ImageFileSource
from agegender.data.labelled_folder import read_labelled_rows
from agegender.data.records import FEMALE, MALE, RACE_NAMES, FaceRecord

LABEL_FILES = {"fairface_label_train.csv": "train", "fairface_label_val.csv": "val"}
"""Label file → the split of its rows."""
COLUMNS = ("file", "age", "gender", "race")
AGE_BINS = {
    "0-2": (0, 2), "3-9": (3, 9), "10-19": (10, 19), "20-29": (20, 29), "30-39": (30, 39),
    "40-49": (40, 49), "50-59": (50, 59), "60-69": (60, 69), "more than 70": (70, 100),
}
GENDERS = {"Male": MALE, "Female": FEMALE}
RACES = {
    "White": RACE_NAMES.index("White"),
    "Black": RACE_NAMES.index("Black"),
    "East Asian": RACE_NAMES.index("Asian"),
    "Southeast Asian": RACE_NAMES.index("Asian"),
    "Indian": RACE_NAMES.index("Indian"),
    "Latino_Hispanic": RACE_NAMES.index("Others"),
    "Middle Eastern": RACE_NAMES.index("Others"),
}


def is_fairface_labels(path: Path) -> bool:
    """A directory holding a FairFace label CSV, or such a CSV itself."""
    if path.is_dir():
        return any((path / name).is_file() for name in LABEL_FILES)
    return path.name in LABEL_FILES


class FairFace(ImageFileSource):
    """The folder with the FairFace label CSVs and images (both CSVs that are there), or one
    label CSV alone (the folder being the one it is in)."""

    def __init__(self, path: Path | str):
        path = Path(path)
        if path.is_dir():
            self.root = path
            label_files = [path / name for name in LABEL_FILES if (path / name).is_file()]
        else:
            self.root = path.parent
            label_files = [path] if path.name in LABEL_FILES else []
        if not label_files:
            raise ValueError(f"{path}: not {' or '.join(LABEL_FILES)}, nor a folder holding them")
        records: list[FaceRecord] = []
        skipped: list[tuple[str, str]] = []
        for label_file in label_files:
            split = LABEL_FILES[label_file.name]
            file_records, file_skipped = read_labelled_rows(
                label_file, self.root, _check_columns, lambda row, split=split: _labels(row, split))
            records += file_records
            skipped += file_skipped
        super().__init__(records, skipped)


def _check_columns(csv_path: Path, header: list[str]) -> None:
    missing = [column for column in COLUMNS if column not in header]
    if missing:
        raise ValueError(f"{csv_path}: missing column(s) {', '.join(missing)}")


def _labels(row: dict[str, str], split: str) -> dict[str, Any]:
    age, gender, race = row["age"].strip(), row["gender"].strip(), row["race"].strip()
    if age not in AGE_BINS:
        raise ValueError(f"age {age!r} is not a FairFace age bin")
    if gender not in GENDERS:
        raise ValueError(f"gender {gender!r} is not Male or Female")
    if race not in RACES:
        raise ValueError(f"race {race!r} is not one of FairFace's 7")
    return {"age": None, "age_range": AGE_BINS[age], "gender": GENDERS[gender],
            "race": RACES[race], "split": split}
