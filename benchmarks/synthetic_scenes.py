"""Detection recall and crop-vs-scene agreement on synthetic multi-face scenes.

Scenes are built from UTKFace `split == test` crops: 2–6 faces per scene, each crop pasted at a
random place with a side of 40–300 px and rotated by up to ±20°, onto a smooth random
background. Every face's true place is known, so the script reports:

- detection recall: true faces with a detection whose centre lies inside the pasted crop and
  whose box is 0.1–1.5 × the crop's area;
- false positives per image: detections that match no true face;
- agreement: for each detected face, age and gender from the scene vs from the same crop given
  alone to `agegender predict` (mean |Δ age| in years, share of equal genders).

    python benchmarks/synthetic_scenes.py --data ../shared/data/utkface/UTKFace.tar.gz \
        [--scenes 200] [--seed 0] [--model M.onnx] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from agegender.data import assign_splits, find_split_file, open_source
from agegender.imageio import ImageReadError
from agegender.inference.predictor import Predictor


@dataclass
class PlacedFace:
    """Where a crop was pasted: its corner points in scene pixels (after rotation)."""

    index: int
    corners: np.ndarray  # 4×2

    @property
    def area(self) -> float:
        x, y = self.corners[:, 0], self.corners[:, 1]
        return 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))

    def contains(self, point: np.ndarray) -> bool:
        """Point inside the (convex) rotated square."""
        signs = []
        for start, end in zip(self.corners, np.roll(self.corners, -1, axis=0), strict=True):
            edge, offset = end - start, point - start
            signs.append(edge[0] * offset[1] - edge[1] * offset[0])
        return all(s >= 0 for s in signs) or all(s <= 0 for s in signs)


def background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """Smooth coloured noise: texture without faces."""
    small = rng.integers(0, 256, (max(2, height // 80), max(2, width // 80), 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
    return image.filter(ImageFilter.GaussianBlur(3))


def make_scene(rng: np.random.Generator, crops: list[np.ndarray], chosen: list[int]
               ) -> tuple[np.ndarray, list[PlacedFace]]:
    """Paste the chosen crops without overlap (retrying places) onto a new background."""
    width, height = int(rng.integers(640, 1600)), int(rng.integers(480, 1200))
    scene = background(rng, width, height)
    placed: list[PlacedFace] = []
    occupied: list[tuple[float, float, float]] = []  # centre x, centre y, radius
    for index in chosen:
        side = int(rng.integers(40, 301))
        angle = float(rng.uniform(-20, 20))
        face = Image.fromarray(crops[index]).resize((side, side), Image.Resampling.LANCZOS)
        rotated = face.convert("RGBA").rotate(angle, resample=Image.Resampling.BICUBIC,
                                              expand=True)
        radius = side * 0.75
        for _ in range(50):
            cx = float(rng.uniform(radius, width - radius)) if width > 2 * radius else width / 2
            cy = float(rng.uniform(radius, height - radius)) if height > 2 * radius else height / 2
            if all(np.hypot(cx - x, cy - y) > radius + r for x, y, r in occupied):
                break
        else:
            continue  # no room left: fewer faces in this scene
        occupied.append((cx, cy, radius))
        scene.paste(rotated, (round(cx - rotated.width / 2), round(cy - rotated.height / 2)),
                    rotated)
        theta = np.radians(-angle)  # PIL rotates counter-clockwise; image y points down
        half = side / 2
        square = np.array([[-half, -half], [half, -half], [half, half], [-half, half]])
        rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        placed.append(PlacedFace(index, square @ rotation.T + (cx, cy)))
    return np.asarray(scene.convert("RGB")), placed


def read_test_crops(data: Path) -> list[np.ndarray]:
    source = open_source(data)
    split_file = find_split_file(data)
    splits = assign_splits(source.records, split_file)
    indices = [i for i, split in enumerate(splits) if split == "test"]
    crops = {}
    for index, image in source.iter_images(indices):
        if not isinstance(image, ImageReadError):
            crops[index] = image
    return [crops[i] for i in indices if i in crops]


def evaluate(predictor: Predictor, crops: list[np.ndarray], scenes: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    alone_cache: dict[int, object] = {}
    true_faces = found = false_positives = 0
    age_differences, same_gender = [], []
    detect_seconds = 0.0
    for _ in range(scenes):
        chosen = [int(i) for i in rng.choice(len(crops), size=int(rng.integers(2, 7)),
                                             replace=False)]
        scene, placed = make_scene(rng, crops, chosen)
        started = time.perf_counter()
        rows = [row for row in predictor.predict(scene) if row.error is None]
        detect_seconds += time.perf_counter() - started
        true_faces += len(placed)
        matched: set[int] = set()
        for row in rows:
            centre = np.array([row.x + row.w / 2, row.y + row.h / 2])
            match = next((face for face in placed if face.index not in matched
                          and face.contains(centre)
                          and 0.1 <= row.w * row.h / face.area <= 1.5), None)
            if match is None:
                false_positives += 1
                continue
            matched.add(match.index)
            if match.index not in alone_cache:
                alone_cache[match.index] = predictor.predict(crops[match.index])[0]
            alone = alone_cache[match.index]
            age_differences.append(abs(row.age - alone.age))
            same_gender.append(row.gender == alone.gender)
        found += len(matched)
    return {
        "scenes": scenes, "true_faces": true_faces, "detected": found,
        "recall": found / true_faces, "false_positives": false_positives,
        "false_positives_per_image": false_positives / scenes,
        "age_mae_scene_vs_crop": float(np.mean(age_differences)),
        "gender_agreement": float(np.mean(same_gender)),
        "seconds_per_scene": detect_seconds / scenes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", type=Path, help="default: the bundled model")
    parser.add_argument("--scenes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    predictor = Predictor(args.model)
    results = evaluate(predictor, read_test_crops(args.data), args.scenes, args.seed)
    for key, value in results.items():
        print(f"{key:>24}: {value:.4f}" if isinstance(value, float) else f"{key:>24}: {value}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
