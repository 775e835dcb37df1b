"""Shared fixtures: the real UTKFace archive (from ../shared), small synthetic faces, and a
sample portrait."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "utkface" / "UTKFace.tar.gz"


@pytest.fixture(scope="session")
def archive() -> Path:
    path = Path(os.environ.get("AGEGENDER_UTKFACE", ARCHIVE))
    if not path.is_file():
        pytest.skip(f"UTKFace archive not found at {path}")
    return path


@pytest.fixture(scope="session")
def grace_hopper():
    """matplotlib's sample portrait, centre-cropped (87.5 %), as a loader of a 1×3×size×size
    tensor in [0, 1]."""
    cbook = pytest.importorskip("matplotlib.cbook")
    import torch
    from PIL import Image

    image = Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")
    width, height = image.size
    side = int(min(width, height) * 0.875)
    left, top = (width - side) // 2, (height - side) // 2
    image = image.crop((left, top, left + side, top + side))

    def load(size: int) -> torch.Tensor:
        pixels = np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), np.float32)
        return torch.from_numpy(pixels / 255).permute(2, 0, 1).unsqueeze(0)

    return load


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Tests never read or write the user's cache; the session shares one for speed."""
    monkeypatch.setenv("AGEGENDER_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def synthetic_faces(count: int, size: int, seed: int = 0):
    """Images whose labels are learnable: brightness encodes gender, a bright square's size age."""
    from agegender.data.labelled import LabelledFaces

    rng = np.random.default_rng(seed)
    gender = rng.integers(0, 2, count).astype(np.float32)
    age = rng.uniform(1, 80, count).astype(np.float32)
    images = rng.integers(0, 60, (count, size, size, 3)).astype(np.uint8)
    images[gender == 1] += 80
    for i in range(count):
        side = int(2 + age[i] / 80 * (size - 4))
        images[i, :side, :side] = 250
    split = np.array(["train"] * (count - count // 4) + ["val"] * (count // 8)
                     + ["test"] * (count - (count - count // 4) - count // 8))
    return LabelledFaces(images=images, age=age, gender=gender,
                         race=np.full(count, np.nan, np.float32),
                         sources=[f"synthetic/{i}.png" for i in range(count)], split=split)
