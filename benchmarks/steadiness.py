"""Steadiness under re-encoding: the same LFW photos as JPEG and WebP at quality 50.

Users' photos have passed through lossy encoders, often more than once; an answer that moves
with the encoder's artefacts is noise. This benchmark takes every `--every`th LFW test photo
(every 4th: 503 photos), re-encodes it with Pillow as JPEG and as WebP at `--quality`, and
runs each version through what `predict` does to a photo (detection of the centred subject,
alignment, the model). Per model and encoding it prints the mean and largest |Δ age| against
the original photo and the share of genders unchanged:

    python -m benchmarks.steadiness --lfw ../shared/data/lfw [--model M.onnx ...] \\
        [--every 4] [--quality 50] [--json FILE]
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
from PIL import Image

from agegender.data.records import GENDER_THRESHOLD
from agegender.faces.canonical import crop_of_face_image
from agegender.faces.detector import FaceDetector
from agegender.inference.backends import load_backend, predict_in_batches
from agegender.inference.predictor import bundled_model_path
from benchmarks.common import argument_parser, read_split_faces, write_json

ENCODINGS = ("JPEG", "WEBP")


def reencoded(image: np.ndarray, encoding: str, quality: int) -> np.ndarray:
    """The photo after one round trip through Pillow's `encoding` at `quality`."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, encoding, quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def change_figures(age: np.ndarray, female: np.ndarray, other_age: np.ndarray,
                   other_female: np.ndarray) -> dict:
    """Mean and largest |Δ age| and the share of genders unchanged between two readings."""
    moved = np.abs(other_age - age)
    return {"n": len(age), "mean_abs_age_change": float(moved.mean()),
            "max_abs_age_change": float(moved.max()),
            "gender_unchanged": float((other_female == female).mean())}


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__spec__.name, __doc__)
    parser.add_argument("--lfw", type=Path, required=True, help="the LFW folder")
    parser.add_argument("--model", type=Path, action="append",
                        help="repeat for models side by side (default: the bundled model)")
    parser.add_argument("--every", type=int, default=4, help="take every Nth test photo")
    parser.add_argument("--quality", type=int, default=50)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    photos, _ = read_split_faces(args.lfw, None, 0, split="test")
    photos = photos[::args.every]
    detector = FaceDetector()
    versions = {"original": photos, **{encoding: [reencoded(photo, encoding, args.quality)
                                                  for photo in photos]
                                       for encoding in ENCODINGS}}
    crops: dict = {}
    results = {}
    for path in args.model or [bundled_model_path()]:
        backend = load_backend(path)
        prep = backend.preprocessing
        if prep not in crops:
            crops[prep] = {name: np.stack([crop_of_face_image(image, prep, detector)[0]
                                           for image in images])
                           for name, images in versions.items()}
        readings = {name: predict_in_batches(backend, faces)
                    for name, faces in crops[prep].items()}
        base = readings["original"]
        results[str(path)] = {
            encoding: change_figures(base.age, base.prob_female >= GENDER_THRESHOLD,
                                     readings[encoding].age,
                                     readings[encoding].prob_female >= GENDER_THRESHOLD)
            for encoding in ENCODINGS}
    print(f"{len(photos)} LFW test photos (every {args.every}th), re-encoded at quality "
          f"{args.quality}; against the original photo:")
    print(f"{'model':<48} {'encoding':<8} {'mean |Δage|':>11} {'max |Δage|':>10} "
          f"{'genders same':>12}")
    for model, by_encoding in results.items():
        for encoding, found in by_encoding.items():
            print(f"{Path(model).name:<48} {encoding:<8} {found['mean_abs_age_change']:>11.2f} "
                  f"{found['max_abs_age_change']:>10.1f} {found['gender_unchanged']:>12.3f}")
    wall_s = time.perf_counter() - started
    print(f"wall time {wall_s:.0f} s")
    write_json(args.json, {"photos": len(photos), "every": args.every,
                           "quality": args.quality, "models": results, "wall_s": wall_s})


if __name__ == "__main__":
    main()
