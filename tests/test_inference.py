import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agegender.imageio import ImageReadError, decode_image
from agegender.inference.annotate import Annotator, draw_faces, label
from agegender.inference.inputs import InputFile, expand_inputs
from agegender.inference.output import ResultWriter
from agegender.inference.predictor import RESULT_COLUMNS, FaceResult
from agegender.preprocessing import Preprocessing, normalize, resize_face


def test_decode_converts_every_mode_to_rgb(tmp_path):
    for mode, suffix in (("L", "png"), ("RGBA", "png"), ("P", "png"), ("CMYK", "jpg"),
                         ("I;16", "png"), ("RGBA", "webp"), ("RGB", "webp")):
        path = tmp_path / f"{mode.replace(';', '')}.{suffix}"
        Image.new(mode, (10, 7)).save(path)
        image = decode_image(path)
        assert image.shape == (7, 10, 3) and image.dtype == np.uint8, (mode, suffix)


def test_decode_applies_exif_orientation(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    Image.new("RGB", (40, 20)).save(path, exif=exif)
    assert decode_image(path).shape == (40, 20, 3)


@pytest.mark.parametrize(("content", "reason"), [(b"", "empty file"),
                                                 (b"hello", "not an image file")])
def test_decode_errors_name_the_input(tmp_path, content, reason):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=reason) as caught:
        decode_image(path)
    assert str(path) in str(caught.value)


def test_decode_refuses_decompression_bombs(tmp_path, monkeypatch):
    import agegender.imageio as imageio

    monkeypatch.setattr(imageio, "MAX_PIXELS", 100)
    path = tmp_path / "big.png"
    Image.new("RGB", (20, 20)).save(path)
    with pytest.raises(ImageReadError, match=r"too large: 20x20 .* over the 0-megapixel limit"):
        decode_image(path)


def test_preprocessing_resizes_and_normalises_as_declared():
    face = np.full((200, 200, 3), 255, np.uint8)
    gray = Preprocessing(size=48, grayscale=True)
    assert resize_face(face, gray).shape == (48, 48, 1)
    batch = normalize(resize_face(face, Preprocessing(size=64))[None], Preprocessing(size=64))
    assert batch.shape == (1, 3, 64, 64)
    assert np.allclose(batch, (1 - 0.5) / 0.25)


def test_expand_inputs_walks_folders_globs_and_reports_missing(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("a.jpg", "sub/b.PNG", "sub/c.txt"):
        (tmp_path / name).write_bytes(b"x")
    files, missing = expand_inputs([str(tmp_path), str(tmp_path / "*.jpg"), "nope.jpg"])
    assert [file.path.name for file in files] == ["a.jpg", "b.PNG"]
    assert missing == [("nope.jpg", "no such file or folder")]


def test_expand_inputs_gives_each_file_its_path_below_the_argument_it_came_from(tmp_path):
    for name in ("photos/a/y.png", "photos/x.jpg", "p/x.jpg", "globbed/g1.png",
                 "globbed/sub/g2.png", "globbed/skip.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    files, missing = expand_inputs([str(tmp_path / "photos"), str(tmp_path / "p" / "x.jpg"),
                                    str(tmp_path / "globbed" / "**" / "*.png"),
                                    str(tmp_path / "photos" / "x.jpg")])
    assert missing == []
    assert [(file.path.relative_to(tmp_path).as_posix(), file.relative.as_posix())
            for file in files] == [("photos/a/y.png", "a/y.png"), ("photos/x.jpg", "x.jpg"),
                                   ("p/x.jpg", "x.jpg"), ("globbed/g1.png", "g1.png"),
                                   ("globbed/sub/g2.png", "sub/g2.png")]
    assert files[1].root == tmp_path / "photos"  # named twice: the first argument's root


def test_a_relative_glob_is_taken_below_its_folder_before_the_wildcard(tmp_path, monkeypatch):
    (tmp_path / "shots" / "day1").mkdir(parents=True)
    (tmp_path / "shots" / "day1" / "a.jpg").write_bytes(b"x")
    (tmp_path / "b.jpg").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    files, _ = expand_inputs(["shots/day*/a.jpg", "*.jpg"])
    assert [(str(file.root), file.relative.as_posix()) for file in files] == [
        ("shots", "day1/a.jpg"), (".", "b.jpg")]


def test_annotations_mirror_the_input_root_and_never_overwrite_each_other(tmp_path):
    inputs = [InputFile(Path("/tmp/photos/a/y.png"), Path("/tmp/photos")),
              InputFile(Path("/tmp/photos/x.jpg"), Path("/tmp/photos")),
              InputFile(Path("/elsewhere/x.png"), Path("/elsewhere")),
              InputFile(Path("/tmp/p/clip.mp4"), Path("/tmp/p"))]
    annotator = Annotator(tmp_path, inputs)
    assert annotator.path_for("/tmp/photos/a/y.png") == tmp_path / "a" / "y.jpg"
    assert annotator.path_for("/tmp/photos/x.jpg") == tmp_path / "x.jpg"
    assert annotator.path_for("/elsewhere/x.png") == tmp_path / "x_2.jpg"
    assert annotator.path_for("/tmp/photos/x.jpg") == tmp_path / "x.jpg"  # asked again
    assert annotator.path_for("/tmp/p/clip.mp4", 30) == tmp_path / "clip_frame000030.jpg"
    assert annotator.path_for("/tmp/p/clip.mp4", 31) == tmp_path / "clip_frame000031.jpg"


