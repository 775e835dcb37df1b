"""The ranges of the settings a user gives, written once: the command line, the Python API
(`Predictor`) and the server's settings (`ServeSettings`) check them the same way, so a value
out of range is refused when it is given, in a sentence that names it, never later as a crash
or a server that answers 5xx."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Bound:
    """Allowed values: at least `low` (more than `low` when `above`), at most `high`."""

    low: float | None = None
    high: float | None = None
    above: bool = False

    def problem(self, value: float) -> str | None:
        """Why `value` is out of range, or None."""
        if value != value:  # NaN
            return "must be a number"
        if self.low is not None and (value <= self.low if self.above else value < self.low):
            wanted = f"more than {self.low:g}" if self.above else f"at least {self.low:g}"
            if self.high is not None:
                wanted = f"between {self.low:g} and {self.high:g}"
            return f"must be {wanted}"
        if self.high is not None and value > self.high:
            if self.low is not None:
                return f"must be between {self.low:g} and {self.high:g}"
            return f"must be at most {self.high:g}"
        return None


LIMITS: dict[str, Bound] = {
    "batch_size": Bound(1), "workers": Bound(1), "every": Bound(1), "limit": Bound(1),
    "max_faces": Bound(1), "min_face": Bound(0), "min_score": Bound(0, 1),
    "ray_actors": Bound(1), "port": Bound(0, 65535), "max_batch": Bound(1),
    "max_queue": Bound(1), "model_threads": Bound(1), "batch_wait_ms": Bound(0),
    "retry_after_s": Bound(0), "max_upload_bytes": Bound(1), "max_upload_mb": Bound(0, above=True),
    "max_batch_images": Bound(1), "request_timeout_s": Bound(0, above=True),
    "timeout": Bound(0, above=True), "live_connections": Bound(1),
    "live_idle": Bound(0, above=True), "live_in_flight": Bound(1),
    "max_seconds": Bound(0, above=True),
}
"""Every bounded setting by its name (the flag's, with `_` for `-`)."""


def check(name: str, value: float | None, label: str | None = None) -> None:
    """Raise ValueError naming the setting (`label`, default `name`) when `value` is out of
    `LIMITS[name]`; None (not given) passes."""
    if value is None:
        return
    problem = LIMITS[name].problem(value)
    if problem is not None:
        raise ValueError(f"{label or name} {problem} (got {value:g})")


def flag_type(name: str, kind: type = int) -> Callable[[str], float]:
    """An argparse `type` that parses a `kind` and checks it against `LIMITS[name]`: argparse
    then refuses a bad value with exit status 2 and a sentence naming the flag."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'a whole number' if kind is int else 'a number'}") from None
        problem = LIMITS[name].problem(value)
        if problem is not None:
            raise argparse.ArgumentTypeError(f"{problem} (got {text})")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse
