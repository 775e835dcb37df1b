"""Command-line flags made from `TrainConfig`'s fields, so no flag is copied by hand.

Every field declared with `options.option` becomes a flag with its help text: top-level fields
and those of the nested sections alike (`--epochs`, `--low-resolution`, `--antialias`). Flags
the user did not give are absent from the parsed namespace, so `given_overrides` returns
exactly what was asked for, and `--resume` can tell which flags it must refuse.
"""

from __future__ import annotations

import argparse
import types
import typing
from dataclasses import Field, fields, replace
from typing import Any

from agegender.training.config import NESTED, TrainConfig

SCALARS = (int, float, str)


def _flag_fields() -> list[tuple[str, type, Field]]:
    """(destination, owner, field) of every field that is a flag: `epochs`, `augment.flip`."""
    found = []
    for section, owner in [(None, TrainConfig), *NESTED.items()]:
        for definition in fields(owner):
            if definition.name not in NESTED and definition.metadata.get("cli", False):
                dest = definition.name if section is None else f"{section}.{definition.name}"
                found.append((dest, owner, definition))
    return found


def add_config_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup,
                     defaults: TrainConfig | None = None) -> None:
    """One flag per command-line field of `TrainConfig` and its sections; the help shows the
    value in `defaults` (the configuration a run starts from without flags)."""
    for dest, owner, definition in _flag_fields():
        flag = definition.metadata.get("flag") or "--" + definition.name.replace("_", "-")
        kind = _argument_kind(definition, typing.get_type_hints(owner)[definition.name])
        choices = definition.metadata.get("choices")
        if kind.get("action") is not argparse.BooleanOptionalAction and not choices:
            kind.setdefault("metavar", flag.lstrip("-").replace("-", "_").upper())
        shown = "" if defaults is None else f" (default: {_shown(_value(defaults, dest))})"
        parser.add_argument(flag, dest=dest, default=argparse.SUPPRESS,
                            help=(definition.metadata["doc"] + shown).replace("%", "%%"),
                            choices=choices, **kind)


def _value(config: TrainConfig, dest: str) -> Any:
    value: Any = config
    for part in dest.split("."):
        value = getattr(value, part)
    return value


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list | tuple):
        return " ".join(map(str, value)) or "none"
    return "none" if value is None else str(value)


def _argument_kind(definition: Field, hint: Any) -> dict:
    """argparse settings for a field of type `hint` (Optional, list and bool included)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        if definition.metadata.get("flag"):  # a singular flag name: repeat it
            return {"type": item, "action": "append"}
        return {"type": item, "nargs": "+"}
    if hint not in SCALARS:
        raise TypeError(f"{definition.name}: no command-line form for {hint}")
    return {"type": hint}


def given_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The configuration fields the command line set, as `{"epochs": 3, "augment.flip": False}`."""
    names = {dest for dest, _, _ in _flag_fields()}
    return {name: value for name, value in vars(args).items() if name in names}


def apply_overrides(config: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """`config` with the `given_overrides` applied (and validated again)."""
    top = {name: value for name, value in overrides.items() if "." not in name}
    sections: dict[str, dict[str, Any]] = {}
    for name, value in overrides.items():
        if "." in name:
            section, field_name = name.split(".", 1)
            sections.setdefault(section, {})[field_name] = value
    for section, values in sections.items():
        top[section] = replace(getattr(config, section), **values)
    return replace(config, **top)