def test_the_writers_round_full_precision_rows(tmp_path):
    row = FaceResult(file="a.jpg", face=0, x=10.5, y=-3.6, w=99.51, h=120.49,
                     det_score=0.987654321, age=34.96123, age_low=28.04999, age_high=41.25001,
                     gender="female", gender_prob=0.973456789)
    with ResultWriter(RESULT_COLUMNS, tmp_path / "rows.csv") as writer:
        writer.write(row.to_dict())
    assert (tmp_path / "rows.csv").read_text().splitlines()[1] == (
        "a.jpg,,,0,10,-4,100,120,0.9877,35.0,28.0,41.3,female,0.9735,")
    with ResultWriter(RESULT_COLUMNS, tmp_path / "rows.jsonl") as writer:
        writer.write(row.to_dict())
    written = json.loads((tmp_path / "rows.jsonl").read_text())
    assert (written["box"], written["age"], written["gender_prob"]) == (
        [10, -4, 100, 120], 35.0, 0.9735)
    assert isinstance(written["box"][0], int)
    assert row.age == 34.96123 and row.x == 10.5  # the row itself is left as it was


def test_the_label_is_ascii_and_shows_the_values_as_the_csv_gives_them():
    row = FaceResult(file="a.jpg", face=0, x=10.4, y=20.6, w=50.2, h=60.7, det_score=0.99,
                     age=35.46, age_low=28.04, age_high=41.3, gender="female",
                     gender_prob=0.973456)
    # the CSV says 35.5, so the picture says 36 (not 35, as 35.46 would round alone)
    assert label(row) == "F 36 (28-41) 0.97"
    assert label(row).isascii()
    single = FaceResult(file="b.jpg", face=0, x=0, y=0, w=9, h=9, age=7.0, gender="male",
                        gender_prob=0.5)
    assert label(single) == "M 7 0.50"


def test_boxes_are_drawn_where_the_csv_puts_them():
    row = FaceResult(file="a.jpg", face=0, x=40.4, y=60.6, w=50.2, h=30.3, age=30.0,
                     gender="male", gender_prob=0.9)
    drawn = np.asarray(draw_faces(np.zeros((200, 200, 3), np.uint8), [row]))
    # box from (40, 61) to (90, 91), 2 px wide: the left edge is coloured, the inside is not
    assert tuple(drawn[80, 40]) == (40, 120, 230) and tuple(drawn[80, 39]) == (0, 0, 0)
    assert tuple(drawn[91, 60]) == (40, 120, 230) and tuple(drawn[80, 60]) == (0, 0, 0)


def test_json_writer_produces_valid_json_even_when_empty(tmp_path):
    for rows in ([], [{"file": "a", "age": 3}]):
        path = tmp_path / "out.json"
        with ResultWriter(["file", "age"], path) as writer:
            for row in rows:
                writer.write(row)
        assert json.loads(path.read_text()) == rows
    with pytest.raises(ValueError, match="must end in"):
        ResultWriter(["file"], tmp_path / "out.txt")


def test_per_channel_normalisation_matches_between_numpy_and_torch_layouts():
    import torch

    from agegender.preprocessing import standardize

    prep = Preprocessing(size=4, mean=[0.1, 0.2, 0.3], std=[0.5, 0.25, 0.125])
    assert prep.mean == (0.1, 0.2, 0.3)
    assert Preprocessing.from_dict(json.loads(json.dumps(prep.to_dict()))) == prep
    batch = np.random.default_rng(0).integers(0, 256, (2, 4, 4, 3)).astype(np.uint8)
    channels_last = normalize(batch, prep)
    channels_first = standardize(torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255,
                                 prep, channels_first=True, as_array=torch.as_tensor)
    np.testing.assert_allclose(channels_last, channels_first.numpy(), rtol=1e-6)
    np.testing.assert_allclose(channels_last[0, 2, 0, 0], (batch[0, 0, 0, 2] / 255 - 0.3) / 0.125,
                               rtol=1e-5)
    with pytest.raises(ValueError, match="3 channels"):
        Preprocessing(mean=(0.1, 0.2))


@pytest.mark.parametrize("content", [b"\x00", b"\x01\x02", b"\xff\xd8", b"\x89P"])
def test_a_few_bytes_are_read_without_tripping_a_format_check(content):
    """Pillow's signature checks may read past a short prefix: a few bytes are no image."""
    from agegender.imageio import NotAnImageError

    with pytest.raises(NotAnImageError):
        decode_image(content)
