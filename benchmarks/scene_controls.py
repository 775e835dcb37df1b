"""Controls for the scene-vs-crop agreement: how much do predictions move when a UTKFace test
crop is only pasted, unchanged, onto a larger canvas?

Each crop is predicted alone, then again after pasting it at its own size (no resampling) into
the middle of a 400×400 canvas: black (the fill that alignment uses outside a crop), smooth
noise (the scene benchmark's background), or noise with the crop rotated by 20°. Detection
and alignment then see the same face at other pixel offsets. Any difference is the model's
sensitivity to that, not to resolution.

    python benchmarks/scene_controls.py --data ../shared/data/utkface/UTKFace.tar.gz [--faces 150]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from synthetic_scenes import read_test_crops

from agegender.evaluation.scenes import background
from agegender.inference.predictor import Predictor

CANVAS = 400


def pasted(crop: np.ndarray, control: str, rng: np.random.Generator) -> np.ndarray:
    canvas = (Image.new("RGB", (CANVAS, CANVAS)) if control == "black"
              else background(rng, CANVAS, CANVAS))
    face = Image.fromarray(crop)
    if control == "noise, rotated 20°":
        face = face.convert("RGBA").rotate(20, resample=Image.Resampling.BICUBIC, expand=True)
        canvas.paste(face, ((CANVAS - face.width) // 2, (CANVAS - face.height) // 2), face)
    else:
        canvas.paste(face, ((CANVAS - face.width) // 2, (CANVAS - face.height) // 2))
    return np.asarray(canvas)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", type=Path, help="default: the bundled model")
    parser.add_argument("--faces", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    crops = read_test_crops(args.data)
    rng = np.random.default_rng(args.seed)
    predictor = Predictor(args.model)
    for control in ("black", "noise", "noise, rotated 20°"):
        differences, agreements = [], []
        for index in rng.choice(len(crops), size=args.faces, replace=False):
            alone = predictor.predict(crops[index])[0]
            rows = [row for row in predictor.predict(pasted(crops[index], control, rng))
                    if row.error is None]
            if rows:  # the largest face is the pasted one
                differences.append(abs(rows[0].age - alone.age))
                agreements.append(rows[0].gender == alone.gender)
        print(f"{control:>20}: {len(differences)} faces found, |Δ age| "
              f"{np.mean(differences):.2f} years, gender agreement {np.mean(agreements):.3f}")


if __name__ == "__main__":
    main()
