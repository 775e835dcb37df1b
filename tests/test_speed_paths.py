"""The faster paths give today's answers: large JPEGs decoded at the scale detection needs, and
the INT8 copies of the networks; the precision is a checked setting everywhere."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agegender.cli.main import main
from agegender.faces.detector import DetectorConfig
from agegender.imageio import ImageReadError, decode_image, decode_reduced
from agegender.inference import Predictor
from agegender.precision import PRECISIONS, int8_path, model_file
from agegender.serving.settings import ServeSettings

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "astronaut_face.jpg"


@pytest.fixture(scope="module")
def large_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example face in a 4000×3000 JPEG, at a third of its height."""
    photo = Image.new("RGB", (4000, 3000), (90, 110, 100))
    photo.paste(Image.open(EXAMPLE).convert("RGB").resize((1000, 1000)), (1500, 900))
    path = tmp_path_factory.mktemp("large") / "large.jpg"
    photo.save(path, quality=90)
    return path


@pytest.fixture(scope="module")
def fp32() -> Predictor:
    return Predictor(precision="fp32")


def test_a_large_jpeg_is_decoded_at_the_smallest_scale_detection_can_use(large_photo):
    reduced = decode_reduced(large_photo, 1280)
    assert reduced.scale == 2.0 and reduced.pixels.shape == (1500, 2000, 3)
    assert reduced.full_size == (4000, 3000)
    assert reduced.full().shape == (3000, 4000, 3)
    assert decode_reduced(large_photo, 300).scale == 8.0
    assert decode_reduced(large_photo, 4000).scale == 1.0


def test_reduced_decoding_keeps_the_exif_orientation_and_leaves_png_whole(tmp_path):
    image = Image.new("RGB", (3000, 2000), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # turned a quarter: shown 2000 wide, 3000 high
    turned = tmp_path / "turned.jpg"
    image.save(turned, exif=exif)
    reduced = decode_reduced(turned, 500)
    assert reduced.full_size == (2000, 3000)
    assert reduced.pixels.shape == (750, 500, 3) and reduced.scale == 4.0
    png = tmp_path / "wide.png"
    image.save(png)
    assert decode_reduced(png, 500).scale == 1.0


def test_reduced_decoding_names_a_broken_input(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 40)
    with pytest.raises(ImageReadError, match=r"broken\.jpg"):
        decode_reduced(broken, 1280, source=str(broken))


def test_a_large_photo_gives_the_same_face_decoded_reduced_or_whole(fp32, large_photo):
    whole = Predictor(fp32.backend, detector=fp32.detector, reduced_decoding=False)
    (today,) = whole.predict(large_photo)
    (reduced,) = fp32.predict(large_photo)
    assert reduced.error is None
    assert np.allclose([reduced.x, reduced.y, reduced.w, reduced.h],
                       [today.x, today.y, today.w, today.h], atol=0.02 * today.w)
    assert abs(reduced.age - today.age) < 1.5 and reduced.gender == today.gender


def test_a_small_face_in_a_large_photo_is_cropped_from_the_full_image(fp32, large_photo):
    photo = Image.new("RGB", (4000, 3000), (90, 110, 100))
    photo.paste(Image.open(EXAMPLE).convert("RGB").resize((200, 200)), (2000, 1500))
    data = io.BytesIO()
    photo.save(data, format="JPEG", quality=95)
    faces, _, size = fp32.faces_in_file(data.getvalue(), "small face")
    whole = fp32.find_faces(decode_image(data.getvalue()))
    assert size == (4000, 3000) and len(faces) == len(whole) == 1
    assert np.array_equal(faces[0].crop, whole[0].crop) or np.abs(
        faces[0].crop.astype(int) - whole[0].crop).mean() < 8


def test_int8_gives_the_same_face_with_an_age_close_to_float(fp32):
    int8 = Predictor(precision="int8")
    assert int8.precision == "int8" and int8.backend.path.name.endswith(".int8.onnx")
    (today,) = fp32.predict(EXAMPLE)
    (quantised,) = int8.predict(EXAMPLE)
    assert quantised.gender == today.gender
    assert abs(quantised.age - today.age) < 3
    assert abs(quantised.x - today.x) < 0.1 * today.w


def test_the_search_network_is_chosen_on_the_command_line_and_checked(tmp_path):
    rows = tmp_path / "rows.csv"
    assert main(["predict", str(EXAMPLE), "--detector", "yunet", "--output", str(rows)]) == 0
    (row,) = list(csv.DictReader(rows.open()))
    assert row["error"] == "" and 15 < float(row["age"]) < 45
    with pytest.raises(SystemExit):
        main(["predict", str(EXAMPLE), "--detector", "mtcnn"])
    with pytest.raises(ValueError, match="search must be one of retinaface, yunet"):
        ServeSettings(detector="mtcnn")
    yunet = Predictor(detector_config=DetectorConfig(search="yunet"))
    assert yunet.detector.config.refine_passes == 2
    assert yunet.detector_for(2).config.search == "yunet"  # the workers' detectors too


def test_the_precision_is_a_checked_setting(tmp_path):
    assert set(PRECISIONS) == {"int8", "fp32"}
    with pytest.raises(ValueError, match="precision must be one of"):
        Predictor(precision="int4")
    with pytest.raises(ValueError, match="precision"):
        ServeSettings(precision="half")
    own = tmp_path / "own.onnx"
    own.write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"tools/quantize\.py"):
        model_file(own, "int8")
    assert model_file(own, "fp32") == own and int8_path(own).name == "own.int8.onnx"
    with pytest.raises(ValueError, match="checkpoint"):
        model_file(tmp_path / "run.pt", "int8")
    done = subprocess.run([sys.executable, "-m", "agegender", "predict", str(EXAMPLE),
                           "--precision", "int4"], capture_output=True, text=True)
    assert done.returncode == 2 and "--precision" in done.stderr


def test_predicting_one_photo_imports_neither_torch_nor_the_networks_code():
    script = ("import runpy, sys\n"
              f"sys.argv = ['agegender', 'predict', {str(EXAMPLE)!r}]\n"
              "try:\n    runpy.run_module('agegender', run_name='__main__')\n"
              "except SystemExit:\n    pass\n"
              "print('loaded:', sorted(name for name in sys.modules if name == 'torch'"
              " or name.startswith('agegender.models.backbones')))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "loaded: []" in done.stdout and "astronaut_face.jpg" in done.stdout
