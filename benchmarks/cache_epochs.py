"""Time data-pipeline epochs over the training split, from a cold and from a warm cache.

Each pass does what a training epoch does to the data, without the model: open the dataset,
get the decoded faces (pass 1: an empty cache, so every JPEG is decoded from the archive;
pass 2: the memory-mapped cache), then assemble every augmented training batch. Training-epoch
times with the model are in each run's `metrics.json` under "timing".

    python -m benchmarks.cache_epochs --data ../shared/data/utkface/UTKFace.tar.gz
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from agegender.data.labelled import load_labelled_faces
from agegender.training.batches import make_batch
from agegender.training.presets import get_preset
from benchmarks.common import argument_parser


def data_epoch(data_path: Path, preset: str, cache_dir: Path) -> tuple[float, float, int]:
    """(seconds to get the faces, seconds to assemble all training batches, images)."""
    config = get_preset(preset)
    started = time.perf_counter()
    data = load_labelled_faces(data_path, config.preprocessing, cache_dir=cache_dir,
                               progress=False)
    loaded = time.perf_counter()
    rows = data.rows("train")
    order = np.random.default_rng(0).permutation(rows)
    generator = torch.Generator().manual_seed(0)
    for start in range(0, len(order), config.batch_size):
        make_batch(data, order[start:start + config.batch_size], config, generator)
    return loaded - started, time.perf_counter() - loaded, len(rows)


def build_parser() -> argparse.ArgumentParser:
    parser = argument_parser(__spec__.name, __doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--preset", default="seed-cnn")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as cache_dir:
        cold = data_epoch(args.data, args.preset, Path(cache_dir))
        warm = data_epoch(args.data, args.preset, Path(cache_dir))
    print(f"{'pass':<22}{'faces (s)':>10}{'batches (s)':>13}{'total (s)':>11}")
    for name, (faces, batches, count) in (("1: cold cache", cold), ("2: warm cache", warm)):
        print(f"{name:<22}{faces:>10.1f}{batches:>13.1f}{faces + batches:>11.1f}   "
              f"{count} training images")
    print(f"pass 2 / pass 1 = {sum(warm[:2]) / sum(cold[:2]):.3f}")


if __name__ == "__main__":
    main()
