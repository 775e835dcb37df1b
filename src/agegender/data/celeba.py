"""CelebA (aligned faces): gender from the `Male` attribute, official split if present; no ages."""

from __future__ import annotations

from pathlib import Path

from agegender.data.files import ImageFileSource
from agegender.data.records import FEMALE, MALE, FaceRecord

ATTRIBUTES_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
IMAGE_DIR = "img_align_celeba"
MALE_VALUES = {"1": MALE, "-1": FEMALE}
PARTITION_SPLITS = {"0": "train", "1": "val", "2": "test"}


class CelebA(ImageFileSource):
    """A directory with `img_align_celeba/` and `list_attr_celeba.txt` (optional partition file).

    Also accepts the Kaggle layout, where the images sit one level deeper in
    `img_align_celeba/img_align_celeba/`.
    """

    def __init__(self, root: Path | str):
        self.root = Path(root)
        image_dir = self.root / IMAGE_DIR
        if (image_dir / IMAGE_DIR).is_dir():
            image_dir = image_dir / IMAGE_DIR
        present = {path.name for path in image_dir.iterdir()} if image_dir.is_dir() else set()
        genders, skipped = _read_genders(self.root / ATTRIBUTES_FILE)
        partition_path = self.root / PARTITION_FILE
        splits = _read_partition(partition_path) if partition_path.is_file() else {}
        records = []
        for name, gender in genders.items():
            if name in present:
                records.append(FaceRecord(str(image_dir / name), age=None, gender=gender,
                                          split=splits.get(name)))
            else:
                skipped.append((str(image_dir / name), f"in {ATTRIBUTES_FILE} but no such file"))
        super().__init__(records, skipped)


def _read_genders(path: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """File name → gender from the `Male` column, and (file:line, reason) for malformed lines.

    Layout: line 1 the image count, line 2 the attribute names, then `<file> ±1 ±1 ...`.
    """
    lines = path.read_text().splitlines()
    names = lines[1].split() if len(lines) > 1 else []
    if "Male" not in names:
        raise ValueError(f"{path}: no 'Male' among the attribute names on line 2")
    male_column = names.index("Male") + 1
    genders, skipped = {}, []
    for line_number, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if not fields:
            continue
        entry = f"{path}:{line_number}"
        if len(fields) != len(names) + 1:
            skipped.append((entry, f"{len(fields) - 1} values for {len(names)} attributes"))
        elif fields[male_column] not in MALE_VALUES:
            skipped.append((entry, f"Male value {fields[male_column]!r} is not 1 or -1"))
        else:
            genders[fields[0]] = MALE_VALUES[fields[male_column]]
    return genders, skipped


def _read_partition(path: Path) -> dict[str, str]:
    """File name → split from `list_eval_partition.txt` (`<file> 0|1|2` per line)."""
    splits = {}
    for line_number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in PARTITION_SPLITS:
            raise ValueError(f"{path}:{line_number}: expected '<file> 0|1|2', found {line!r}")
        splits[fields[0]] = PARTITION_SPLITS[fields[1]]
    return splits
