"""Time an exported model alone: milliseconds per face at batch 1 and at batch 32.

The network only, on random faces of its own size (no detection, no alignment), through the
onnxruntime backend `agegender predict` uses, normalisation included. It compares exported
networks, e.g. one with an extra operator, on a machine whose speed varies from day to day:

    python -m benchmarks.model_speed MODEL.onnx [MODEL.onnx ...] [--threads 2] [--repeats 30]

Each figure is the median over the repeats, after untimed warm-up runs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from agegender.inference.backends import OnnxBackend
from benchmarks.common import argument_parser


def median_ms_per_face(backend: OnnxBackend, faces: np.ndarray, repeats: int) -> float:
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        backend.predict(faces)
        seconds.append(time.perf_counter() - started)
    return float(np.median(seconds)) * 1000 / len(faces)


def build_parser() -> argparse.ArgumentParser:
    parser = argument_parser(__spec__.name, __doc__)
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=10)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    rng = np.random.default_rng(0)
    for path in args.models:
        backend = OnnxBackend(path, threads=args.threads)
        side, channels = backend.preprocessing.size, backend.preprocessing.channels
        figures = []
        for size in (1, 32):
            faces = rng.integers(0, 256, (size, side, side, channels), dtype=np.uint8)
            for _ in range(args.warmup):
                backend.predict(faces)
            figures.append(f"batch {size} {median_ms_per_face(backend, faces, args.repeats):.2f}")
        print(f"{path}: ms per face, {', '.join(figures)}")


if __name__ == "__main__":
    main()
