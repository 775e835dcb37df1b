"""Validation views: the same labelled faces as the world might show them, and a model's figures
on each view.

A model chosen on UTKFace's own validation split is never pushed back against learning
UTKFace's look: studio-like colour, clean pixels. The views show the same faces grey, as a
faded print, and as a cheap camera takes them, and LFW's press photos beside them, so that a
model's choice can be judged on faces that look like the world.

Each change works on a batch of uint8 N×H×W×C aligned crops (`LabelledFaces.images`; C = 3, or
1 for a model that reads grey) and returns a new batch of the same shape and dtype. Its
parameters are fixed and moderate: the views are a yardstick, not augmentation. Random parts
(the sensor noise) are drawn from a generator seeded by `VIEW_SEED` and a hash of the face's
own pixels, so a face always looks the same in a view, alone or anywhere in any batch.

numpy and Pillow only (plus the inference backends): nothing here needs the training stack.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike
from PIL import Image, ImageFilter

from agegender.data.labelled import LabelledFaces, load_labelled_faces
from agegender.data.records import FEMALE, GENDER_NAMES, GENDER_THRESHOLD
from agegender.evaluation.metrics import (
    AGE_GROUP_LABELS,
    age_group_ids,
    age_metrics,
    gender_metrics,
)
from agegender.inference.backends import ModelBackend, load_backend, predict_in_batches
from agegender.preprocessing import Preprocessing

VIEW_SEED = 18
"""Seeds every face's noise together with a hash of its pixels (issue 18 asked for the views)."""

LUMA = np.array([0.299, 0.587, 0.114])
"""ITU-R 601-2 luma weights of R, G, B: what Pillow's `convert("L")` computes."""

FADED_SATURATION = 0.6
FADED_TONE = (0.12, 0.92)
FADED_CAST = np.array([1.04, 1.00, 0.85])
NOISY_BLUR_PER_112_PX = 0.8
NOISY_SIGMA = 6.0
NOISY_JPEG_QUALITY = 60
BOOTSTRAP_DRAWS = 1000

Change = Callable[[np.ndarray], np.ndarray]
"""A view's change: uint8 N×H×W×C crops → the same faces in that view, same shape and dtype."""


def as_is(faces: np.ndarray) -> np.ndarray:
    """The faces unchanged (a copy): colour, as the model sees them today."""
    return np.array(faces, dtype=np.uint8, copy=True)


def grayscale(faces: np.ndarray) -> np.ndarray:
    """Grey faces: every channel set to the luma 0.299 R + 0.587 G + 0.114 B, rounded."""
    return _per_face(faces, _gray_rgb)


def faded(faces: np.ndarray) -> np.ndarray:
    """A faded, colour-cast print, in this order on pixels scaled to [0, 1]:

    - saturation 0.6: each pixel moves 40 % of the way to its own luma;
    - tone range 0.12–0.92: black is lifted to 0.12 and white lowered to 0.92 (contrast 0.8);
    - a warm, yellow cast: red × 1.04, green × 1.00, blue × 0.85, clipped to [0, 1].
    """
    return _per_face(faces, _faded_rgb)


def noisy(faces: np.ndarray) -> np.ndarray:
    """A cheap camera's picture, in this order:

    - a Gaussian blur of radius 0.8 px per 112 px of crop side (Pillow's `GaussianBlur`);
    - sensor noise: Gaussian, standard deviation 6 grey levels, drawn per pixel and channel
      from the face's own seeded generator (see the module docstring);
    - a JPEG round trip at quality 60 (Pillow's encoder, default 4:2:0 chroma subsampling).
    """
    return _per_face(faces, _noisy_rgb)


@dataclass(frozen=True)
class View:
    """A view: which dataset's faces (`utkface` or `lfw`), changed how."""

    dataset: str
    change: Change


VIEWS: dict[str, View] = {
    "utkface": View("utkface", as_is),
    "utkface-gray": View("utkface", grayscale),
    "utkface-faded": View("utkface", faded),
    "utkface-noisy": View("utkface", noisy),
    "lfw": View("lfw", as_is),
}
"""Every view by name, in the order the benchmark reports them."""


def face_rng(face: np.ndarray) -> np.random.Generator:
    """The face's own generator: seeded by `VIEW_SEED` and a hash of its pixels and shape."""
    digest = hashlib.blake2b(str(face.shape).encode(), digest_size=8)
    digest.update(np.ascontiguousarray(face).tobytes())
    return np.random.default_rng([VIEW_SEED, int.from_bytes(digest.digest(), "little")])


