import json

import numpy as np
import pytest
from PIL import Image

from agegender.imageio import ImageReadError, decode_image
from agegender.inference.inputs import expand_inputs
from agegender.inference.output import ResultWriter
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
    paths, missing = expand_inputs([str(tmp_path), str(tmp_path / "*.jpg"), "nope.jpg"])
    assert [p.name for p in paths] == ["a.jpg", "b.PNG"]
    assert missing == [("nope.jpg", "no such file or folder")]


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
