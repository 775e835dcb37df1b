"""Tracking and the tracks' answers on generated videos with known truth, and tracking's speed.

Each video (640×480, 25 fps, 10 s by default) moves 3 test faces, two UTKFace crops (age and
gender known) and one LFW photo's centre (gender known), over a smooth random background:
the camera pans or zooms, the faces turn, the first two cross (the nearer one hides the
other), an occluding bar hides one face for 6–12 frames, a few frames are blurred, and the
video is H.264 at CRF 23–33 (`agegender.evaluation.videos`). The videos are written to a
temporary folder and deleted (never commit them: the faces are dataset images).

Each video goes through what `agegender predict VIDEO --summary FILE` runs; every visible true
face-frame is matched to the row whose box centre lies in the face's square, and scored:

- identity switches per 100 matched face-frames (a face's track number changing);
- the share of true face-frames assigned to the face's main track (its most frequent one);
- the main track's final gender right, per face;
- the main track's final age MAE against the mean MAE of its frames (UTKFace faces);
- how often each track's shown gender changed, beside how often the frames' own gender flips.

`--speed` then times `agegender predict` on one 640×480 video with and without tracking, at
`--every 1` and `--every 2` (frames of the video per second of wall time):

    python -m benchmarks.tracking --utkface ../shared/data/utkface/UTKFace.tar.gz \
        --lfw ../shared/data/lfw [--videos 16] [--seconds 10] [--speed] [--json FILE]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from agegender.evaluation.videos import TrackingScore, random_script, render, score_video
from agegender.inference.predictor import Predictor, WorkItem
from agegender.inference.video import iter_frames
from agegender.tracking.session import TrackedSource
from benchmarks.common import argument_parser, read_split_faces, write_json

LFW_CENTRE = 150
"""Side of the centre of a 250×250 LFW photo that a video shows: the face and its
surroundings, most neighbours left out."""


def build_parser() -> argparse.ArgumentParser:
    parser = argument_parser(__spec__.name, __doc__)
    parser.add_argument("--utkface", type=Path, required=True, help="UTKFace archive")
    parser.add_argument("--lfw", type=Path, required=True, help="the LFW folder")
    parser.add_argument("--videos", type=int, default=16, help="0: only --speed")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--speed", action="store_true",
                        help="also time predict with and without tracking")
    parser.add_argument("--json", type=Path)
    return parser


def read_test_faces(args: argparse.Namespace) -> tuple[list[np.ndarray], list[float], list[str]]:
    """Crops, true ages (NaN: unknown) and genders: 2 UTKFace test faces per video, then 1
    LFW test photo's centre per video (for at least one video)."""
    videos = max(1, args.videos)
    utk, utk_labels = read_split_faces(args.utkface, limit=2 * videos, seed=args.seed)
    lfw, lfw_labels = read_split_faces(args.lfw, limit=4 * videos, seed=args.seed)
    margin = (250 - LFW_CENTRE) // 2
    lfw = [image[margin:margin + LFW_CENTRE, margin:margin + LFW_CENTRE] for image in lfw]
    lfw_genders = lfw_labels["gender"]
    chosen = [i for i in range(len(lfw)) if np.isfinite(lfw_genders[i])][:videos]
    crops = list(utk) + [lfw[i] for i in chosen]
    ages = list(utk_labels["age"]) + [float("nan")] * len(chosen)
    genders = list(utk_labels["gender"]) + [lfw_genders[i] for i in chosen]
    return crops, ages, ["female" if g == 1 else "male" for g in genders]


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
    crops, ages, genders = read_test_faces(args)
    utk_count = 2 * args.videos
    rng = np.random.default_rng(args.seed)
    predictor = Predictor()
    total = TrackingScore()
    frames = round(args.seconds * 25)
    photo_right, photo_errors = [], []
    for number in range(args.videos):
        faces = [2 * number, 2 * number + 1]
        if utk_count + number < len(crops):
            faces.append(utk_count + number)
        for face in faces:  # each face's photo alone: what no number of frames can beat
            rows = [row for row in predictor.predict(crops[face]) if row.error is None]
            photo_right.append(bool(rows) and rows[0].gender == genders[face])
            if rows and np.isfinite(ages[face]):
                photo_errors.append(abs(rows[0].age - ages[face]))
        script = random_script(rng, faces, seed=args.seed + number, frames=frames)
        path = folder / f"video{number:02d}.mp4"
        truth = render(script, crops, path)
        rows, summary = track_video(predictor, path)
        score_video(total, rows, truth, summary, dict(enumerate(ages)), dict(enumerate(genders)))
        path.unlink()
        print(f"video {number + 1}/{args.videos}: {len(summary)} tracks", flush=True)
    return {**total.figures(), "photo_alone_gender_accuracy": float(np.mean(photo_right)),
            "photo_alone_age_mae": float(np.mean(photo_errors))}


def speed(args: argparse.Namespace, folder: Path) -> dict:
    """Frames per second of `agegender predict` with and without tracking."""
    from agegender.cli.main import main as agegender

    crops, _, _ = read_test_faces(args)
    rng = np.random.default_rng(args.seed + 1000)
    path = folder / "speed.mp4"
    render(random_script(rng, [0, 1, len(crops) - 1], seed=args.seed, frames=250), crops, path)
    result = {}
    for every in (1, 2):
        for tracked in (True, False):
            flags = [] if tracked else ["--no-track"]
            started = time.perf_counter()
            agegender(["predict", str(path), "--every", str(every), "--output",
                       str(folder / "rows.csv"), *flags])
            elapsed = time.perf_counter() - started
            result[f"every{every}_{'tracked' if tracked else 'untracked'}_fps"] = 250 / elapsed
        result[f"every{every}_tracking_overhead"] = (
            result[f"every{every}_untracked_fps"] / result[f"every{every}_tracked_fps"] - 1)
    return result


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