def _per_face(faces: np.ndarray, change: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply an RGB change to each face of an N×H×W×C uint8 batch; a one-channel face is
    changed as grey RGB and returned as the luma of the result."""
    faces = np.asarray(faces)
    if faces.ndim != 4 or faces.shape[3] not in (1, 3) or faces.dtype != np.uint8:
        raise ValueError(f"expected uint8 N×H×W×3 (or ×1) faces, got {faces.dtype} {faces.shape}")
    out = np.empty_like(faces)
    for index, face in enumerate(faces):
        rgb = np.repeat(face, 3, axis=2) if face.shape[2] == 1 else face
        changed = change(rgb)
        out[index] = _to_uint8(changed @ LUMA)[:, :, None] if face.shape[2] == 1 else changed
    return out


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _gray_rgb(face: np.ndarray) -> np.ndarray:
    return np.repeat(_to_uint8(face @ LUMA)[:, :, None], 3, axis=2)


def _faded_rgb(face: np.ndarray) -> np.ndarray:
    pixels = face / 255.0
    luma = (pixels @ LUMA)[:, :, None]
    pixels = luma + FADED_SATURATION * (pixels - luma)
    black, white = FADED_TONE
    pixels = black + (white - black) * pixels
    return _to_uint8(np.clip(pixels * FADED_CAST, 0.0, 1.0) * 255.0)


def _noisy_rgb(face: np.ndarray) -> np.ndarray:
    radius = NOISY_BLUR_PER_112_PX * face.shape[0] / 112
    blurred = np.asarray(Image.fromarray(face).filter(ImageFilter.GaussianBlur(radius)))
    noise = face_rng(face).normal(0.0, NOISY_SIGMA, face.shape)
    buffer = io.BytesIO()
    Image.fromarray(_to_uint8(blurred + noise)).save(buffer, "JPEG", quality=NOISY_JPEG_QUALITY)
    return np.asarray(Image.open(buffer).convert("RGB"))


DECADE_LABELS: tuple[str, ...] = (*(f"{low}-{low + 9}" for low in range(0, 70, 10)), "70+")
"""The decades of the bias the selection rule and issue 26 judge: 0–9 … 60–69, and 70+."""


def decade_ids(age: ArrayLike) -> np.ndarray:
    """Index into `DECADE_LABELS` of each age (its whole year), NaN where it is unknown."""
    age = np.asarray(age, dtype=float)
    return np.where(np.isfinite(age), np.minimum(np.floor(age) // 10, len(DECADE_LABELS) - 1),
                    np.nan)


def bias_by_age_group(age_true: ArrayLike, age_pred: ArrayLike, decades: bool = False
                      ) -> dict[str, dict]:
    """Mean signed error (predicted − true age, years) and count per `AGE_GROUPS` group (per
    decade with `decades`); rows without an age are left out, and so are groups without rows."""
    true, pred = np.asarray(age_true, dtype=float), np.asarray(age_pred, dtype=float)
    groups, labels = ((decade_ids(true), DECADE_LABELS) if decades
                      else (age_group_ids(true), AGE_GROUP_LABELS))
    error = pred - true
    return {label: {"bias": float(error[groups == index].mean()),
                    "n": int((groups == index).sum())}
            for index, label in enumerate(labels) if (groups == index).any()}


def clustered_standard_error(values: ArrayLike, clusters: ArrayLike,
                             draws: int = BOOTSTRAP_DRAWS) -> float | None:
    """Bootstrap standard error of the mean of `values`, drawing whole clusters (a person's
    photos) instead of rows: one person's photos are not independent, so a few people with many
    photos (LFW) make a per-photo figure noisier than its count suggests. A row whose cluster
    is unknown (-1) is a cluster of its own. None below two rows."""
    values, clusters = np.asarray(values, dtype=float), np.asarray(clusters)
    if len(values) < 2:
        return None
    own = np.arange(len(values)) + max(int(clusters.max()), 0) + 1
    _, index = np.unique(np.where(clusters < 0, own, clusters), return_inverse=True)
    sums, counts = np.bincount(index, weights=values), np.bincount(index)
    picks = np.random.default_rng(VIEW_SEED).integers(0, len(sums), (draws, len(sums)))
    return float((sums[picks].sum(1) / counts[picks].sum(1)).std())


def view_figures(age_true: ArrayLike, age_pred: ArrayLike, gender_true: ArrayLike,
                 prob_female: ArrayLike, person: ArrayLike | None = None) -> dict:
    """Figures of one model on one view: `n`, age `mae` and `bias` (mean signed error) with
    `bias_by_group`, `bias_by_decade` and `mae_by_group`, `gender_acc` with its standard
    error `gender_acc_se` (drawing people, where `person` says who each face is; -1: unknown),
    and the recall of women and of men. A figure without labels to judge it (ages on LFW) is
    None."""
    true, pred = np.asarray(age_true, dtype=float), np.asarray(age_pred, dtype=float)
    aged = np.isfinite(true)
    age, gender = age_metrics(true, pred), gender_metrics(gender_true, prob_female)
    recall = {name: gender["per_class"][name]["recall"] for name in GENDER_NAMES}
    gender_true, prob_female = np.asarray(gender_true, dtype=float), np.asarray(prob_female)
    gendered = np.isfinite(gender_true)
    hits = (prob_female[gendered] >= GENDER_THRESHOLD) == (gender_true[gendered] == FEMALE)
    people = np.full(len(true), -1) if person is None else np.asarray(person)
    return {
        "n": len(true),
        "age_n": age["n"],
        "mae": age["mae"],
        "bias": float((pred[aged] - true[aged]).mean()) if aged.any() else None,
        "bias_by_group": bias_by_age_group(true[aged], pred[aged]),
        "bias_by_decade": bias_by_age_group(true[aged], pred[aged], decades=True),
        "mae_by_group": age["mae_by_group"],
        "gender_n": gender["n"],
        "gender_acc": gender["accuracy"],
        "gender_acc_se": clustered_standard_error(hits, people[gendered]),
        "female_recall": recall["female"],
        "male_recall": recall["male"],
    }


def evaluate_views(models: dict[str, Path], data: dict[str, Path | None], views: Sequence[str],
                   split: str = "val", limit: int | None = None) -> dict:
    """Every model's `view_figures` on every view, on the `split` rows of the datasets in
    `data` (`utkface`, `lfw`: a path, or None to skip its views); `val+test` pools both.

    `models` maps a name to a model file (.onnx or .pt). Returns `{"figures": {name: {view:
    figures}}, "skipped": {view: reason}}`, in the order given. `limit` decodes only that
    many random faces of each dataset (every split, as `agegender evaluate --limit`) and
    evaluates the split's share of them.
    Models with the same preprocessing share the decoded faces and their views.
    """
    unknown = set(views) - set(VIEWS)
    if unknown:
        raise ValueError(f"unknown views {sorted(unknown)}; the views are {list(VIEWS)}")
    backends = {name: load_backend(path) for name, path in models.items()}
    figures: dict[str, dict[str, dict]] = {name: {} for name in backends}
    skipped: dict[str, str] = {}
    for prep in dict.fromkeys(backend.preprocessing for backend in backends.values()):
        group = {name: b for name, b in backends.items() if b.preprocessing == prep}
        for dataset in dict.fromkeys(VIEWS[view].dataset for view in views):
            named = [view for view in views if VIEWS[view].dataset == dataset]
            faces = _split_faces(data.get(dataset), dataset, prep, split, limit)
            if isinstance(faces, str):
                skipped.update(dict.fromkeys(named, faces))
                continue
            for view in named:
                images = VIEWS[view].change(np.asarray(faces.images))
                for name, backend in group.items():
                    figures[name][view] = _figures_of(backend, images, faces)
    order = [view for view in views if view not in skipped]
    return {"figures": {name: {view: by_view[view] for view in order}
                        for name, by_view in figures.items()}, "skipped": skipped}


def _figures_of(backend: ModelBackend, images: np.ndarray, faces: LabelledFaces) -> dict:
    predicted = predict_in_batches(backend, images)
    return view_figures(faces.age, predicted.age, faces.gender, predicted.prob_female,
                        faces.person)


def _split_faces(path: Path | None, dataset: str, prep: Preprocessing, split: str,
                 limit: int | None) -> LabelledFaces | str:
    """The `split` rows of the dataset at `path` (images loaded into memory), or why not."""
    if path is None:
        return f"no --{dataset} data given"
    try:
        data = load_labelled_faces(path, prep, limit=limit)
    except (FileNotFoundError, ValueError) as error:
        return f"{dataset} could not be read: {error}"
    rows = np.flatnonzero(np.isin(data.split, split.split("+")))
    if len(rows) == 0:
        return f"{path}: no {split!r} faces"
    return LabelledFaces(images=np.asarray(data.images[rows]), age=data.age[rows],
                         gender=data.gender[rows], race=data.race[rows],
                         sources=[data.sources[i] for i in rows], split=data.split[rows],
                         person=data.person[rows])
