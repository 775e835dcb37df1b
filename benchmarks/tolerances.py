"""Accuracy of the faster paths against today's: INT8 networks, and reduced decoding.

Each path runs the whole pipeline (`Predictor`: detection, refinement, alignment, the model) on
the same images: float, INT8, and float with YuNet searching for the faces (RetinaFace still
refining their points, in 2 passes). They are compared with the float networks on fully decoded
images:

- UTKFace `split == test` crops: age MAE and gender accuracy, each crop taken as `agegender
  evaluate` takes it (its subject detected and aligned, the crop whole when none is found);
- LFW `split == test` photos: gender accuracy, the same way (the face over the centre);
- synthetic scenes of UTKFace test crops (`benchmarks.synthetic_scenes`): face recall;
- large photos: UTKFace test crops upscaled to 12 and 16 MP, saved as JPEG in a temporary
  folder: the same faces found (box IoU ≥ 0.5) and the mean |Δ age| of those faces;
- large scenes: synthetic scenes 3 times as large each way (1,920–4,800 px), their faces
  still 40–300 px: face recall.

Reduced decoding changes only images whose longest side is over the detector's 1,280 px:
large JPEGs are decoded at 1/2, 1/4 or 1/8 scale, and an image whose half, quarter or eighth
is 960–1,280 px is searched at that size instead of 1,280 px (`DetectorConfig.fine_side`).
So it is compared on the large photos and scenes alone, against the whole decode searched at
1,280 px: the other images take the same path.

    python -m benchmarks.tolerances --utkface ../shared/data/utkface/UTKFace.tar.gz \
        --lfw ../shared/data/lfw [--limit N] [--scenes 200] [--large 40] [--json FILE]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from agegender.data.records import GENDER_NAMES
from agegender.evaluation.scenes import evaluate_scenes
from agegender.faces.detector import DetectorConfig, FaceDetector, intersection_over_union
from agegender.inference.predictor import FaceResult, Predictor
from benchmarks.common import argument_parser, large_photo, read_split_faces, write_json

YUNET_SEARCH = DetectorConfig(search="yunet")
"""The other search network (refined in 2 passes, its default)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argument_parser(__spec__.name, __doc__)
    parser.add_argument("--utkface", type=Path, required=True)
    parser.add_argument("--lfw", type=Path, required=True)
    parser.add_argument("--limit", type=int, help="at most this many images of each split")
    parser.add_argument("--scenes", type=int, default=200)
    parser.add_argument("--large", type=int, default=40)
    parser.add_argument("--large-scenes", type=int, default=40)
    parser.add_argument("--json", type=Path)
    return parser


def dataset_figures(predictor: Predictor, images: list[np.ndarray], labels: dict) -> dict:
    """Age MAE (where the labels have ages) and gender accuracy of each image's one face."""
    ages, females = [], []
    for image in images:
        face = predictor.find_faces(image)
        prediction = predictor.predict_crops(np.stack([face[0].crop]))[0]
        ages.append(prediction["age"])
        females.append(prediction["gender"] == GENDER_NAMES[1])
    figures = {"n": len(images), "gender_accuracy": float(np.mean(
        np.array(females) == (labels["gender"] == 1)))}
    if np.isfinite(labels["age"]).all():
        figures["age_mae"] = float(np.mean(np.abs(np.array(ages) - labels["age"])))
    return figures


def write_large_photos(crops: list[np.ndarray], count: int, folder: Path) -> list[Path]:
    """`count` crops as 12 and 16 MP photos (`large_photo`), JPEG at quality 90."""
    paths = []
    for index, crop in enumerate(crops[:count]):
        paths.append(folder / f"large_{index:03d}.jpg")
        large_photo(crop, index).save(paths[-1], quality=90)
    return paths


def large_agreement(reference: list[list[FaceResult]], other: list[list[FaceResult]]) -> dict:
    """Faces of `reference` found again in `other` (box IoU ≥ 0.5), faces of `other` not in
    `reference`, and the mean |Δ age| over the faces found in both."""
    matched, extra, differences, total = 0, 0, [], 0
    for rows_a, rows_b in zip(reference, other, strict=True):
        faces_a = [row for row in rows_a if row.error is None]
        faces_b = [row for row in rows_b if row.error is None]
        total += len(faces_a)
        boxes_b = np.array([[r.x, r.y, r.x + r.w, r.y + r.h] for r in faces_b]).reshape(-1, 4)
        used = set()
        for row in faces_a:
            if not len(boxes_b):
                break
            overlaps = intersection_over_union(
                np.array([row.x, row.y, row.x + row.w, row.y + row.h]), boxes_b)
            best = int(overlaps.argmax())
            if overlaps[best] >= 0.5 and best not in used:
                used.add(best)
                matched += 1
                differences.append(abs(row.age - faces_b[best].age))
        extra += len(faces_b) - len(used)
    return {"faces": total, "found_again": matched, "extra": extra,
            "mean_abs_age_difference": float(np.mean(differences)) if differences else None}


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    utk_images, utk_labels = read_split_faces(args.utkface, args.limit, 0, "test")
    lfw_images, lfw_labels = read_split_faces(args.lfw, args.limit, 0, "test")
    paths = {"fp32": Predictor(precision="fp32"), "int8": Predictor(precision="int8"),
             "yunet": Predictor(precision="fp32", detector=FaceDetector(YUNET_SEARCH))}
    results: dict = {}
    for name, predictor in paths.items():
        whole = Predictor(predictor.backend, whole_image=True, detector=predictor.detector)
        results[name] = {
            "utkface": dataset_figures(whole, utk_images, utk_labels),
            "lfw": dataset_figures(whole, lfw_images, lfw_labels),
            "scenes": evaluate_scenes(predictor, utk_images, args.scenes, 0)}
        print(name, results[name])
    with tempfile.TemporaryDirectory() as folder:
        large = write_large_photos(utk_images, args.large, Path(folder))
        today = Predictor(precision="fp32", reduced_decoding=False,
                          detector=FaceDetector(DetectorConfig(min_side=1280)))
        rows = {"today": [today.predict(path) for path in large]}
        rows["reduced"] = [paths["fp32"].predict(path) for path in large]
        rows["int8"] = [paths["int8"].predict(path) for path in large]
        rows["yunet"] = [paths["yunet"].predict(path) for path in large]
    results["large"] = {name: large_agreement(rows["today"], rows[name])
                        for name in ("reduced", "int8", "yunet")}
    results["large"]["int8_against_reduced"] = large_agreement(rows["reduced"], rows["int8"])
    print("large photos against today's path:", results["large"])
    results["large_scenes"] = {
        name: evaluate_scenes(predictor, utk_images, args.large_scenes, 1, frame_scale=3)
        for name, predictor in (("today", today), ("reduced", paths["fp32"]),
                                ("yunet", paths["yunet"]))}
    print("large scenes:", {name: figures["recall"]
                            for name, figures in results["large_scenes"].items()})
    write_json(args.json, results)


if __name__ == "__main__":
    main()
