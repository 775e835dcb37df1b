"""Carry the decoded training faces to a GPU machine that cannot see the dataset, and train there.

`agegender train --device cuda` is the command for a GPU machine that holds the dataset. This
tool is for one that does not: `pack` writes the aligned, resized faces of chosen splits
(exactly the crops of the training cache, WebP-encoded to travel small) with their labels
into one `.npz`; `train` decodes that file and runs the same training loop on it.

    python tools/packed_faces.py pack --data ../shared/data/utkface/UTKFace.tar.gz \\
        --preset transfer-mobilenet_v2 --size 96 --splits train val --out faces96.npz
    python tools/packed_faces.py train --packed faces96.npz --preset transfer-mobilenet_v2 \\
        --size 96 --epochs 60 --batch-size 128 --device cuda --out runs/gpu96

The WebP round trip is lossy (quality 85 by default): evaluate and calibrate the result on the
real cache afterwards (`agegender calibrate`, `agegender evaluate`).
"""

from __future__ import annotations

import argparse
import io
import itertools
import logging
from pathlib import Path

import numpy as np
from PIL import Image

from agegender.data.labelled import LabelledFaces, load_labelled_faces
from agegender.training.config import TrainConfig
from agegender.training.flags import add_config_flags, apply_overrides, given_overrides
from agegender.training.loop import Trainer
from agegender.training.presets import get_preset
from agegender.training.run import resolve_device

log = logging.getLogger("agegender")


def _config(args: argparse.Namespace) -> TrainConfig:
    """The preset with the configuration flags given (`agegender train`'s own flags)."""
    return apply_overrides(get_preset(args.preset), given_overrides(args))


def pack(args: argparse.Namespace) -> None:
    config = _config(args)
    if len(config.data) != 1:
        raise SystemExit("pack takes one --data")
    data = load_labelled_faces(Path(config.data[0]), config.preprocessing,
                               split_file=config.split_file and Path(config.split_file),
                               cache_dir=args.cache_dir)
    rows = np.flatnonzero(np.isin(data.split, args.splits))
    pack_faces(data, rows, args.out, quality=args.quality)
    log.info("packed %d faces (%s) into %s: %.1f MB", len(rows), ", ".join(args.splits),
             args.out, args.out.stat().st_size / 1e6)


ROW_ARRAYS = ("age", "gender", "race", "split", "age_low", "age_high", "dataset", "person")
"""The labels and bookkeeping a packed file carries per face, as `LabelledFaces` names them."""


def pack_faces(data: LabelledFaces, rows: np.ndarray, out: Path, quality: int = 85) -> None:
    """Rows `rows` of `data`, each face WebP-encoded, with labels, splits, sources and (when
    the data has it) each crop's coverage, which `--border-fill` needs."""
    encoded = []
    for row in rows:
        buffer = io.BytesIO()
        Image.fromarray(np.asarray(data.images[row])).save(buffer, "WEBP", quality=quality,
                                                           method=6)
        encoded.append(np.frombuffer(buffer.getvalue(), dtype=np.uint8))
    offsets = np.cumsum([0] + [len(item) for item in encoded])
    coverage = {} if data.coverage is None else {"coverage": np.asarray(data.coverage[rows])}
    np.savez_compressed(out, pixels=np.concatenate(encoded), offsets=offsets,
                        sources=np.array([data.sources[r] for r in rows]),
                        dataset_names=np.array(data.dataset_names),
                        **{name: getattr(data, name)[rows] for name in ROW_ARRAYS}, **coverage)


def unpack(path: Path) -> LabelledFaces:
    packed = np.load(path)
    pixels, offsets = packed["pixels"], packed["offsets"]
    images = np.stack([np.asarray(Image.open(io.BytesIO(pixels[start:end].tobytes())))
                       for start, end in itertools.pairwise(offsets)])
    return LabelledFaces(images=images, sources=packed["sources"].tolist(),
                         coverage=packed.get("coverage"),
                         dataset_names=packed["dataset_names"].tolist(),
                         **{name: packed[name] for name in ROW_ARRAYS})


def train(args: argparse.Namespace) -> None:
    data = unpack(args.packed)
    config = _config(args)
    if data.images.shape[1] != config.preprocessing.size:
        raise SystemExit(f"{args.packed} holds {data.images.shape[1]}-px faces, "
                         f"the configuration wants {config.preprocessing.size}")
    # calibration and test figures come afterwards, from the real (not re-encoded) faces
    Trainer(config, data, args.out, device=resolve_device(args.device)).fit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    packer = commands.add_parser("pack", help="aligned faces + labels → one .npz")
    packer.add_argument("--cache-dir", type=Path)
    packer.add_argument("--splits", nargs="+", default=["train", "val"])
    packer.add_argument("--quality", type=int, default=85, help="WebP quality")
    packer.add_argument("--out", type=Path, required=True)
    trainer = commands.add_parser("train", help="train on a packed .npz")
    trainer.add_argument("--packed", type=Path, required=True)
    trainer.add_argument("--out", type=Path, required=True)
    trainer.add_argument("--device", default="auto")
    for command in (packer, trainer):
        command.add_argument("--preset", default="transfer-mobilenet_v2")
        add_config_flags(command.add_argument_group("configuration (as `agegender train`)"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    {"pack": pack, "train": train}[args.command](args)


if __name__ == "__main__":
    main()
