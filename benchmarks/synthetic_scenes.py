"""Detection recall and crop-vs-scene agreement on synthetic multi-face scenes.

Scenes are built from UTKFace `split == test` crops: 2–6 faces per scene, each crop pasted at a
random place with a side of 40–300 px and rotated by up to ±20°, onto a smooth random
background. Every face's true place is known, so the script reports:

- detection recall: true faces with a detection whose centre lies inside the pasted crop and
  whose box is 0.1–1.5 × the crop's area;
- false positives per image: detections that match no true face;
- agreement: for each detected face, age and gender from the scene vs from the same crop given
  alone to `agegender predict` (mean |Δ age| in years, share of equal genders).

    python -m benchmarks.synthetic_scenes --data ../shared/data/utkface/UTKFace.tar.gz \
        [--scenes 200] [--seed 0] [--model M.onnx] [--split test|val] [--json FILE]

Models are compared on scenes of `--split val` crops; the acceptance figures use test crops.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from agegender.evaluation.scenes import evaluate_scenes
from agegender.inference.predictor import Predictor
from benchmarks.common import argument_parser, read_split_crops, write_json


def build_parser() -> argparse.ArgumentParser:
    parser = argument_parser(__spec__.name, __doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", type=Path, help="default: the bundled model")
    parser.add_argument("--scenes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="test", choices=["test", "val"],
                        help="crops the scenes are made of: val to choose between models")
    parser.add_argument("--json", type=Path)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    predictor = Predictor(args.model)
    results = evaluate_scenes(predictor, read_split_crops(args.data, args.split), args.scenes,
                              args.seed)
    for key, value in results.items():
        print(f"{key:>24}: {value:.4f}" if isinstance(value, float) else f"{key:>24}: {value}")
    write_json(args.json, results)


if __name__ == "__main__":
    main()
