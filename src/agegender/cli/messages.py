"""What the commands tell their user: counts with the right plural, failure reasons up to a
cap, and logging set by `-v`/`-q` wherever they are given."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("agegender")

MAX_REASONS = 10
"""Failures whose reason is logged one line each; the rest are counted (all are in the
output rows)."""


def plural(count: int, word: str, words: str | None = None) -> str:
    """`1 image`, `2 images`, `0 videos`, `1 person`/`2 people` (with `words`)."""
    return f"{count} {word if count == 1 else words or word + 's'}"


def verbosity_parser() -> argparse.ArgumentParser:
    """`-v`/`-q` as a parent of the main parser and of every command, so either works
    before or after the command's name (a value given after it wins)."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("output").add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                       help="say more: debug messages, and Ray's own messages with --engine ray")
    group.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="say less: only warnings and errors, no progress bar")
    return parent


def log_level(args: argparse.Namespace) -> int:
    if getattr(args, "verbose", False):
        return logging.DEBUG
    return logging.WARNING if getattr(args, "quiet", False) else logging.INFO


class FailureLog:
    """Logs the reason of each failure, one line each, up to `MAX_REASONS`; `close` says
    how many more there were and where to find them."""

    def __init__(self, where: str | None = None) -> None:
        self.count = 0
        self.where = where

    def add(self, source: str, reason: str) -> None:
        self.count += 1
        if self.count <= MAX_REASONS:
            log.warning("%s: %s", source, reason)

    def close(self) -> None:
        hidden = self.count - MAX_REASONS
        if hidden > 0:
            where = f"; every reason is in {self.where}" if self.where else ""
            log.warning("… and %d more %s%s", hidden, "failure" if hidden == 1 else "failures",
                        where)


class Tally:
    """Counts of a predict run, for its last line."""

    def __init__(self, failures: FailureLog) -> None:
        self.failures = failures
        self.faces = self.images_without_face = self.frames_without_face = 0

    def count(self, file: str, frame: int | None, error: str | None) -> None:
        """One output row: a face, an image or frame without one, or a failure."""
        from agegender.inference.predictor import NO_FACE

        if error is None:
            self.faces += 1
        elif error == NO_FACE:
            if frame is None:
                self.images_without_face += 1
            else:
                self.frames_without_face += 1
        else:
            self.failures.add(file if frame is None else f"{file} frame {frame}", error)

    def summary(self, inputs: list, missing: list, output: Path | None,
                live: int = 0, tracks: int | None = None) -> str:
        """The run's last line: what was read, and what came of it."""
        from agegender.inference.video import is_video

        videos = sum(is_video(item.path) for item in inputs)
        parts = [plural(len(inputs) - videos, "image")]
        if videos:
            parts.append(plural(videos, "video"))
        if live:
            parts.append(plural(live, "live source"))
        if missing:
            parts.append(f"{len(missing)} not found")
        counts = [plural(self.faces, "face"),
                  f"{plural(self.images_without_face, 'image')} without a face"]
        if self.frames_without_face:
            counts.append(f"{plural(self.frames_without_face, 'video frame')} without a face")
        counts.append(f"{self.failures.count} failed")
        if tracks is not None:
            counts.append(f"{plural(tracks, 'track')} of faces in videos")
        where = f" to {output}" if output else ""
        return f"{', '.join(parts)}{where}: {', '.join(counts)}"
