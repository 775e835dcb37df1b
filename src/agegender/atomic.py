"""Atomic file writes: a temporary file beside the target, then a rename.

A crash or an interrupt mid-write never leaves a truncated checkpoint, model or metrics file
where a reader (or a resumed run) would trust it.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically, with the usual umask permissions (mkstemp: 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with temporary.open("xb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, values: dict) -> None:
    """Indented JSON; NaN is refused, so every figure written is valid JSON."""
    write_bytes_atomic(path, (json.dumps(values, indent=2, allow_nan=False) + "\n").encode())
