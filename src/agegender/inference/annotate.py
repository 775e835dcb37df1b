"""`--annotate`: each image saved with its faces' boxes and predicted labels drawn on it."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from agegender.atomic import write_bytes_atomic
from agegender.inference.predictor import FaceResult

BOX_COLOURS = {"female": (230, 60, 120), "male": (40, 120, 230)}


def label(row: FaceResult) -> str:
    """`F 34 (28–41) 0.97`: gender initial, age, 80 % interval, gender probability."""
    interval = (f" ({row.age_low:.0f}–{row.age_high:.0f})"
                if row.age_low is not None and row.age_high is not None else "")
    return f"{row.gender[0].upper()} {row.age:.0f}{interval} {row.gender_prob:.2f}"


def draw_faces(image: np.ndarray, rows: list[FaceResult]) -> Image.Image:
    """A copy of the RGB image with a box and a label for every predicted face in `rows`."""
    canvas = Image.fromarray(image).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    size = max(12, round(max(canvas.size) / 60))
    font = ImageFont.load_default(size=size)
    width = max(2, round(max(canvas.size) / 400))
    for row in rows:
        if row.error is not None or row.x is None:
            continue
        colour = BOX_COLOURS.get(row.gender or "", (255, 200, 0))
        box = (row.x, row.y, row.x + row.w, row.y + row.h)
        draw.rectangle(box, outline=colour, width=width)
        text = label(row)
        left, top, right, bottom = draw.textbbox((row.x, row.y), text, font=font)
        offset = bottom - top + 2 * width
        origin = (row.x, row.y - offset if row.y >= offset else row.y + row.h)
        left, top, right, bottom = draw.textbbox(origin, text, font=font)
        draw.rectangle((left - width, top - width, right + width, bottom + width), fill=colour)
        draw.text(origin, text, fill=(255, 255, 255), font=font)
    return canvas


def annotation_path(out_dir: Path, file: str, frame: int | None = None) -> Path:
    """Where the drawing of `file` (or of its video frame) goes: its path below `out_dir`
    (absolute paths made relative), as JPEG."""
    relative = Path(file)
    if relative.is_absolute():
        relative = relative.relative_to(relative.anchor)
    parts = [part for part in relative.parts if part not in ("..", ".")]
    path = out_dir.joinpath(*parts)
    if frame is not None:
        return path.with_name(f"{path.stem}_frame{frame:06d}.jpg")
    return path.with_suffix(".jpg")


def save_annotated(image: np.ndarray, rows: list[FaceResult], out_dir: Path, file: str,
                   frame: int | None = None) -> Path:
    """Draw and write the annotated JPEG atomically; returns its path."""
    path = annotation_path(out_dir, file, frame)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    draw_faces(image, rows).save(buffer, format="JPEG", quality=90)
    write_bytes_atomic(path, buffer.getvalue())
    return path
