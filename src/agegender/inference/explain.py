"""Activation-map panels: for each face, where in the face the gender and age answers come from.

An exported model with a feature-map output is explained with numpy (`inference.cam`), so this
runs in the plain install; a `.pt` checkpoint with Grad-CAM (`models.gradcam`, needs torch).
Maps are always computed on the face itself, never averaged with its mirror image. The gender
map shows the evidence for the answer (a sequential scale); the age map is signed, toward older
and toward younger, in a diverging scale with a legend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from agegender.data.records import GENDER_NAMES, GENDER_THRESHOLD
from agegender.faces.align import crop_transform
from agegender.inference.backends import (
    CHECKPOINT_SUFFIXES,
    FacePredictions,
    ModelBackend,
    OnnxBackend,
    TorchCheckpointBackend,
    load_backend,
)
from agegender.inference.cam import age_cam, gender_cam
from agegender.inference.predictor import FoundFace
from agegender.preprocessing import Preprocessing, normalize

TILE = 224
"""Side in pixels of each picture in a panel."""

CAPTION_HEIGHT = 86
OVERLAY_OPACITY = 0.5
SIGNED_OPACITY_SCALE = 1.5
"""A signed map's strongest evidence is drawn at 1.5 × `OVERLAY_OPACITY`, nil evidence not."""
NO_FLIP_NOTE = "maps computed without flip averaging"

# An inferno-like colour ramp (dark → bright), so the maps need no plotting library.
_RAMP = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]],
                 dtype=np.float64)
# A diverging ramp (ColorBrewer RdBu, reversed): blue toward younger (-1), white for nothing
# either way (0), red toward older (+1).
_DIVERGING = np.array([[5, 48, 97], [67, 147, 195], [247, 247, 247], [214, 96, 77],
                       [103, 0, 31]], dtype=np.float64)


class Explainer(Protocol):
    backend: ModelBackend
    preprocessing: Preprocessing
    methods: tuple[str, str]
    """How the gender and the age maps are made, in words for the panel."""

    def explain(self, crops: np.ndarray) -> tuple[FacePredictions, np.ndarray, np.ndarray]:
        """Predictions, gender maps (N×h×w in [0, 1]) and signed age maps (N×h×w in [-1, 1],
        toward older where positive) of N canonical crops."""
        ...


class OnnxExplainer:
    """Class activation maps of an exported model from its feature-map output (numpy only)."""

    def __init__(self, backend: OnnxBackend):
        backend.require_feature_map()
        self.backend = backend
        self.preprocessing = backend.preprocessing
        self.heads = backend.linear_heads
        self.methods = ("class activation map", "Grad-CAM (closed form)")

    def explain(self, crops: np.ndarray) -> tuple[FacePredictions, np.ndarray, np.ndarray]:
        predictions, feature_map = self.backend.predict_with_feature_map(crops)
        female = predictions.prob_female >= GENDER_THRESHOLD
        return (predictions, gender_cam(feature_map, self.heads, female),
                age_cam(feature_map, self.heads))


class GradCamExplainer:
    """A checkpoint's predictions (as `TorchCheckpointBackend` gives them) and Grad-CAM maps
    (`models.gradcam`); torch is imported only here, as the checkpoint backend does."""

    def __init__(self, path: Path | str):
        from agegender.models.checkpoint import load_checkpoint

        loaded = load_checkpoint(path)
        self.model = loaded.model.eval()
        self.calibration = loaded.calibration
        self.backend = TorchCheckpointBackend(loaded.deployed(), loaded.preprocessing)
        self.preprocessing: Preprocessing = loaded.preprocessing
        self.methods = ("Grad-CAM", "Grad-CAM")

    def explain(self, crops: np.ndarray) -> tuple[FacePredictions, np.ndarray, np.ndarray]:
        import torch

        from agegender.models.gradcam import grad_cam_maps

        images = torch.from_numpy(normalize(crops, self.preprocessing))
        predictions = self.backend.predict(crops)
        female = predictions.prob_female >= GENDER_THRESHOLD
        return predictions, *grad_cam_maps(self.model, images, self.calibration, female)


def load_explainer(path: Path | str) -> Explainer:
    """The explainer for a model file: numpy CAM for .onnx, Grad-CAM (torch) for .pt."""
    path = Path(path)
    if path.suffix in CHECKPOINT_SUFFIXES and path.is_file():
        return GradCamExplainer(path)
    backend = load_backend(path)  # the missing file, the unknown format: the backend's errors
    if not isinstance(backend, OnnxBackend):
        raise ValueError(f"{path}: explain takes a checkpoint (.pt) or an exported .onnx model")
    return OnnxExplainer(backend)


