"""`agegender convert-checkpoint`: re-save an old checkpoint as tensors and plain data.

The one place that unpickles arbitrary objects, so only for files whose source the user
trusts: older versions could store numpy scalars, tuples or other objects, which
`torch.load(weights_only=True)` refuses. The converted file opens safely everywhere else.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agegender.models.checkpoint import FORMAT_VERSION, read_checkpoint, write_checkpoint


def convert_checkpoint(old: Path, new: Path) -> Path:
    """Load `old` trusting its pickled objects, write `new` as tensors and plain data, and check
    that `new` opens safely."""
    if not old.is_file():
        raise FileNotFoundError(f"{old}: no such checkpoint")
    try:
        payload = torch.load(old, map_location="cpu", weights_only=False)
    except Exception as error:
        raise ValueError(f"{old}: not a readable checkpoint ({error})") from error
    if not isinstance(payload, dict) or "model_state" not in payload or "config" not in payload:
        raise ValueError(f"{old}: not an agegender checkpoint (no model_state and config)")
    plain = _plain(payload, str(old))
    plain["format_version"] = FORMAT_VERSION
    write_checkpoint(new, plain)
    read_checkpoint(new)
    return new


def _plain(value: Any, where: str) -> Any:
    """`value` with numpy values and dataclasses turned into tensors and plain data."""
    if isinstance(value, np.generic):  # before float: numpy's float64 is a float subclass
        return value.item()
    if isinstance(value, torch.Tensor | str | bool | int | float | None):
        return value
    if isinstance(value, dict):
        return {str(key): _plain(item, f"{where}[{key!r}]") for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_plain(item, where) for item in value)
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value), where)
    raise ValueError(f"{where}: holds a {type(value).__name__}, which has no plain-data form")
