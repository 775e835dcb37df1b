"""What the commands tell their user: counts with the right plural, failure reasons up to a
cap, and logging set by `-v`/`-q` wherever they are given."""

from __future__ import annotations

import argparse
import logging

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
