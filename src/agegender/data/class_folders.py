"""Gender-only datasets laid out as one folder per class (`male/`, `female/`, ...); no ages."""

from __future__ import annotations

from pathlib import Path

from agegender.data.files import ImageFileSource, find_image_files
from agegender.data.records import FEMALE, MALE, FaceRecord
from agegender.imageio import IMAGE_SUFFIXES

GENDER_FOLDERS = {
    "male": MALE, "man": MALE, "men": MALE,
    "female": FEMALE, "woman": FEMALE, "women": FEMALE,
}
"""Folder names (compared case-insensitively) and the gender they stand for."""


def gender_folders(root: Path) -> dict[Path, int]:
    """Subdirectories of root named for a gender → that gender; empty when root has none."""
    return {path: GENDER_FOLDERS[path.name.lower()] for path in sorted(root.iterdir())
            if path.name.lower() in GENDER_FOLDERS and path.is_dir()}


class ClassFolders(ImageFileSource):
    """Images anywhere below gender folders of root; anything else at the top level is skipped."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        folders = gender_folders(self.root)
        records = [FaceRecord(str(path), age=None, gender=gender)
                   for folder, gender in folders.items() for path in find_image_files(folder)]
        skipped = [(str(path), "outside the gender folders (male/female, man/woman, men/women)")
                   for path in sorted(self.root.iterdir())
                   if path not in folders and not path.name.startswith(".")
                   and (path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES)]
        super().__init__(records, skipped)
