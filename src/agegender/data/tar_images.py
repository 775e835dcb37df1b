"""Images inside a tar archive, listed and decoded in sequential passes, never unpacked to disk."""

from __future__ import annotations

import tarfile
from collections.abc import Iterable, Iterator
from functools import cached_property
from pathlib import Path, PurePosixPath

import numpy as np

from agegender.data.base import FaceSource
from agegender.data.files import fingerprint_files, is_visible_image
from agegender.imageio import ImageReadError, decode_image


def list_image_members(path: Path) -> list[str]:
    """Names of the visible image files in a tar archive, in archive order (one pass)."""
    with tarfile.open(path, "r|*") as archive:
        return [member.name for member in archive
                if member.isfile() and is_visible_image(PurePosixPath(member.name))]


class TarImageSource(FaceSource):
    """A source whose records are members of one tar archive (.tar, .tar.gz/.tgz, or any
    compression tarfile reads); a record's source is `<archive>::<member>`.

    The archive is only ever read sequentially: random access into a gzip stream would
    decompress from the start for every member, so `iter_images` makes one streaming pass.
    Subclasses set `path` before building their records with `member_source`.
    """

    path: Path

    def member_source(self, member: str) -> str:
        return f"{self.path}::{member}"

    @cached_property
    def fingerprint(self) -> str:
        return fingerprint_files([self.path])

    def iter_images(
        self, indices: Iterable[int]
    ) -> Iterator[tuple[int, np.ndarray | ImageReadError]]:
        wanted: dict[str, list[int]] = {}
        for index in dict.fromkeys(indices):
            member = self.records[index].source.rsplit("::", 1)[1]
            wanted.setdefault(member, []).append(index)
        with tarfile.open(self.path, "r|*") as archive:
            for member in archive:
                member_indices = wanted.pop(member.name, None) if member.isfile() else None
                if member_indices is None:
                    continue
                result = self._decode(archive, member)
                for index in member_indices:
                    yield index, result
                if not wanted:
                    break
        for member, member_indices in wanted.items():
            for index in member_indices:
                yield index, ImageReadError(self.member_source(member), "no longer in the archive")

    def _decode(
        self, archive: tarfile.TarFile, member: tarfile.TarInfo
    ) -> np.ndarray | ImageReadError:
        source = self.member_source(member.name)
        try:
            return decode_image(archive.extractfile(member).read(), source=source)
        except ImageReadError as error:
            return error
