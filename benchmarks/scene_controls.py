"""Controls for the scene-vs-crop agreement: how much do predictions move when a UTKFace test
crop is only pasted, unchanged, onto a larger canvas?

Each crop is predicted alone, then again after pasting it at its own size (no resampling) into
the middle of a 400×400 canvas: black (the fill that alignment uses outside a crop), smooth
noise (the scene benchmark's background), or noise with the crop rotated by 20°. Detection
and alignment then see the same face at other pixel offsets. Any difference is the model's
sensitivity to that, not to resolution.

A last control leaves the detector out: the crop's own detected landmarks are moved together
by 0.5, 1 or 2 px in a random direction before alignment, so the face is framed a little
differently and nothing else changes.

    python -m benchmarks.scene_controls --data ../shared/data/utkface/UTKFace.tar.gz [--faces 150]
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
from PIL import Image

from agegender.evaluation.scenes import background
from agegender.faces.canonical import canonical_crop
from agegender.inference.predictor import Predictor
from benchmarks.common import argument_parser, read_split_crops

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


def build_parser() -> argparse.ArgumentParser:
    parser = argument_parser(__spec__.name, __doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", type=Path, help="default: the bundled model")
    parser.add_argument("--faces", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    crops = read_split_crops(args.data)
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
    shifted_landmarks(predictor, crops, rng.choice(len(crops), size=args.faces, replace=False),
                      rng)


def shifted_landmarks(predictor: Predictor, crops: list[np.ndarray], chosen: np.ndarray,
                      rng: np.random.Generator) -> None:
    """Print how far predictions move when the aligned crop is reframed by a fraction of a
    pixel to 2 px (the landmarks shifted together; same image, same detector output)."""
    detections = [(crops[index], found[0]) for index in chosen
                  if (found := predictor.detector.detect(crops[index]))]
    prep = predictor.preprocessing

    def predict(shift: float) -> tuple[np.ndarray, np.ndarray]:
        batch = []
        for crop, detection in detections:
            angle = rng.uniform(0, 2 * np.pi)
            moved = detection.landmarks + shift * np.array([np.cos(angle), np.sin(angle)])
            batch.append(canonical_crop(crop, prep, dataclasses.replace(detection,
                                                                        landmarks=moved)))
        out = predictor.backend.predict(np.stack(batch))
        return out.age, out.prob_female >= 0.5

    age, female = predict(0.0)
    for shift in (0.5, 1.0, 2.0):
        moved_age, moved_female = predict(shift)
        print(f"{f'landmarks + {shift} px':>20}: {len(detections)} faces, |Δ age| "
              f"{np.abs(moved_age - age).mean():.2f} years, gender agreement "
              f"{(moved_female == female).mean():.3f}")


if __name__ == "__main__":
    main()
