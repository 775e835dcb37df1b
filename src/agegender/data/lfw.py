"""LFW deep-funneled: gender from the published name lists, the person from the folder; no ages.

The layout is the public release: `lfw-deepfunneled.tgz` (or the folder it unpacks to,
`lfw-deepfunneled/<Person_Name>/<Person_Name>_NNNN.jpg`) beside `male_names.txt` and
`female_names.txt`, one image file name a line (CRLF or LF). The lists are kept as published,
so a name on both lists, or an image on neither, is skipped with that reason rather than
guessed, and so is a listed name without an image. The split comes from `split.csv` beside
the lists (joined on the file name by `agegender.data.splits`), like every other format.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from agegender.data.base import FaceSource
from agegender.data.files import ImageFileSource, find_image_files
from agegender.data.records import FEMALE, MALE, FaceRecord
from agegender.data.tar_images import TarImageSource, list_image_members

GENDER_LISTS = {"male_names.txt": MALE, "female_names.txt": FEMALE}
IMAGE_DIR = "lfw-deepfunneled"
ARCHIVE_NAMES = tuple(f"{IMAGE_DIR}{suffix}" for suffix in (".tgz", ".tar.gz", ".tar"))


def is_lfw_directory(path: Path) -> bool:
    """A directory holding both gender lists."""
    return all((path / name).is_file() for name in GENDER_LISTS)


def open_lfw(path: Path | str) -> FaceSource:
    """LFW from the directory holding the lists (the unpacked folder preferred over the
    archive when both are there), or from the archive itself, with the lists beside it."""
    path = Path(path)
    if not path.is_dir():
        return LFWArchive(path)
    if (path / IMAGE_DIR).is_dir():
        return LFWFolder(path)
    archive = next((path / name for name in ARCHIVE_NAMES if (path / name).is_file()), None)
    if archive is None:
        raise ValueError(f"{path}: LFW name lists without the images: expected "
                         f"{IMAGE_DIR}/ or {ARCHIVE_NAMES[0]} beside them")
    return LFWArchive(archive)


class LFWFolder(ImageFileSource):
    """The unpacked `lfw-deepfunneled/` inside `root`, beside the two name lists."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        files = find_image_files(self.root / IMAGE_DIR)
        super().__init__(*_lfw_records(
            self.root, ((str(path), path.parent.name, path.name) for path in files)))


class LFWArchive(TarImageSource):
    """`lfw-deepfunneled.tgz` streamed without unpacking (see `TarImageSource`), beside the
    two name lists."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        members = [PurePosixPath(member) for member in list_image_members(self.path)]
        super().__init__(*_lfw_records(self.path.parent, (
            (self.member_source(str(member)), member.parent.name, member.name)
            for member in members)))


def read_gender_lists(folder: Path) -> dict[str, dict[int, str]]:
    """File name → {gender: `list:line` where the name stands} from the two lists."""
    listed: dict[str, dict[int, str]] = {}
    for list_name, gender in GENDER_LISTS.items():
        path = folder / list_name
        for line_number, line in enumerate(path.read_text().splitlines(), start=1):
            if line.strip():
                listed.setdefault(line.strip(), {}).setdefault(gender, f"{path}:{line_number}")
    return listed


def _lfw_records(
    folder: Path, images: Iterable[tuple[str, str, str]],
) -> tuple[list[FaceRecord], list[tuple[str, str]]]:
    """(source, person, file name) per image → records, and (entry, reason) for the images
    the lists do not label one way and for the listed names without an image."""
    listed = read_gender_lists(folder)
    records, skipped = [], []
    for source, person, name in images:
        genders = listed.pop(name, {})
        if len(genders) == 1:
            records.append(FaceRecord(source, age=None, gender=next(iter(genders)),
                                      person=person))
        else:
            skipped.append((source, "on both male_names.txt and female_names.txt" if genders
                            else "on neither male_names.txt nor female_names.txt"))
    skipped.extend((next(iter(places.values())), f"{name} is listed but there is no such image")
                   for name, places in listed.items())
    return records, skipped
