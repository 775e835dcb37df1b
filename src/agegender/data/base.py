"""What every dataset format provides: labelled records and a way to decode their pixels."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from agegender.data.records import FaceRecord
from agegender.imageio import ImageReadError


@dataclass
class FaceSource(ABC):
    """A dataset on disk: its records, and decoding of their images in an order cheap for it.

    `records` holds only the well-formed entries; `skipped` lists (entry, reason) for the
    malformed ones so loaders can report them in one summary instead of failing.
    """

    records: list[FaceRecord]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    @abstractmethod
    def fingerprint(self) -> str:
        """Changes when the data on disk changes (path, size, mtime): the cache key's source."""

    @abstractmethod
    def iter_images(
        self, indices: Iterable[int]
    ) -> Iterator[tuple[int, np.ndarray | ImageReadError]]:
        """Yield (index, H×W×3 uint8 RGB array or the error) for each requested record index.

        Order is whatever is cheapest for the format (archive order for a .tar.gz); every
        requested index is yielded exactly once.
        """
