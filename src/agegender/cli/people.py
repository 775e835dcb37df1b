"""`agegender predict --person` / `--people LISTING.csv`: one combined answer per person from
several photos of them, by the rule tracks use (`agegender.tracking.combine`)."""

from __future__ import annotations

import argparse
import csv
import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the inference stack is imported when a command runs, not to build the parser
    from agegender.inference.inputs import InputFile
    from agegender.inference.predictor import Predictor

log = logging.getLogger("agegender")

PERSON_COLUMNS = ["person", "photos", "faces", "age", "age_low", "age_high", "gender",
                  "gender_prob", "error"]
"""One row per person: photos given, faces combined (one per photo that has one), the combined
answer, and an error when none of the photos gave a face."""

EXIT_OK, EXIT_SOME_FAILED = 0, 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("photos of one person")
    group.add_argument("--person", nargs="?", const="person", metavar="NAME",
                       help="all inputs are photos of one person: write one combined answer "
                            "(named NAME) from each photo's subject, the largest face over "
                            "the photo's centre, else the largest face")
    group.add_argument("--people", type=Path, metavar="LISTING.csv",
                       help="a CSV with file and person columns (files relative to the CSV's "
                            "folder): one combined answer per person; the paths given are "
                            "ignored")


def wanted(args: argparse.Namespace) -> bool:
    return args.person is not None or args.people is not None


def read_listing(path: Path) -> list[tuple[Path, str]]:
    """(file, person) of each row of a `--people` listing."""
    with path.open(newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        if not {"file", "person"} <= set(reader.fieldnames or []):
            raise ValueError(f"{path}: a --people listing needs file and person columns, "
                             f"found {reader.fieldnames}")
        return [(path.parent / row["file"], row["person"]) for row in reader]


def run(args: argparse.Namespace, predictor: Predictor, inputs: list[InputFile],
        missing: list[tuple[str, str]], live: list[str]) -> int:
    from agegender.faces.canonical import subject_index
    from agegender.inference.output import ResultWriter
    from agegender.tracking.combine import PersonEvidence, prob_female_of

    if args.person is not None and args.people is not None:
        raise ValueError("--person and --people both say who is in the photos; give one")
    if live:
        raise ValueError(f"{live[0]}: --person and --people take photos, not live sources")
    if args.people is not None:
        listing = read_listing(args.people)
        missing = []
    else:
        listing = [(item.path, args.person) for item in inputs]
    photos: dict[str, int] = {}
    evidence: dict[str, PersonEvidence] = {}
    for _, person in listing:
        photos[person] = photos.get(person, 0) + 1
        evidence.setdefault(person, PersonEvidence())
    failed = len(missing)
    people = iter([person for _, person in listing])
    for result in predictor.predict_paths([path for path, _ in listing], workers=args.workers,
                                          keep_images=True, distributions=True):
        person = next(people)
        faces = [row for row in result.rows if row.error is None]
        if not faces:
            log.warning("%s: %s", result.file, result.rows[0].error)
            failed += 1
            continue
        height, width = result.image.shape[:2]
        index = subject_index([(r.x, r.y, r.w, r.h) for r in faces], width, height)
        row = faces[index]
        evidence[person].add(result.age_log_probs[index],
                             prob_female_of(row.gender, row.gender_prob))
    for argument, reason in missing:
        log.warning("%s: %s", argument, reason)
    with ResultWriter(PERSON_COLUMNS, args.output) as writer:
        for person, gathered in evidence.items():
            if gathered.views == 0:
                writer.write({"person": person, "photos": photos[person], "faces": 0,
                              "error": "no face in any photo"})
                continue
            answer = gathered.answer()
            writer.write({"person": person, "photos": photos[person], "faces": answer.views,
                          "age": answer.age, "age_low": answer.age_low,
                          "age_high": answer.age_high, "gender": answer.gender,
                          "gender_prob": answer.gender_prob})
    return EXIT_SOME_FAILED if failed else EXIT_OK
