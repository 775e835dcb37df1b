"""Broken files and memory: `agegender predict` on folders built from UTKFace test crops.

`broken`: a folder of good crops plus about 1 % broken files of each kind: corrupt header,
truncated JPEG, empty file, text named .jpg, decompression bomb (a 20000×20000 PNG), and, when
not running as root (root reads any file), a file without read permission. The run must finish,
report every broken file with an error row, and give every good file the same rows as a run on
the good files alone.

`memory`: peak resident memory (`/usr/bin/time -v`) of predicting folders of increasing size
(copies of the test crops); flat means it does not grow with the number of files.

    python -m benchmarks.robustness broken --data ../shared/data/utkface/UTKFace.tar.gz [--good 500]
    python -m benchmarks.robustness memory --data ../shared/data/utkface/UTKFace.tar.gz \
        [--sizes 1000 10000]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.common import argument_parser, read_split_crops, write_json

BROKEN_KINDS = ("corrupt", "truncated", "empty", "not_an_image", "bomb", "unreadable")


def write_broken(path: Path, kind: str, good_jpeg: bytes) -> None:
    if kind == "corrupt":
        path.write_bytes(b"\x00" * 64 + good_jpeg[64:])
    elif kind == "truncated":
        path.write_bytes(good_jpeg[: len(good_jpeg) // 3])
    elif kind == "empty":
        path.touch()
    elif kind == "not_an_image":
        path.write_text("this is a text file, not a photo\n")
    elif kind == "bomb":
        Image.new("1", (20000, 20000)).save(path.with_suffix(".png"))
        path.with_suffix(".png").rename(path)
    elif kind == "unreadable":
        path.write_bytes(good_jpeg)
        path.chmod(0)


def predict(folder: Path, output: Path, extra: list[str] | None = None) -> tuple[int, str]:
    """Run `agegender predict` under /usr/bin/time -v; exit status and its stderr."""
    result = subprocess.run(["/usr/bin/time", "-v", "agegender", "predict", str(folder),
                             "--output", str(output), *(extra or [])],
                            capture_output=True, text=True)
    return result.returncode, result.stderr


def rows_by_file(output: Path) -> dict[str, list[dict]]:
    """Rows keyed by file name, each without its `file` cell (the folders differ)."""
    rows: dict[str, list[dict]] = {}
    with output.open() as stream:
        for row in csv.DictReader(stream):
            rows.setdefault(Path(row.pop("file")).name, []).append(row)
    return rows


def broken(args: argparse.Namespace, crops: list[np.ndarray], work: Path) -> dict:
    good_dir, mixed_dir = work / "good", work / "mixed"
    good_dir.mkdir()
    mixed_dir.mkdir()
    rng = np.random.default_rng(args.seed)
    for number, index in enumerate(rng.choice(len(crops), size=args.good, replace=False)):
        Image.fromarray(crops[index]).save(good_dir / f"good_{number:05d}.jpg", quality=95)
        shutil.copy(good_dir / f"good_{number:05d}.jpg", mixed_dir)
    kinds = [kind for kind in BROKEN_KINDS if kind != "unreadable" or os.geteuid() != 0]
    per_kind = max(1, round(args.good * 0.01))
    sample = (good_dir / "good_00000.jpg").read_bytes()
    broken_files = {}
    for kind in kinds:
        for number in range(per_kind):
            name = f"broken_{kind}_{number}.jpg"
            write_broken(mixed_dir / name, kind, sample)
            broken_files[name] = kind
    code_good, _ = predict(good_dir, work / "good.csv")
    code_mixed, stderr = predict(mixed_dir, work / "mixed.csv")
    alone, mixed = rows_by_file(work / "good.csv"), rows_by_file(work / "mixed.csv")
    reported = {name: mixed.get(name, [{}])[0].get("error") for name in broken_files}
    same_rows = sum(mixed.get(name) == rows for name, rows in alone.items())
    return {
        "good_files": args.good, "broken_files": len(broken_files), "kinds": kinds,
        "exit_status": {"good_only": code_good, "mixed": code_mixed},
        "broken_reported": sum(bool(error) for error in reported.values()),
        "errors": {name: reported[name] for name in sorted(reported)},
        "good_files_with_identical_rows": same_rows,
        "peak_rss_mb": _peak_rss_mb(stderr),
    }


def memory(args: argparse.Namespace, crops: list[np.ndarray], work: Path) -> dict:
    source = work / "crops"
    source.mkdir()
    for index, crop in enumerate(crops):
        Image.fromarray(crop).save(source / f"{index:05d}.jpg", quality=95)
    results = {}
    for size in args.sizes:
        folder = work / f"folder_{size}"
        folder.mkdir()
        files = sorted(source.iterdir())
        for number in range(size):  # hard links: the same bytes, a distinct file each time
            os.link(files[number % len(files)], folder / f"{number:06d}.jpg")
        code, stderr = predict(folder, work / f"rows_{size}.csv")
        with (work / f"rows_{size}.csv").open() as stream:
            rows = sum(1 for _ in csv.DictReader(stream))
        results[str(size)] = {"exit_status": code, "rows": rows,
                              "peak_rss_mb": _peak_rss_mb(stderr),
                              "wall": re.search(r"Elapsed \(wall clock\) time.*: (\S+)",
                                                stderr).group(1)}
        print(f"{size} images: peak RSS {results[str(size)]['peak_rss_mb']:.0f} MB, "
              f"wall {results[str(size)]['wall']}, exit {code}")
        shutil.rmtree(folder)
    return results


def _peak_rss_mb(time_output: str) -> float:
    return int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_output)
               .group(1)) / 1024


def build_parser() -> argparse.ArgumentParser:
    parser = argument_parser(__spec__.name, __doc__)
    parser.add_argument("check", choices=["broken", "memory"])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--good", type=int, default=500, help="broken: number of good files")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000],
                        help="memory: folder sizes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    crops = read_split_crops(args.data)
    with tempfile.TemporaryDirectory(prefix="agegender-robust-") as tmp:
        results = (broken if args.check == "broken" else memory)(args, crops, Path(tmp))
    print(json.dumps(results, indent=2))
    write_json(args.json, results)


if __name__ == "__main__":
    main()
