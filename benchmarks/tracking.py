"""Tracking and the tracks' answers on generated videos with known truth, and tracking's speed.

Each video (640×480, 25 fps, 10 s by default) moves 3 people of `--split` over a smooth random
background: an LFW person and a UTKFace face that cross (the nearer one hides the other), and a
second LFW person who comes and goes. An LFW person is shown by 3–6 of their photos of the
split (the 150-px centre of each), in turn, each for 1–2.4 s and cross-fading into the next
over 5–10 frames, as a turn of the head or a change of light changes a face; UTKFace has one
photo per person, so the UTKFace face is one photo throughout. The camera pans or zooms, the
faces turn, an occluding bar hides one face for 6–12 frames, a few frames are blurred, and the
video is H.264 at CRF 23–33 (`agegender.evaluation.videos`). `--single-photo` is the harder
variant: every person is one photo throughout, so a track inherits that photo's error. The
videos are written to a temporary folder and deleted (never commit them: the faces are
dataset images). Settings are chosen on `--split val` and reported on `--split test`.

Each video goes through what `agegender predict VIDEO --summary FILE` runs. A true face-frame
is a frame in which at least 60 % of a person's square is in the frame and neither hidden by
the occluder nor by a nearer face (`videos.VISIBLE_SHARE`); a face more hidden than that
counts neither for nor against. No face is under the detector's 20-px minimum. Each true
face-frame is matched to the row whose box centre lies in the face's square, and scored:

- identity switches per 100 matched face-frames (a person's track number changing);
- the share of true face-frames assigned to the person's main track (their most frequent
  one); a missed face counts as wrong, and where misses and wrong-track frames go is listed;
- the main track's final gender right, per person (beside each photo alone and the person's
  photos combined without video);
- the main track's final age MAE against the mean MAE of its frames: UTKFace faces only, since
  LFW has no ages;
- how often each track's shown gender changed, beside how often the frames' own gender flips,
  and the same for each hysteresis margin of `combine.steady_gender` replayed on the frames.

`--speed` then times `agegender predict` on one 640×480 video with and without tracking, at
`--every 1` and `--every 2` (frames of the video per second of wall time), each run a fresh
process, the best of `--rounds` alternating rounds:

    python -m benchmarks.tracking --utkface ../shared/data/utkface/UTKFace.tar.gz \
        --lfw ../shared/data/lfw [--split test] [--single-photo] [--videos 16] \
        [--seconds 10] [--speed] [--rounds 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from agegender.evaluation.videos import TrackingScore, random_script, render, score_video
from agegender.inference.predictor import Predictor, WorkItem
from agegender.inference.video import iter_frames
from agegender.tracking.combine import gender_logit, prob_female_of
from agegender.tracking.session import TrackedSource
from benchmarks.common import argument_parser, read_split_faces, write_json

LFW_CENTRE = 150
"""Side of the centre of a 250×250 LFW photo that a video shows: the face and its
surroundings, most neighbours left out."""

LFW_MIN_PHOTOS, LFW_MAX_PHOTOS = 3, 6
"""An LFW person is shown when the split has at least this many photos of them, by at most
the second number of them."""


@dataclass
class Cast:
    """The people of the videos: crops, and per person (a face number) the crops that show
    them, the true age (NaN: unknown) and gender; UTKFace people first, one per video, then
    LFW people, two per video."""

    crops: list[np.ndarray] = field(default_factory=list)
    photos: list[list[int]] = field(default_factory=list)
    ages: list[float] = field(default_factory=list)
    genders: list[str] = field(default_factory=list)

    def add(self, crops: list[np.ndarray], age: float, gender: float) -> None:
        self.photos.append(list(range(len(self.crops), len(self.crops) + len(crops))))
        self.crops.extend(crops)
        self.ages.append(age)
        self.genders.append("female" if gender == 1 else "male")

    def video(self, number: int, videos: int) -> list[int]:
        """The people of video `number`: an LFW person and a UTKFace face cross, a second LFW
        person comes and goes."""
        return [videos + 2 * number, number, videos + 2 * number + 1]


def build_parser() -> argparse.ArgumentParser:
    parser = argument_parser(__spec__.name, __doc__)
    parser.add_argument("--utkface", type=Path, required=True, help="UTKFace archive")
    parser.add_argument("--lfw", type=Path, required=True, help="the LFW folder")
    parser.add_argument("--videos", type=int, default=16, help="0: only --speed")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="test", choices=["val", "test"],
                        help="the faces' split: val for choosing settings, test for reporting")
    parser.add_argument("--single-photo", action="store_true",
                        help="the harder variant: every person shown by one photo throughout")
    parser.add_argument("--speed", action="store_true",
                        help="also time predict with and without tracking")
    parser.add_argument("--rounds", type=int, default=2,
                        help="--speed: rounds of runs, the order alternating; the best counts")
    parser.add_argument("--json", type=Path)
    return parser


def read_cast(args: argparse.Namespace) -> Cast:
    """One UTKFace face per video and two LFW people per video, from `--split`; each LFW
    person has 3–6 photos (only the first with `--single-photo`)."""
    videos = max(1, args.videos)
    cast = Cast()
    utk, utk_labels = read_split_faces(args.utkface, limit=videos, seed=args.seed,
                                       split=args.split)
    for crop, age, gender in zip(utk, utk_labels["age"], utk_labels["gender"], strict=True):
        cast.add([crop], float(age), gender)
    lfw, labels = read_split_faces(args.lfw, limit=None, seed=args.seed, split=args.split)
    by_person: dict[str, list[int]] = defaultdict(list)
    for index, (person, gender) in enumerate(zip(labels["person"], labels["gender"],
                                                 strict=True)):
        if np.isfinite(gender):
            by_person[person].append(index)
    people = sorted(person for person, indices in by_person.items()
                    if len(indices) >= LFW_MIN_PHOTOS)
    rng = np.random.default_rng(args.seed)
    if len(people) < 2 * videos:
        sys.exit(f"{args.lfw}: {len(people)} people with {LFW_MIN_PHOTOS}+ {args.split} "
                 f"photos, {2 * videos} needed")
    margin = (250 - LFW_CENTRE) // 2
    for person in rng.choice(people, size=2 * videos, replace=False):
        chosen = rng.permutation(by_person[person])[:LFW_MAX_PHOTOS]
        chosen = chosen[:1] if args.single_photo else chosen
        cast.add([lfw[i][margin:margin + LFW_CENTRE, margin:margin + LFW_CENTRE]
                  for i in chosen], float("nan"), labels["gender"][chosen[0]])
    return cast


def track_video(predictor: Predictor, path: Path) -> tuple[list[list[dict]], list[dict]]:
    """Rows per frame and the summary, as `agegender predict VIDEO` makes them."""
    source = TrackedSource(str(path))
    items = (WorkItem(path, frame.image, frame.index, frame.time)
             for frame in iter_frames(path))
    frames = []
    for result in predictor.predict_items(items, workers=2, distributions=True):
        rows = source.add(result)
        faces = [row for row in rows if row["error"] is None]
        for row, log_probs in zip(faces, result.age_log_probs if faces else [], strict=True):
            row["_log_probs"] = log_probs  # for comparing combining rules (`score_video`)
        frames.append(rows)
    return frames, source.summary()


def score(args: argparse.Namespace, folder: Path) -> dict:
    cast = read_cast(args)
    rng = np.random.default_rng(args.seed)
    predictor = Predictor()
    total = TrackingScore()
    frames = round(args.seconds * 25)
    photo_right, photo_errors, person_right = [], [], []
    for number in range(args.videos):
        faces = cast.video(number, args.videos)
        for face in faces:  # the person's photos alone, one at a time and combined
            views = [predictor.predict(cast.crops[photo]) for photo in cast.photos[face]]
            views = [[row for row in view if row.error is None][:1] for view in views]
            right = [bool(view) and view[0].gender == cast.genders[face] for view in views]
            photo_right.extend(right)
            logits = [gender_logit(prob_female_of(view[0].gender, view[0].gender_prob))
                      for view in views if view]
            person_right.append(bool(logits) and ("female" if np.mean(logits) >= 0 else "male")
                                == cast.genders[face])
            if views[0] and np.isfinite(cast.ages[face]):
                photo_errors.append(abs(views[0][0].age - cast.ages[face]))
        script = random_script(rng, faces, seed=args.seed + number, frames=frames,
                               photos=dict(enumerate(cast.photos)))
        path = folder / f"video{number:02d}.mp4"
        truth = render(script, cast.crops, path)
        rows, summary = track_video(predictor, path)
        score_video(total, rows, truth, summary, dict(enumerate(cast.ages)),
                    dict(enumerate(cast.genders)))
        path.unlink()
        print(f"video {number + 1}/{args.videos}: {len(summary)} tracks", flush=True)
    shown = [len(cast.photos[face]) for number in range(args.videos)
             for face in cast.video(number, args.videos)]
    return {"split": args.split, "photos_per_person": float(np.mean(shown)), **total.figures(),
            "photo_alone_gender_accuracy": float(np.mean(photo_right)),
            "photos_combined_gender_accuracy": float(np.mean(person_right)),
            "photo_alone_age_mae": float(np.mean(photo_errors))}


def speed(args: argparse.Namespace, folder: Path) -> dict:
    """Frames per second of `agegender predict` with and without tracking, each run a fresh
    process as a user's is (start-up and imports included), the order alternating from round
    to round; the best of `--rounds` per setting."""
    cast = read_cast(args)
    rng = np.random.default_rng(args.seed + 1000)
    path = folder / "speed.mp4"
    render(random_script(rng, cast.video(0, max(1, args.videos)), seed=args.seed, frames=250,
                         photos=dict(enumerate(cast.photos))), cast.crops, path)
    best: dict[str, float] = {}
    for round_number in range(args.rounds):
        for every in (1, 2):
            settings = [True, False] if round_number % 2 == 0 else [False, True]
            for tracked in settings:
                command = [sys.executable, "-m", "agegender.cli.main", "predict", str(path),
                           "--every", str(every), "--output", str(folder / "rows.csv"),
                           "--quiet", *([] if tracked else ["--no-track"])]
                started = time.perf_counter()
                subprocess.run(command, check=True)
                fps = 250 / (time.perf_counter() - started)
                key = f"every{every}_{'tracked' if tracked else 'untracked'}_fps"
                best[key] = max(best.get(key, 0.0), fps)
    for every in (1, 2):
        best[f"every{every}_tracking_overhead"] = (
            best[f"every{every}_untracked_fps"] / best[f"every{every}_tracked_fps"] - 1)
    return best


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory() as temporary:
        result = score(args, Path(temporary)) if args.videos else {}
        if args.speed:
            result.update(speed(args, Path(temporary)))
    for key, value in result.items():
        print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    write_json(args.json, result)


if __name__ == "__main__":
    main()
