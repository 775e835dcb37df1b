"""The Python API takes what users have (paths as str, PIL images, float and grayscale arrays,
BGR when asked), raises a typed error for one unreadable image, keeps error rows in batches,
and refuses settings out of range."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agegender.imageio import (
    CorruptImageError,
    ImageReadError,
    MissingImageError,
    as_rgb,
    decode_image,
)
from agegender.inference import FaceFilter, Predictor
from agegender.inference.inputs import expand_inputs
from agegender.inference.predictor import NO_FACE

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "astronaut_face.jpg"


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor()


@pytest.fixture(scope="module")
def reference(predictor) -> float:
    (row,) = predictor.predict(EXAMPLE)
    return row.age


def test_a_path_as_str_or_path_a_pil_image_and_arrays_give_the_same_face(predictor, reference):
    rgb = decode_image(EXAMPLE)
    inputs = {"str": str(EXAMPLE), "Path": EXAMPLE, "PIL": Image.open(EXAMPLE),
              "uint8": rgb, "float 0-1": rgb.astype(np.float32) / 255,
              "float 0-255": rgb.astype(np.float64),
              "RGBA": np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])}
    for name, image in inputs.items():
        (row,) = predictor.predict(image)
        assert row.error is None and row.age == pytest.approx(reference, abs=0.05), name
    (bgr,) = predictor.predict(rgb[:, :, ::-1], bgr=True)
    assert bgr.age == pytest.approx(reference, abs=0.05)


def test_grayscale_arrays_are_taken(predictor):
    gray = np.asarray(Image.open(EXAMPLE).convert("L"))
    for image in (gray, gray[:, :, None], gray.astype(np.float32) / 255):
        (row,) = predictor.predict(image)
        assert row.error is None and row.age is not None


def test_arrays_that_are_not_images_are_refused_by_name():
    with pytest.raises(ImageReadError, match="shape"):
        as_rgb(np.zeros((4, 4, 2), np.uint8), source="mine")
    with pytest.raises(ImageReadError, match="0–1 or 0–255"):
        as_rgb(np.full((4, 4), 300.0))
    with pytest.raises(ImageReadError, match="NaN"):
        as_rgb(np.full((4, 4), np.nan))
    with pytest.raises(ImageReadError, match="a list"):
        as_rgb([[1, 2]])
    assert as_rgb(np.full((2, 2), 1.0))[0, 0].tolist() == [255, 255, 255]
    assert as_rgb(np.array([[[10, 20, 30]]], np.uint8), bgr=True)[0, 0].tolist() == [30, 20, 10]


def test_one_unreadable_image_raises_a_typed_error(predictor, tmp_path):
    with pytest.raises(MissingImageError, match=r"missing\.jpg: no such file") as missing:
        predictor.predict(tmp_path / "missing.jpg")
    assert isinstance(missing.value, FileNotFoundError)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(EXAMPLE.read_bytes()[:400])
    with pytest.raises(CorruptImageError, match=r"broken\.jpg"):
        predictor.predict(str(broken))


def test_predict_paths_takes_str_expands_folders_and_keeps_error_rows(predictor, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "face.jpg").write_bytes(EXAMPLE.read_bytes())
    Image.new("RGB", (300, 200), (20, 90, 40)).save(folder / "wall.png")
    results = list(predictor.predict_paths([str(folder), str(tmp_path / "missing.jpg")]))
    assert [Path(result.file).name for result in results] == ["face.jpg", "wall.png",
                                                               "missing.jpg"]
    assert results[0].rows[0].error is None
    assert results[1].rows[0].error == NO_FACE
    assert results[2].rows[0].error == "no such file"


def test_a_looping_link_is_not_called_missing(tmp_path):
    loop = tmp_path / "loop.jpg"
    os.symlink(loop, loop)
    with pytest.raises(ImageReadError) as caught:
        decode_image(loop)
    assert "no such file" not in str(caught.value) and "symbolic links" in str(caught.value)
    _, missing = expand_inputs([str(loop)])
    assert missing == [(str(loop), "too many levels of symbolic links")]


def test_settings_out_of_range_are_refused_by_the_api(predictor):
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        Predictor(predictor.backend, batch_size=0)
    with pytest.raises(ValueError, match="max_faces"):
        FaceFilter(max_faces=0)
    with pytest.raises(ValueError, match="min_score must be between 0 and 1"):
        FaceFilter(min_score=2)
    with pytest.raises(ValueError, match="workers"):
        list(predictor.predict_paths([EXAMPLE], workers=0))
    with pytest.raises(ValueError, match="give one"):
        Predictor(predictor.backend, aligned=True, whole_image=True)


def test_face_filters_and_clipped_boxes_in_the_api(predictor):
    face = Image.open(EXAMPLE).convert("RGB")
    canvas = Image.new("RGB", (900, 600), (200, 200, 200))
    canvas.paste(face.resize((face.width * 2, face.height * 2)), (-110, 100))
    canvas.paste(face, (600, 200))
    image = np.asarray(canvas)
    every = predictor.predict(image)
    assert len(every) == 2 and [row.face for row in every] == [0, 1]
    assert every[0].x == 0  # the face cut by the left edge: its box starts at the edge
    for row in every:
        assert row.x >= 0 and row.y >= 0 and row.x + row.w <= 900 and row.y + row.h <= 600
        assert len(row.landmarks) == 5
    largest = Predictor(predictor.backend, faces=FaceFilter(max_faces=1)).predict(image)
    assert largest == every[:1]
    big = Predictor(predictor.backend,
                    faces=FaceFilter(min_face=min(every[1].w, every[1].h) + 1)).predict(image)
    assert big == every[:1]
    (none,) = Predictor(predictor.backend, faces=FaceFilter(min_score=1.0)).predict(image)
    assert none.error == NO_FACE
