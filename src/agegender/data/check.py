"""`agegender check-data`: what training would read from a dataset, before training on it.

Opens the data as `train` and `evaluate` do (format detection, label parsing, splits), then
decodes every image, so a user sees each skipped row and unreadable file, with its reason,
in seconds instead of in the warnings of a run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from agegender.data.records import GENDER_NAMES
from agegender.data.sources import open_source
from agegender.data.splits import assign_splits, find_split_file


@dataclass
class DataCheck:
    """The outcome: counts of what is usable, and (entry, reason) for what is not."""

    path: Path
    format: str
    usable: int
    ages: int = 0
    age_ranges: int = 0
    genders: Counter = field(default_factory=Counter)
    splits: Counter = field(default_factory=Counter)
    split_from: str = ""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)

    @property
    def problems(self) -> int:
        return len(self.skipped) + len(self.unreadable)

    def lines(self) -> Iterable[str]:
        """The report a person reads: a summary, then one line per problem."""
        yield (f"{self.path}: {self.format}, {self.usable} images usable, "
               f"{len(self.skipped)} entries skipped, {len(self.unreadable)} unreadable")
        genders = ", ".join(f"{GENDER_NAMES[label]} {count}"
                            for label, count in sorted(self.genders.items()))
        yield (f"labels: age {self.ages}, age range {self.age_ranges}, gender "
               f"{sum(self.genders.values())}" + (f" ({genders})" if genders else ""))
        splits = ", ".join(f"{name} {count}" for name, count in sorted(self.splits.items()))
        yield f"splits ({self.split_from}): {splits}"
        for entry, reason in self.skipped:
            yield f"skipped {entry}: {reason}"
        for _, reason in self.unreadable:
            yield f"unreadable {reason}"  # the reason names the file


def check_data(path: Path, split_file: Path | None = None, decode: bool = True) -> DataCheck:
    """Open the dataset at `path`, count its labels and splits, and (with `decode`) decode
    each image; raises FileNotFoundError / ValueError when nothing usable is there."""
    source = open_source(path, warn=False)
    unreadable: list[tuple[str, str]] = []
    if decode:
        count = len(source.records)
        images = tqdm(source.iter_images(range(count)), total=count, unit="image",
                      desc="decoding", disable=count < 100)
        unreadable = [(source.records[index].source, str(image)) for index, image in images
                      if isinstance(image, Exception)]
    failed = {entry for entry, _ in unreadable}
    records = [record for record in source.records if record.source not in failed]
    split_file = split_file or find_split_file(path)
    own = bool(records) and all(record.split is not None for record in records)
    return DataCheck(
        path=path, format=type(source).__name__, usable=len(records),
        ages=sum(record.age is not None for record in records),
        age_ranges=sum(record.age_range is not None for record in records),
        genders=Counter(record.gender for record in records if record.gender is not None),
        splits=Counter(assign_splits(records, split_file=split_file)),
        split_from=(str(split_file) if split_file else "the data's own" if own
                    else "none given: a seeded 80/10/10 split"),
        skipped=list(source.skipped), unreadable=unreadable)
