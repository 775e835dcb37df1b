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
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from agegender.data.labelled import LabelledFaces, load_labelled_faces
from agegender.training import Trainer, get_preset
from agegender.training.config import TrainConfig
from agegender.training.trainer import resolve_device

log = logging.getLogger("agegender")


def _config(args: argparse.Namespace) -> TrainConfig:
    config = get_preset(args.preset)
    if args.size:
        config = replace(config, preprocessing=replace(config.preprocessing, size=args.size))
    return config


def pack(args: argparse.Namespace) -> None:
    data = load_labelled_faces(args.data, _config(args).preprocessing, cache_dir=args.cache_dir)
    rows = np.flatnonzero(np.isin(data.split, args.splits))
    pack_faces(data, rows, args.out, quality=args.quality)
    log.info("packed %d faces (%s) into %s: %.1f MB", len(rows), ", ".join(args.splits),
             args.out, args.out.stat().st_size / 1e6)


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
                        age=data.age[rows], gender=data.gender[rows], race=data.race[rows],
                        split=data.split[rows], sources=np.array([data.sources[r] for r in rows]),
                        **coverage)


def unpack(path: Path) -> LabelledFaces:
    packed = np.load(path)
    pixels, offsets = packed["pixels"], packed["offsets"]
    images = np.stack([np.asarray(Image.open(io.BytesIO(pixels[start:end].tobytes())))
                       for start, end in itertools.pairwise(offsets)])
    return LabelledFaces(images=images, age=packed["age"], gender=packed["gender"],
                         race=packed["race"], sources=packed["sources"].tolist(),
                         split=packed["split"],
                         coverage=packed.get("coverage"))


def train(args: argparse.Namespace) -> None:
    data = unpack(args.packed)
    config = _config(args).with_overrides(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
        early_stopping_patience=args.patience, gender_loss_weight=args.gender_weight,
        teachers=args.teacher, distill_weight=args.distill_weight,
        consistency_weight=args.consistency_weight)
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
    packer.add_argument("--data", type=Path, required=True)
    packer.add_argument("--cache-dir", type=Path)
    packer.add_argument("--splits", nargs="+", default=["train", "val"])
    packer.add_argument("--quality", type=int, default=85, help="WebP quality")
    packer.add_argument("--out", type=Path, required=True)
    trainer = commands.add_parser("train", help="train on a packed .npz")
    trainer.add_argument("--packed", type=Path, required=True)
    trainer.add_argument("--out", type=Path, required=True)
    trainer.add_argument("--device", default="auto")
    trainer.add_argument("--teacher", action="append", metavar="CKPT")
    for name, kind in (("--epochs", int), ("--batch-size", int), ("--lr", float),
                       ("--seed", int), ("--patience", int), ("--gender-weight", float),
                       ("--distill-weight", float), ("--consistency-weight", float)):
        trainer.add_argument(name, type=kind)
    for command in (packer, trainer):
        command.add_argument("--preset", default="transfer-mobilenet_v2")
        command.add_argument("--size", type=int, help="override the preset's input size")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    {"pack": pack, "train": train}[args.command](args)


if __name__ == "__main__":
    main()