@dataclass(frozen=True)
class FaceExplanation:
    """One face's crop, maps (h×w: gender in [0, 1], age in [-1, 1]) and prediction, and the
    image → crop transform."""

    crop: np.ndarray
    gender_map: np.ndarray
    age_map: np.ndarray
    age: float
    age_low: float
    age_high: float
    prob_female: float
    to_crop: np.ndarray


def explain_faces(explainer: Explainer, image: np.ndarray, faces: list[FoundFace]
                  ) -> list[FaceExplanation]:
    """Maps and predictions of the faces found in `image`."""
    if not faces:
        return []
    predictions, gender_maps, age_maps = explainer.explain(np.stack([f.crop for f in faces]))
    size = explainer.preprocessing.size
    return [FaceExplanation(face.crop, gender_maps[i], age_maps[i], float(predictions.age[i]),
                            float(predictions.age_low[i]), float(predictions.age_high[i]),
                            float(predictions.prob_female[i]),
                            _image_to_crop(face, image.shape, size, explainer.preprocessing))
            for i, face in enumerate(faces)]


def _image_to_crop(face: FoundFace, shape: tuple[int, ...], size: int, prep: Preprocessing
                   ) -> np.ndarray:
    """2×3 affine map from image pixels to crop pixels: the alignment for a detected face,
    a plain resize for an image taken whole."""
    if prep.align and face.landmarks is not None:
        return crop_transform(face.landmarks, size)
    height, width = shape[:2]
    return np.array([[size / width, 0.0, 0.0], [0.0, size / height, 0.0]])


def colourise(heat: np.ndarray, signed: bool = False) -> np.ndarray:
    """H×W values in [0, 1] (or [-1, 1] if `signed`, in the diverging ramp) → H×W×3 uint8."""
    ramp, low = (_DIVERGING, -1.0) if signed else (_RAMP, 0.0)
    positions = np.linspace(low, 1.0, len(ramp))
    channels = [np.interp(np.clip(heat, low, 1), positions, ramp[:, c]) for c in range(3)]
    return np.stack(channels, axis=-1).astype(np.uint8)


def overlay(picture: np.ndarray, heat: np.ndarray, coverage: np.ndarray | None = None,
            signed: bool = False) -> np.ndarray:
    """The heat map blended over an RGB picture of the same size (only where `coverage`). A
    signed map is as opaque as it is strong (√|value|), so where the evidence is nil either
    way the picture shows through instead of the scale's white middle."""
    opacity = OVERLAY_OPACITY * (np.ones(heat.shape) if coverage is None else coverage)
    if signed:
        opacity = opacity * SIGNED_OPACITY_SCALE * np.sqrt(np.clip(np.abs(heat), 0, 1))
    blended = (picture * (1 - opacity[..., None])
               + colourise(heat, signed) * opacity[..., None])
    return blended.astype(np.uint8)


def _resized_map(heat: np.ndarray, side: int) -> np.ndarray:
    return np.asarray(Image.fromarray(heat.astype(np.float32), "F")
                      .resize((side, side), Image.Resampling.BILINEAR))


