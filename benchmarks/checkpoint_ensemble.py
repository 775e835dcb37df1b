"""Validation and test figures of training checkpoints, alone and averaged as an ensemble.

Used to decide whether more models (or distilling them into one) would reach a target before
spending a training budget on it. Checkpoints are read uncalibrated: figures are the argmax
gender and the expected age of the raw outputs, the same as `agegender evaluate` gives for
the gender decision and within rounding for age.

    python -m benchmarks.checkpoint_ensemble --data ../shared/data/utkface/UTKFace.tar.gz \\
        runs/gpu/t0.pt runs/gpu/t1.pt runs/gpu/t2.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from agegender.data.labelled import LabelledFaces, load_labelled_faces
from agegender.models.checkpoint import load_checkpoint
from agegender.training.batches import make_batch
from agegender.training.config import TrainConfig
from benchmarks.common import argument_parser

SPLITS = ("val", "test")


def outputs(path: Path, data: LabelledFaces) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per split: probability of female and age distribution of every face."""
    checkpoint = load_checkpoint(path)
    model, config = checkpoint.model, TrainConfig.from_dict(checkpoint.config)
    result = {}
    for split in SPLITS:
        rows = data.rows(split)
        female, ages = [], []
        with torch.inference_mode():
            for start in range(0, len(rows), 256):
                images, _, _ = make_batch(data, rows[start:start + 256], config, None)
                gender_logit, _, age_logits = model(images)
                female.append(torch.sigmoid(gender_logit))
                ages.append(torch.softmax(age_logits, -1))
        result[split] = (torch.cat(female).numpy(), torch.cat(ages).numpy())
    return result


def figures(prob_female: np.ndarray, ages: np.ndarray, data: LabelledFaces, split: str) -> str:
    rows = data.rows(split)
    expected = ages @ np.arange(ages.shape[1])
    mae = np.abs(expected - data.age[rows]).mean()
    accuracy = ((prob_female > 0.5) == (data.gender[rows] == 1)).mean()
    return f"{split} MAE {mae:.3f} gender acc {accuracy:.4f}"


def build_parser() -> argparse.ArgumentParser:
    parser = argument_parser(__spec__.name, __doc__, description=__doc__,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--cache-dir", type=Path)
    parser.add_argument("checkpoints", type=Path, nargs="+",
                        help="transfer-model checkpoints with the same preprocessing")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    preprocessing = load_checkpoint(args.checkpoints[0]).preprocessing
    data = load_labelled_faces(args.data, preprocessing, cache_dir=args.cache_dir,
                               progress=False)
    per_model = {path: outputs(path, data) for path in args.checkpoints}
    for path, result in per_model.items():
        print(path.name, *(figures(*result[split], data, split) for split in SPLITS), sep="  ")
    if len(per_model) > 1:
        mean = {split: [np.mean([r[split][i] for r in per_model.values()], axis=0)
                        for i in (0, 1)] for split in SPLITS}
        print(f"ensemble of {len(per_model)}",
              *(figures(*mean[split], data, split) for split in SPLITS), sep="  ")


if __name__ == "__main__":
    main()
