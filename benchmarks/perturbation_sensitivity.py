"""How far a model's answer moves when its input crop changes imperceptibly.

Each UTKFace crop of the split is detected and aligned as `predict` does; the model then sees
that canonical crop and copies of it shifted by half a pixel, turned by 3°, saved as JPEG at
quality 90, and mirrored. For each change the script reports the mean |Δ| of the gender logit
and of the age, and the share of faces whose stated gender stays the same.

A face found in a photo differs from its dataset crop by changes of about this size (the
detector's points move by a pixel or two, the pixels are resampled), so these figures bound
the scene-vs-crop agreement of `benchmarks.synthetic_scenes` from below, in a minute instead of six:

    python -m benchmarks.perturbation_sensitivity --data ../shared/data/utkface/UTKFace.tar.gz \
        [--split val] [--limit 1000] [--model M.onnx] [--json FILE]
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from agegender.inference.backends import predict_in_batches
from agegender.inference.predictor import Predictor
from benchmarks.common import argument_parser, read_split_crops, write_json


def _shifted(crop: np.ndarray) -> np.ndarray:
    side = crop.shape[1], crop.shape[0]
    return np.asarray(Image.fromarray(crop).transform(
        side, Image.Transform.AFFINE, (1, 0, 0.5, 0, 1, 0.5), resample=Image.Resampling.BILINEAR))


def _turned(crop: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(crop).rotate(3, resample=Image.Resampling.BILINEAR))


def _jpeg(crop: np.ndarray) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(crop).save(buffer, "JPEG", quality=90)
    return np.asarray(Image.open(buffer).convert("RGB"))


def _mirrored(crop: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(crop[:, ::-1])


PERTURBATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "shift 0.5 px": _shifted, "turn 3 deg": _turned, "jpeg q90": _jpeg, "mirror": _mirrored}


def _outputs(predictor: Predictor, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gender logit and age of each crop."""
    out = predict_in_batches(predictor.backend, crops)
    female = np.clip(out.prob_female, 1e-6, 1 - 1e-6)
    return np.log(female / (1 - female)), out.age


def sensitivity(predictor: Predictor, faces: list[np.ndarray]) -> dict[str, dict[str, float]]:
    """Per perturbation: mean |Δ gender logit|, mean |Δ age|, gender agreement."""
    crops = np.stack([predictor.find_faces(face)[0].crop for face in faces])
    logit, age = _outputs(predictor, crops)
    results = {"faces": {"count": len(crops)},
               "gender near 0.5": {"share with |logit| < 0.4": float(np.mean(np.abs(logit) < 0.4))}}
    for name, perturb in PERTURBATIONS.items():
        other_logit, other_age = _outputs(predictor, np.stack([perturb(c) for c in crops]))
        results[name] = {
            "gender_logit_change": float(np.abs(other_logit - logit).mean()),
            "age_change": float(np.abs(other_age - age).mean()),
            "gender_agreement": float(np.mean((other_logit >= 0) == (logit >= 0)))}
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argument_parser(__spec__.name, __doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", type=Path, help="default: the bundled model")
    parser.add_argument("--split", default="val", choices=["test", "val"])
    parser.add_argument("--limit", type=int, default=1000, help="first N crops of the split")
    parser.add_argument("--json", type=Path)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    faces = read_split_crops(args.data, args.split)[:args.limit]
    results = sensitivity(Predictor(args.model, whole_image=True), faces)
    for name, figures in results.items():
        print(f"{name:>16}: " + "  ".join(f"{key} {value:.4f}" if isinstance(value, float)
                                          else f"{key} {value}" for key, value in figures.items()))
    write_json(args.json, results)


if __name__ == "__main__":
    main()
