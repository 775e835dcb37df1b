"""Images/s of `agegender predict`, of `--engine ray` (Ray started on this machine) and of the
`--aligned` fast path on one folder, and the fast path's accuracy against detection.

1. Speed. The folder holds `--count` UTKFace `split == test` crops and `--count` LFW
   `split == test` photos (250×250), chosen with `--seed` and saved as JPEG (quality 95) in a
   temporary folder. Each engine runs as a subprocess of the `agegender` command on the whole
   folder, writing a CSV, so start-up counts: Python, the model and detector sessions and, for
   Ray, starting Ray and its actor pool. Runs alternate (plain, ray, aligned, plain, …) so a
   busy machine slows them alike; the best of `--rounds` is kept. The Ray rows must equal the
   plain rows (the CSV files are compared byte for byte).
2. The fast path against detection on UTKFace `split == test` (all of it, or `--aligned-limit`
   crops): both commands on a folder of those crops; age MAE and gender accuracy of each row
   set (the largest face of each image) against the labels, and ms per crop end to end.

Run it from the repo root:

    python -m benchmarks.scale --utkface ../shared/data/utkface/UTKFace.tar.gz \
        --lfw ../shared/data/lfw [--count 500] [--rounds 1] [--aligned-limit N] [--json FILE]
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from agegender.data.records import GENDER_NAMES
from benchmarks.common import argument_parser, read_split_faces, write_json

ENGINES = {"plain": [], "ray": ["--engine", "ray"], "aligned": ["--aligned"]}
"""What each measured run adds to `agegender predict FOLDER --output rows.csv`."""


def save_faces(folder: Path, faces: list[np.ndarray], prefix: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{prefix}_{number:04d}.jpg" for number in range(len(faces))]
    for path, face in zip(paths, faces, strict=True):
        Image.fromarray(face).save(path, quality=95)
    return paths


def run_predict(folder: Path, output: Path, extra: list[str]) -> float:
    """Seconds of `agegender predict FOLDER --output OUTPUT [extra]`, start-up included."""
    output.unlink(missing_ok=True)  # an earlier round's file must not pass for this one's
    started = time.perf_counter()
    subprocess.run(["agegender", "predict", str(folder), "--output", str(output), *extra],
                   check=False, stderr=subprocess.DEVNULL,
                   env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    seconds = time.perf_counter() - started
    if not output.is_file():
        sys.exit(f"agegender predict {' '.join(extra)} wrote no {output}")
    return seconds


def speed(work: Path, folder: Path, images: int, rounds: int) -> dict:
    times: dict[str, list[float]] = {name: [] for name in ENGINES}
    for round_number in range(rounds):
        for name, extra in ENGINES.items():
            times[name].append(run_predict(folder, work / f"{name}.csv", extra))
        print(f"round {round_number + 1}: " + ", ".join(
            f"{name} {seconds[-1]:.1f} s" for name, seconds in times.items()), file=sys.stderr)
    best = {name: min(seconds) for name, seconds in times.items()}
    per_second = {name: images / seconds for name, seconds in best.items()}
    return {"images": images, "times_s": times, "best_s": best, "images_per_s": per_second,
            "ray_to_plain": per_second["ray"] / per_second["plain"],
            "aligned_to_plain": per_second["aligned"] / per_second["plain"],
            "ray_rows_equal_plain": (work / "ray.csv").read_bytes()
            == (work / "plain.csv").read_bytes()}


def accuracy(rows_path: Path, labels: dict[str, tuple[float, float]]) -> dict:
    """Age MAE and gender accuracy of the first (largest) face row of each labelled file."""
    first: dict[str, dict] = {}
    with rows_path.open(newline="") as stream:
        for row in csv.DictReader(stream):
            first.setdefault(Path(row["file"]).name, row)
    errors, hits, missing = [], [], 0
    for name, (age, gender) in labels.items():
        row = first.get(name)
        if row is None or row["error"]:
            missing += 1
            continue
        errors.append(abs(float(row["age"]) - age))
        hits.append(row["gender"] == GENDER_NAMES[int(gender)])
    return {"mae": float(np.mean(errors)), "gender_acc": float(np.mean(hits)),
            "without_prediction": missing}


def aligned_against_detection(work: Path, utkface: Path, limit: int | None, seed: int) -> dict:
    faces, labels = read_split_faces(utkface, limit, seed)
    folder = work / "utkface_test"
    paths = save_faces(folder, faces, "utk")
    truth = {path.name: (age, gender) for path, age, gender
             in zip(paths, labels["age"], labels["gender"], strict=True)}
    results = {"crops": len(paths)}
    for name, extra in (("detecting", []), ("aligned", ["--aligned"])):
        seconds = run_predict(folder, work / f"utk_{name}.csv", extra)
        results[name] = {"seconds": seconds, "images_per_s": len(paths) / seconds,
                         "ms_per_crop": 1000 * seconds / len(paths),
                         **accuracy(work / f"utk_{name}.csv", truth)}
    detecting, aligned = results["detecting"], results["aligned"]
    results["speedup"] = aligned["images_per_s"] / detecting["images_per_s"]
    results["mae_difference"] = aligned["mae"] - detecting["mae"]
    results["gender_acc_difference_points"] = 100 * (aligned["gender_acc"]
                                                      - detecting["gender_acc"])
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argument_parser(__spec__.name, __doc__)
    parser.add_argument("--utkface", type=Path, required=True, help="UTKFace archive or folder")
    parser.add_argument("--lfw", type=Path, required=True, help="LFW folder")
    parser.add_argument("--count", type=int, default=500,
                        help="images of each dataset in the speed folder")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--aligned-limit", type=int,
                        help="UTKFace test crops for the accuracy part (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="agegender-scale-"))
    try:
        folder = work / "images"
        save_faces(folder, read_split_faces(args.utkface, args.count, args.seed)[0], "utk")
        save_faces(folder, read_split_faces(args.lfw, args.count, args.seed)[0], "lfw")
        results = {"speed": speed(work, folder, 2 * args.count, args.rounds),
                   "aligned_vs_detecting": aligned_against_detection(
                       work, args.utkface, args.aligned_limit, args.seed)}
    finally:
        shutil.rmtree(work)
    fast = results["speed"]
    print(f"{fast['images']} images: " + ", ".join(
        f"{name} {rate:.1f} images/s" for name, rate in fast["images_per_s"].items())
          + f"; ray/plain {fast['ray_to_plain']:.2f}, rows equal: {fast['ray_rows_equal_plain']}")
    versus = results["aligned_vs_detecting"]
    for name in ("detecting", "aligned"):
        part = versus[name]
        print(f"UTKFace test, {versus['crops']} crops, {name}: {part['images_per_s']:.1f} "
              f"images/s ({part['ms_per_crop']:.1f} ms a crop), MAE {part['mae']:.3f}, "
              f"gender accuracy {100 * part['gender_acc']:.2f} %")
    print(f"aligned/detecting {versus['speedup']:.2f}x, MAE difference "
          f"{versus['mae_difference']:+.3f} years, gender accuracy difference "
          f"{versus['gender_acc_difference_points']:+.2f} points")
    write_json(args.json, results)


if __name__ == "__main__":
    main()
