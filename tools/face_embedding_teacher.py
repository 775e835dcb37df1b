"""A gender teacher from a face-recognition network, for offline distillation.

dlib's face-recognition ResNet (`face_recognition_models`, CC0, 29 conv layers, 150×150 chips)
was trained on millions of identities, not on gender, yet its 128-d descriptor separates
gender well, and its mistakes differ from those of an ImageNet backbone fine-tuned on UTKFace:
on validation the two share about half of their errors. It is far too slow to ship (about
80 ms per face on one core), so it teaches instead: this tool writes each image's teacher
probability of female, and `agegender train --soft-targets FILE` learns it beside the labels.

Steps: dlib's 5-point landmarks (on the HOG detection, or a fixed central box when HOG finds
none) → dlib's own 150-px chip → descriptor; then a small MLP fitted on the training split.
Training rows get out-of-fold probabilities (5 folds), so the student never learns a probe's
memory of its own labels; validation and test rows get the probe fitted on all training rows.

    pip install dlib-bin face-recognition-models
    python tools/face_embedding_teacher.py --data ../shared/data/utkface/UTKFace.tar.gz \\
        --descriptors runs/teacher/dlib_descriptors.npz --out runs/teacher/soft_gender.npz

`--descriptors` caches the slow part (about 26 min for UTKFace on 2 cores); an existing file
is reused.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import torch

from agegender.data import assign_splits, find_split_file, open_source
from agegender.data.base import FaceSource
from agegender.data.labelled import label_array
from agegender.imageio import ImageReadError

FOLDS = 5
_models: tuple | None = None  # per worker process: detector, landmarks, descriptor network


def _model_file(name: str) -> str:
    """A file of `face_recognition_models`, found without importing it (its __init__ needs
    `pkg_resources`, which current setuptools no longer ships)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("face_recognition_models is not installed: pip install face-recognition-models")
    return str(Path(spec.submodule_search_locations[0]) / "models" / name)


def _init_worker() -> None:
    global _models
    import dlib

    _models = (dlib.get_frontal_face_detector(),
               dlib.shape_predictor(_model_file("shape_predictor_5_face_landmarks.dat")),
               dlib.face_recognition_model_v1(
                   _model_file("dlib_face_recognition_resnet_model_v1.dat")))


def _describe(item: tuple[int, np.ndarray]) -> tuple[int, np.ndarray]:
    import dlib

    index, image = item
    detector, landmarks, network = _models
    height, width = image.shape[:2]
    boxes = detector(image, 0)
    box = (max(boxes, key=lambda rect: rect.area()) if boxes else
           dlib.rectangle(int(width * 0.14), int(height * 0.14),
                          int(width * 0.86), int(height * 0.86)))
    chip = dlib.get_face_chip(image, landmarks(image, box), 150, 0.25)
    return index, np.asarray(network.compute_face_descriptor(chip), dtype=np.float32)


def compute_descriptors(source: FaceSource, workers: int) -> dict[str, np.ndarray]:
    """file name → descriptor for every readable record; unreadable ones are reported."""
    indices = list(range(len(source.records)))

    def readable():
        for index, image in source.iter_images(indices):
            if isinstance(image, ImageReadError):
                print(f"skipped: {image}", file=sys.stderr)
            else:
                yield index, image

    started = time.monotonic()
    descriptors = {}
    with Pool(workers, initializer=_init_worker) as pool:
        for count, (index, descriptor) in enumerate(
                pool.imap_unordered(_describe, readable(), chunksize=16), start=1):
            descriptors[source.records[index].name] = descriptor
            if count % 2000 == 0:
                print(f"{count} faces, {time.monotonic() - started:.0f} s", file=sys.stderr)
    return descriptors


def _fit_probe(features: torch.Tensor, female: torch.Tensor, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    probe = torch.nn.Sequential(torch.nn.Linear(features.shape[1], 256), torch.nn.ReLU(),
                                torch.nn.Dropout(0.2), torch.nn.Linear(256, 1))
    optimizer = torch.optim.AdamW(probe.parameters(), lr=3e-3, weight_decay=1e-2)
    for _ in range(300):  # full batch: a few thousand 128-d rows
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            probe(features).squeeze(1), female)
        loss.backward()
        optimizer.step()
    return probe.eval()


def teacher_probabilities(descriptors: np.ndarray, female: np.ndarray, splits: np.ndarray,
                          seed: int = 0) -> np.ndarray:
    """Probability of female per row: out-of-fold on training rows, the full probe elsewhere."""
    known = ~np.isnan(female)
    train = np.flatnonzero((splits == "train") & known)
    features = torch.from_numpy(descriptors)
    features = (features - features[train].mean(0)) / features[train].std(0)
    labels = torch.from_numpy(np.nan_to_num(female).astype(np.float32))
    result = np.empty(len(descriptors), dtype=np.float32)
    full = _fit_probe(features[train], labels[train], seed)
    with torch.no_grad():
        result[:] = torch.sigmoid(full(features).squeeze(1)).numpy()
    folds = np.array_split(np.random.default_rng(seed).permutation(train), FOLDS)
    for held_out in folds:
        fitted = np.setdiff1d(train, held_out)
        probe = _fit_probe(features[fitted], labels[fitted], seed)
        with torch.no_grad():
            result[held_out] = torch.sigmoid(probe(features[held_out]).squeeze(1)).numpy()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--descriptors", type=Path, required=True,
                        help=".npz cache of the dlib descriptors (reused when it exists)")
    parser.add_argument("--out", type=Path, required=True, help="soft-target .npz to write")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    source = open_source(args.data)
    if args.descriptors.is_file():
        with np.load(args.descriptors) as cached:
            table = dict(zip(cached["name"].tolist(), cached["descriptor"], strict=True))
    else:
        table = compute_descriptors(source, args.workers)
        args.descriptors.parent.mkdir(parents=True, exist_ok=True)
        np.savez(args.descriptors, name=np.array(list(table)),
                 descriptor=np.stack(list(table.values())))
    splits = np.array(assign_splits(source.records, find_split_file(args.data), seed=args.seed))
    rows = [i for i, record in enumerate(source.records) if record.name in table]
    female = label_array([source.records[i].gender for i in rows])
    probabilities = teacher_probabilities(
        np.stack([table[source.records[i].name] for i in rows]), female, splits[rows], args.seed)
    for split in ("train", "val", "test"):
        chosen = (splits[rows] == split) & ~np.isnan(female)
        accuracy = ((probabilities[chosen] > 0.5) == (female[chosen] == 1)).mean()
        kind = "out-of-fold" if split == "train" else "probe"
        print(f"{split}: teacher gender accuracy {accuracy:.4f} ({kind}, {chosen.sum()} faces)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, name=np.array([source.records[i].name for i in rows]),
             prob_female=probabilities)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
