"""Photos of one person: per-photo gender accuracy against one combined answer per person.

LFW's `split == test` photos (press photos, gender labels, the person from the folder name)
are extracted to a temporary folder, listed with their person, and predicted the way
`agegender predict --people LISTING.csv` does it: each photo's subject face (the largest face
over the photo's centre, else the largest), combined per person by `agegender.tracking.combine`.
It prints, for people with at least `--min-photos` photos, the per-photo accuracy and the
per-person accuracy of the rule and of its variants (weights, the logit floor, a majority
vote), so the rule's choices have their figures:

    python -m benchmarks.people --lfw ../shared/data/lfw [--min-photos 3] [--json FILE] \
        [--keep DIR]

`--keep DIR` keeps the extracted photos and `people.csv` there (never commit them), so that
`agegender predict --people DIR/people.csv` can be run on the same photos.
"""

from __future__ import annotations

import argparse
import csv
import tarfile
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from agegender.data.lfw import GENDER_LISTS, read_gender_lists
from agegender.data.records import GENDER_NAMES
from agegender.faces.canonical import subject_index
from agegender.inference.predictor import Predictor
from agegender.tracking import combine as rule
from benchmarks.common import argument_parser, write_json


def build_parser() -> argparse.ArgumentParser:
    parser = argument_parser(__spec__.name, __doc__)
    parser.add_argument("--lfw", type=Path, required=True, help="the LFW folder")
    parser.add_argument("--split", default="test", choices=["val", "test"])
    parser.add_argument("--min-photos", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="extract the photos here and keep them")
    parser.add_argument("--json", type=Path)
    return parser


def extract(lfw: Path, split: str, into: Path) -> list[tuple[Path, str, int]]:
    """The split's photos extracted under `into`, with `into/people.csv`: (path, person,
    gender label) for each photo on exactly one gender list."""
    with (lfw / "split.csv").open() as stream:
        wanted = {row["file"] for row in csv.DictReader(stream) if row["split"] == split}
    listed = read_gender_lists(lfw)
    photos = []
    with tarfile.open(lfw / "lfw-deepfunneled.tgz") as archive:
        for member in archive:
            name = Path(member.name).name
            genders = listed.get(name, {})
            if not member.isfile() or name not in wanted or len(genders) != 1:
                continue
            target = into / name
            target.write_bytes(archive.extractfile(member).read())
            photos.append((target, Path(member.name).parent.name, next(iter(genders))))
    with (into / "people.csv").open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["file", "person"])
        writer.writerows((path.name, person) for path, person, _ in photos)
    return photos


def predict_photos(photos: list[tuple[Path, str, int]]) -> list[dict]:
    """Each photo's subject: probability of female, age distribution, detection score and
    face side; photos without a face are left out."""
    predictor = Predictor()
    views = []
    results = predictor.predict_paths([path for path, _, _ in photos], workers=2,
                                      keep_images=True, distributions=True)
    for (_, person, gender), result in zip(photos, results, strict=True):
        faces = [row for row in result.rows if row.error is None]
        if not faces:
            continue
        height, width = result.image.shape[:2]
        index = subject_index([(r.x, r.y, r.w, r.h) for r in faces], width, height)
        row = faces[index]
        views.append({"person": person, "gender": gender,
                      "prob_female": rule.prob_female_of(row.gender, row.gender_prob),
                      "log_probs": result.age_log_probs[index], "score": row.det_score,
                      "side": float(np.sqrt(row.w * row.h))})
    return views


def _people_accuracy(people: dict[str, list[dict]], weight, floor: float) -> float:
    saved, rule.PROBABILITY_FLOOR = rule.PROBABILITY_FLOOR, floor
    try:
        right = 0
        for views in people.values():
            weights = np.array([weight(view) for view in views], float)
            answer = rule.combine(np.stack([view["log_probs"] for view in views]),
                                  np.array([view["prob_female"] for view in views]), weights)
            right += answer.gender == GENDER_NAMES[views[0]["gender"]]
        return right / len(people)
    finally:
        rule.PROBABILITY_FLOOR = saved


def figures(views: list[dict], min_photos: int) -> dict:
    people: dict[str, list[dict]] = defaultdict(list)
    for view in views:
        people[view["person"]].append(view)
    people = {name: group for name, group in people.items() if len(group) >= min_photos}
    photos = [view for group in people.values() for view in group]
    per_photo = np.mean([(view["prob_female"] >= 0.5) == view["gender"] for view in photos])
    majority = np.mean([
        (np.mean([(v["prob_female"] >= 0.5) for v in group]) > 0.5) == group[0]["gender"]
        for group in people.values()])
    variants = {
        "mean logit (the rule)": (lambda view: 1.0, rule.PROBABILITY_FLOOR),
        "weighted by detection score": (lambda view: view["score"], rule.PROBABILITY_FLOOR),
        "weighted by face side": (lambda view: view["side"], rule.PROBABILITY_FLOOR),
        "logit floor 0.01": (lambda view: 1.0, 0.01),
    }
    result = {"people": len(people), "photos": len(photos), "per_photo_accuracy": per_photo,
              "majority_vote_accuracy": majority}
    for name, (weight, floor) in variants.items():
        result[name] = _people_accuracy(people, weight, floor)
    return {key: float(value) if isinstance(value, np.floating) else value
            for key, value in result.items()}


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    assert set(GENDER_LISTS) <= {path.name for path in args.lfw.iterdir()}
    with tempfile.TemporaryDirectory() as temporary:
        folder = args.keep or Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        photos = extract(args.lfw, args.split, folder)
        views = predict_photos(photos)
    result = figures(views, args.min_photos)
    print(f"LFW {args.split}, people with at least {args.min_photos} photos: "
          f"{result['people']} people, {result['photos']} photos")
    print(f"  per photo (each photo's subject): {result['per_photo_accuracy']:.4f}")
    print(f"  per person, majority vote of the photos: {result['majority_vote_accuracy']:.4f}")
    for name in ("mean logit (the rule)", "weighted by detection score",
                 "weighted by face side", "logit floor 0.01"):
        print(f"  per person, {name}: {result[name]:.4f}")
    write_json(args.json, result)


if __name__ == "__main__":
    main()
