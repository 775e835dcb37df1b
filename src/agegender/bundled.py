"""The bundled model's identity: which file it is, when it was trained and how it was built.

The ONNX file's metadata carries its preprocessing and labels but no training date (an export
date would not be one, and a checkpoint records none), so the identity is recorded as data in
`assets/bundled_model.json` beside the file. `tests/test_version.py` checks that the recorded
SHA-256 is the shipped file's: replacing the model without updating the record fails the tests.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from agegender import __version__

RECORD = "bundled_model.json"
SHA256_SHOWN = 12
"""Characters of the SHA-256 that `agegender --version` prints (enough to tell files apart)."""


@dataclass(frozen=True)
class BundledModel:
    """What `assets/bundled_model.json` records about the bundled model."""

    sha256: str
    trained: str
    """ISO date of the training run whose weights the file holds."""
    preset: str
    """The preset its network was built from (with `antialias` and `luminance` below)."""
    antialias: bool
    luminance: bool


def bundled_record() -> BundledModel:
    text = resources.files("agegender.assets").joinpath(RECORD).read_text()
    return BundledModel(**json.loads(text))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def version_text() -> str:
    """`agegender --version`: the package version and the bundled model's identity."""
    from agegender.inference.predictor import BUNDLED_MODEL, bundled_model_path

    try:
        path = bundled_model_path()
    except FileNotFoundError:
        return f"agegender {__version__}\nbundled model {BUNDLED_MODEL}: missing"
    record = bundled_record()
    digest = file_sha256(path)
    trained = (f"trained {record.trained}" if digest == record.sha256
               else "not the recorded file: training date unknown")
    return (f"agegender {__version__}\n"
            f"bundled model {BUNDLED_MODEL} sha256:{digest[:SHA256_SHOWN]} {trained}")