def _photo_tiles(image: np.ndarray, face: FaceExplanation, crop_size: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The photo around the face (a TILE² view in image coordinates) with each map warped
    from the crop back onto it."""
    crop_to_image = np.linalg.inv(np.vstack((face.to_crop, [0.0, 0.0, 1.0])))
    corners = np.array([[0, 0, 1], [crop_size, crop_size, 1], [0, crop_size, 1],
                        [crop_size, 0, 1]], dtype=np.float64) @ crop_to_image.T
    centre = corners[:, :2].mean(0)
    half = 0.75 * np.ptp(corners[:, :2], axis=0).max()
    scale = 2 * half / TILE
    # tile pixel → image pixel, and tile pixel → crop pixel (PIL's inverse affine data)
    tile_to_image = np.array([[scale, 0, centre[0] - half], [0, scale, centre[1] - half],
                              [0, 0, 1]])
    tile_to_crop = np.vstack((face.to_crop, [0, 0, 1])) @ tile_to_image
    photo = np.asarray(Image.fromarray(image).convert("RGB").transform(
        (TILE, TILE), Image.Transform.AFFINE, tuple(tile_to_image[:2].ravel()),
        resample=Image.Resampling.BILINEAR))
    inside = np.asarray(Image.fromarray(np.ones((crop_size, crop_size), np.float32), "F")
                        .transform((TILE, TILE), Image.Transform.AFFINE,
                                   tuple(tile_to_crop[:2].ravel()),
                                   resample=Image.Resampling.BILINEAR))
    tiles = []
    for heat, signed in ((face.gender_map, False), (face.age_map, True)):
        warped = np.asarray(Image.fromarray(_resized_map(heat, crop_size), "F").transform(
            (TILE, TILE), Image.Transform.AFFINE, tuple(tile_to_crop[:2].ravel()),
            resample=Image.Resampling.BILINEAR))
        tiles.append(overlay(photo, warped, inside, signed))
    return tiles[0], tiles[1]


def describe(face: FaceExplanation) -> str:
    """The prediction in words, as the panel's caption states it."""
    female = face.prob_female >= GENDER_THRESHOLD
    gender = GENDER_NAMES[int(female)]
    probability = face.prob_female if female else 1 - face.prob_female
    interval = (f" (80 %: {face.age_low:.0f} to {face.age_high:.0f})"
                if np.isfinite(face.age_low) else "")
    return f"age {face.age:.1f}{interval} · {gender} {probability:.2f}"


def render_panel(image: np.ndarray, face: FaceExplanation, methods: tuple[str, str], title: str,
                 pictures: Sequence[int] = (0, 1, 2, 3, 4)) -> Image.Image:
    """A row of pictures above a caption with the prediction and how the maps were made.

    `pictures` picks from: the crop, the gender and age maps on the crop, both on the photo."""
    crop_size = face.crop.shape[0]
    crop = np.asarray(Image.fromarray(face.crop.squeeze()).convert("RGB")
                      .resize((TILE, TILE), Image.Resampling.BILINEAR))
    gender_photo, age_photo = _photo_tiles(image, face, crop_size)
    tiles = [("aligned crop", crop),
             ("gender map", overlay(crop, _resized_map(face.gender_map, TILE))),
             ("age map", overlay(crop, _resized_map(face.age_map, TILE), signed=True)),
             ("gender map, photo", gender_photo), ("age map, photo", age_photo)]
    tiles = [tiles[index] for index in pictures]
    label_height = 18
    panel = Image.new("RGB", (max(TILE * len(tiles), 5 * TILE),
                              TILE + label_height + CAPTION_HEIGHT), "white")
    draw = ImageDraw.Draw(panel)
    font = ImageFont.load_default(14)
    for index, (label, tile) in enumerate(tiles):
        panel.paste(Image.fromarray(tile), (index * TILE, label_height))
        draw.text((index * TILE + 4, 1), label, fill="black", font=font)
    caption = [f"{title}: {describe(face)}",
               f"gender: {methods[0]} toward the predicted gender; age: {methods[1]} of the "
               f"expected age, signed; {NO_FLIP_NOTE}"]
    for line, text in enumerate(caption):
        draw.text((4, TILE + label_height + 6 + 20 * line), text, fill="black", font=font)
    draw_age_legend(panel, (4, TILE + label_height + 48), font)
    return panel


def draw_age_legend(picture: Image.Image, corner: tuple[int, int], font,
                    width: int = 200, height: int = 12) -> None:
    """The signed age map's colour scale at `corner`: "toward younger", a bar from blue
    through white to red, "toward older"."""
    draw = ImageDraw.Draw(picture)
    left, top = corner
    draw.text((left, top - 2), "age map: toward younger", fill="black", font=font)
    start = left + int(draw.textlength("age map: toward younger", font=font)) + 8
    bar = colourise(np.tile(np.linspace(-1.0, 1.0, width), (height, 1)), signed=True)
    picture.paste(Image.fromarray(bar), (start, top))
    draw.rectangle((start - 1, top - 1, start + width, top + height), outline="grey")
    draw.text((start + width + 8, top - 2), "toward older", fill="black", font=font)


def worst_faces_sheet(crops: np.ndarray, captions: Sequence[str],
                      explainer: Explainer | None, columns: int = 4) -> Image.Image:
    """A contact sheet of faces, each as crop | gender map | signed age map (or the crop alone
    without an explainer), captioned, with the age map's legend below when it has maps."""
    side = 112
    maps = explainer.explain(crops)[1:] if explainer is not None else None
    cell_width = side * (3 if maps is not None else 1)
    rows = -(-len(crops) // columns)
    legend = 24 if maps is not None else 0
    sheet = Image.new("RGB", (columns * (cell_width + 8), rows * (side + 20) + legend), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(12)
    for index, crop in enumerate(crops):
        picture = np.asarray(Image.fromarray(crop.squeeze()).convert("RGB")
                             .resize((side, side), Image.Resampling.BILINEAR))
        parts = [picture]
        if maps is not None:
            parts += [overlay(picture, _resized_map(kind[index], side), signed=signed)
                      for kind, signed in zip(maps, (False, True), strict=True)]
        x, y = index % columns * (cell_width + 8), index // columns * (side + 20)
        sheet.paste(Image.fromarray(np.hstack(parts)), (x, y))
        draw.text((x + 2, y + side + 2), captions[index], fill="black", font=font)
    if maps is not None:
        draw_age_legend(sheet, (4, rows * (side + 20) + 6), font)
    return sheet
