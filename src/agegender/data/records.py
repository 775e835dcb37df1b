"""The one record type every data source produces."""

from __future__ import annotations

from dataclasses import dataclass

MALE, FEMALE = 0, 1
"""Gender labels follow UTKFace: 0 = male, 1 = female. Sources with other conventions convert."""

GENDER_NAMES = ("male", "female")
GENDER_THRESHOLD = 0.5
"""A face is called female when its probability of female is at least this."""
RACE_NAMES = ("White", "Black", "Asian", "Indian", "Others")


@dataclass(frozen=True)
class FaceRecord:
    """One labelled face image.

    `source` names where the pixels come from (a file path, `archive.tar.gz::member`, or
    `table.csv#row`), so every error and every report row can point back at the input.
    A label that the dataset does not provide is `None` and is masked out of its loss.
    `age_range` is an age known only as a range of whole years, both ends included
    (FairFace's `20-29` is (20, 29)); such a record has `age` None. `person` names who the
    face is, where the dataset says (LFW), so sampling can cap faces per person.
    """

    source: str
    age: float | None
    gender: int | None
    race: int | None = None
    split: str | None = None
    age_range: tuple[int, int] | None = None
    person: str | None = None

    @property
    def name(self) -> str:
        return source_name(self.source)


def source_name(source: str) -> str:
    """The file name of a record's source (after the last `/` or `::`): the key that joins a
    record with per-image tables such as `split.csv`, wherever the dataset lives."""
    return source.rsplit("::", 1)[-1].rsplit("/", 1)[-1]
