"""`--annotate`: each image saved with its faces' boxes and predicted labels drawn on it."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from agegender.atomic import write_bytes_atomic
from agegender.inference.inputs import InputFile
from agegender.inference.output import rounded
from agegender.inference.predictor import FaceResult, ImageResult

log = logging.getLogger(__name__)

BOX_COLOURS = {"female": (230, 60, 120), "male": (40, 120, 230)}


def label(row: FaceResult) -> str:
    """`F 34 (28-41) 0.97`: gender initial, age, 80 % interval, gender probability, from the
    values as the CSV gives them, in ASCII (the bundled font has no en dash)."""
    shown = rounded(row.to_dict())
    interval = (f" ({shown['age_low']:.0f}-{shown['age_high']:.0f})"
                if shown["age_low"] is not None and shown["age_high"] is not None else "")
    return f"{row.gender[0].upper()} {shown['age']:.0f}{interval} {shown['gender_prob']:.2f}"


def draw_faces(image: np.ndarray, rows: list[FaceResult]) -> Image.Image:
    """A copy of the RGB image with a box and a label for every predicted face in `rows`."""
    return draw_boxes(image, [
        ((row.x, row.y, row.w, row.h), label(row),
         BOX_COLOURS.get(row.gender or "", (255, 200, 0)))
        for row in rows if row.error is None and row.x is not None])


Drawn = tuple[tuple[float, float, float, float], str, tuple[int, int, int]]
"""One box to draw: x, y, w, h; its label; its RGB colour."""


def draw_boxes(image: np.ndarray, boxes: list[Drawn]) -> Image.Image:
    """A copy of the RGB image with each box outlined in its colour, its label above it (below
    when there is no room) in white on that colour."""
    canvas = Image.fromarray(image).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    size = max(12, round(max(canvas.size) / 60))
    font = ImageFont.load_default(size=size)
    width = max(2, round(max(canvas.size) / 400))
    for box, text, colour in boxes:
        x, y, w, h = (round(value) for value in box)
        draw.rectangle((x, y, x + w, y + h), outline=colour, width=width)
        left, top, right, bottom = draw.textbbox((x, y), text, font=font)
        offset = bottom - top + 2 * width
        origin = (x, y - offset if y >= offset else y + h)
        left, top, right, bottom = draw.textbbox(origin, text, font=font)
        draw.rectangle((left - width, top - width, right + width, bottom + width), fill=colour)
        draw.text(origin, text, fill=(255, 255, 255), font=font)
    return canvas


def annotation_path(out_dir: Path, relative: Path, frame: int | None = None) -> Path:
    """Where the drawing of an input (or of its video frame) goes: its path below its input
    root (`InputFile.relative`), below `out_dir`, as JPEG."""
    if relative.is_absolute():
        relative = relative.relative_to(relative.anchor)
    parts = [part for part in relative.parts if part not in ("..", ".")]
    path = out_dir.joinpath(*parts)
    if frame is not None:
        return path.with_name(f"{path.stem}_frame{frame:06d}.jpg")
    return path.with_suffix(".jpg")


class Annotator:
    """Saves the drawings of one run's images under `out_dir`, each at its input's path relative
    to the root it was found under (`photos/a/y.png` given as `photos` → `out_dir/a/y.jpg`).

    Names are unique within the run: when two inputs would get the same name (`x.jpg` and
    `x.png`, or `x.jpg` in two folders given as arguments), the first in input order keeps it
    and each later one gets `_2`, `_3`, … before the suffix (`x_2.jpg`), with a warning.
    """

    def __init__(self, out_dir: Path, inputs: Iterable[InputFile]):
        self.out_dir = out_dir
        self._relative = {str(item.path): item.relative for item in inputs}
        self._owners: dict[Path, tuple[str, int | None]] = {}

    def path_for(self, file: str, frame: int | None = None) -> Path:
        """The drawing's path for `file` (as in the rows) or its video frame; the same path
        each time it is asked for the same one."""
        wanted = annotation_path(self.out_dir, self._relative.get(file, Path(file)), frame)
        path, number = wanted, 1
        while self._owners.setdefault(path, (file, frame)) != (file, frame):
            number += 1
            path = wanted.with_stem(f"{wanted.stem}_{number}")
        if path != wanted:
            log.warning("%s: annotated as %s, since %s is taken by %s", file, path, wanted,
                        self._owners[wanted][0])
        return path

    def save(self, result: ImageResult) -> Path | None:
        """Draw and write the annotated JPEG atomically; returns its path (None when the result
        kept no image: the file could not be read)."""
        if result.image is None:
            return None
        path = self.path_for(result.file, result.frame)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        draw_faces(result.image, result.rows).save(buffer, format="JPEG", quality=90)
        write_bytes_atomic(path, buffer.getvalue())
        return path
