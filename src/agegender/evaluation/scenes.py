"""Synthetic multi-face scenes with known face places, to measure detection and alignment.

Face crops (e.g. UTKFace's) are pasted at random places, sizes and angles onto smooth random
backgrounds; since every face's place is known, detection recall, false positives and the
agreement between predicting a face in the scene and predicting its crop alone can be counted.
Used by `benchmarks/synthetic_scenes.py`, `benchmarks/folder_speed.py` and the tests.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from agegender.inference.predictor import FaceResult, Predictor

SIDE_BANDS = ((40, 80), (80, 150), (150, 301))


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


def make_scene(rng: np.random.Generator, crops: list[np.ndarray], chosen: list[int],
               sides: tuple[int, int] = (40, 300), max_angle: float = 20.0,
               frame_scale: int = 1) -> tuple[np.ndarray, list[PlacedFace]]:
    """Paste the chosen crops (side in `sides` px, rotated up to ±`max_angle`°) without
    overlap onto a new background of 640–1600 × 480–1200 px, times `frame_scale` (the faces
    keep their sides, so they are smaller parts of larger photos); crops that find no room
    are left out."""
    width = int(rng.integers(640, 1600)) * frame_scale
    height = int(rng.integers(480, 1200)) * frame_scale
    scene = background(rng, width, height)
    placed: list[PlacedFace] = []
    occupied: list[tuple[float, float, float]] = []  # centre x, centre y, radius
    for index in chosen:
        side = int(rng.integers(sides[0], sides[1] + 1))
        angle = float(rng.uniform(-max_angle, max_angle))
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


def match_faces(rows: list[FaceResult], placed: list[PlacedFace]
                ) -> tuple[list[tuple[FaceResult, PlacedFace]], list[FaceResult]]:
    """Pair detections with true faces: the detection's centre inside the pasted crop and its
    box 0.1–1.5 × the crop's area. Returns the pairs and the unmatched (false) detections."""
    pairs, false = [], []
    matched: set[int] = set()
    for row in rows:
        centre = np.array([row.x + row.w / 2, row.y + row.h / 2])
        match = next((face for face in placed if face.index not in matched
                      and face.contains(centre)
                      and 0.1 <= row.w * row.h / face.area <= 1.5), None)
        if match is None:
            false.append(row)
        else:
            matched.add(match.index)
            pairs.append((row, match))
    return pairs, false


def evaluate_scenes(predictor: Predictor, crops: list[np.ndarray], scenes: int, seed: int,
                    frame_scale: int = 1) -> dict:
    """Recall, false positives per image, and scene-vs-crop agreement over `scenes` scenes of
    2–6 faces each (seeded; `make_scene`'s `frame_scale`)."""
    rng = np.random.default_rng(seed)
    # a crop alone is one face, taken as training takes a dataset's crops
    crop_predictor = Predictor(predictor.backend, predictor.batch_size, predictor.detector,
                               whole_image=True)
    alone: dict[int, FaceResult] = {}
    true_faces = found = false_positives = 0
    age_differences, same_gender, sides = [], [], []
    seconds = 0.0
    for _ in range(scenes):
        chosen = [int(i) for i in rng.choice(len(crops), size=int(rng.integers(2, 7)),
                                             replace=False)]
        scene, placed = make_scene(rng, crops, chosen, frame_scale=frame_scale)
        started = time.perf_counter()
        rows = [row for row in predictor.predict(scene) if row.error is None]
        seconds += time.perf_counter() - started
        pairs, false = match_faces(rows, placed)
        true_faces += len(placed)
        found += len(pairs)
        false_positives += len(false)
        for row, face in pairs:
            if face.index not in alone:
                alone[face.index] = crop_predictor.predict(crops[face.index])[0]
            age_differences.append(abs(row.age - alone[face.index].age))
            same_gender.append(row.gender == alone[face.index].gender)
            sides.append(np.sqrt(face.area))
    return {
        "scenes": scenes, "true_faces": true_faces, "detected": found,
        "recall": found / true_faces, "false_positives": false_positives,
        "false_positives_per_image": false_positives / scenes,
        "age_mae_scene_vs_crop": float(np.mean(age_differences)),
        "gender_agreement": float(np.mean(same_gender)),
        "seconds_per_scene": seconds / scenes,
        "agreement_by_face_side": _agreement_by_side(np.array(sides), np.array(age_differences),
                                                     np.array(same_gender)),
    }


def _agreement_by_side(sides: np.ndarray, age_differences: np.ndarray,
                       same_gender: np.ndarray) -> dict[str, dict]:
    """Scene-vs-crop agreement per band of pasted face side: small faces lose the most detail."""
    bands = {}
    for low, high in SIDE_BANDS:
        inside = (sides >= low) & (sides < high)
        if inside.any():
            bands[f"{low}-{high} px"] = {
                "faces": int(inside.sum()),
                "age_mae_scene_vs_crop": float(age_differences[inside].mean()),
                "gender_agreement": float(same_gender[inside].mean())}
    return bands
