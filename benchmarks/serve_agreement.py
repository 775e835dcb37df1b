"""Does `POST /v1/predict` give the numbers `agegender predict` writes, for the same files?

Takes the first `--photos`/2 `split == test` photos of UTKFace and of LFW (deep-funneled) as
their original bytes from the archives, writes them to a temporary folder, runs
`agegender predict FOLDER --output rows.json` and posts each file's bytes to the app (in
process, the service loaded as `agegender serve` loads it), then compares every face: number, box,
detector score, landmarks, age, interval, gender and its probability, as both round them.

    python -m benchmarks.serve_agreement [--photos 20] [--json FILE]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

from benchmarks.common import argument_parser, write_json

SHARED = Path("../shared/data")
ARCHIVES = {"utkface": SHARED / "utkface" / "UTKFace.tar.gz",
            "lfw": SHARED / "lfw" / "lfw-deepfunneled.tgz"}
COMPARED = ("face", "det_score", "landmarks", "age", "age_low", "age_high", "gender",
            "gender_prob")


def test_split_files(archive: Path, count: int) -> Iterator[tuple[str, bytes]]:
    """(name, original bytes) of the first `count` members the archive's split.csv puts in
    the test split, in archive order."""
    with (archive.parent / "split.csv").open(newline="") as stream:
        test = {row["file"] for row in csv.DictReader(stream) if row["split"] == "test"}
    found = 0
    with tarfile.open(archive, "r:gz") as members:
        for member in members:
            name = Path(member.name).name
            if member.isfile() and name in test:
                yield name, members.extractfile(member).read()
                found += 1
                if found == count:
                    return


def cli_faces(folder: Path) -> dict[str, list[dict]]:
    """The CLI's rows, by file name (rows with an error give no faces)."""
    output = folder.parent / "rows.json"
    subprocess.run(["agegender", "predict", str(folder), "--output", str(output)], check=True,
                   stderr=subprocess.DEVNULL)
    faces: dict[str, list[dict]] = {}
    for row in json.loads(output.read_text()):
        found = faces.setdefault(Path(row["file"]).name, [])
        if row["error"] is None:
            found.append({"box": row["box"], **{key: row[key] for key in COMPARED}})
    return faces


def api_faces(photos: dict[str, bytes]) -> dict[str, list[dict]]:
    from fastapi.testclient import TestClient

    from agegender.serving.app import create_app
    from agegender.serving.service import InferenceService
    from agegender.serving.settings import ServeSettings

    service = InferenceService(ServeSettings())
    service.load()
    faces = {}
    with TestClient(create_app(service.settings, service)) as client:
        for name, data in photos.items():
            response = client.post("/v1/predict", files={"image": (name, data)})
            response.raise_for_status()
            faces[name] = [{"box": face["box"], **{key: face[key] for key in COMPARED}}
                           for face in response.json()["faces"]]
    service.close()
    return faces


def compare(photos_per_set: int) -> dict:
    photos = {f"{kind}_{name}": data for kind, archive in ARCHIVES.items()
              for name, data in test_split_files(archive, photos_per_set)}
    with tempfile.TemporaryDirectory(prefix="agegender-agreement-") as work:
        folder = Path(work) / "photos"
        folder.mkdir()
        for name, data in photos.items():
            (folder / name).write_bytes(data)
        cli = cli_faces(folder)
    api = api_faces(photos)
    differing = sorted(name for name in photos if cli.get(name) != api.get(name))
    return {"photos": len(photos), "faces_cli": sum(map(len, cli.values())),
            "faces_api": sum(map(len, api.values())), "equal": len(photos) - len(differing),
            "differing": {name: {"cli": cli.get(name), "api": api.get(name)}
                          for name in differing}}


def build_parser() -> argparse.ArgumentParser:
    parser = argument_parser(__spec__.name, __doc__)
    parser.add_argument("--photos", type=int, default=20, help="half UTKFace, half LFW")
    parser.add_argument("--json", type=Path)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    results = compare(args.photos // 2)
    print(f"{results['photos']} photos (UTKFace and LFW test split): CLI {results['faces_cli']} "
          f"faces, API {results['faces_api']} faces; {results['equal']} of {results['photos']} "
          "photos give equal faces, ages and genders")
    for name, rows in results["differing"].items():
        print(f"  {name}: CLI {rows['cli']} API {rows['api']}")
    write_json(args.json, results)


if __name__ == "__main__":
    main()
