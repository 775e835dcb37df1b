"""Configuration fields that document themselves: each carries the help text its flag shows.

Configuration dataclasses declare their fields with `option(...)`; `training.flags` turns them
into command-line flags, so a field's meaning is written once, beside the field.
"""

from __future__ import annotations

from dataclasses import MISSING, field
from typing import Any


def option(default: Any = MISSING, *, doc: str, default_factory: Any = MISSING,
           flag: str | None = None, choices: tuple[str, ...] | None = None,
           cli: bool = True) -> Any:
    """A dataclass field with `doc` as its help text.

    `flag` renames the command-line flag (default: `--field-name`), `choices` limits its values,
    and `cli=False` keeps a field out of the command line (set it in a YAML config instead).
    """
    metadata = {"doc": doc, "flag": flag, "choices": choices, "cli": cli}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)
