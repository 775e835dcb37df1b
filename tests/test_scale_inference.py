"""Prediction at scale: the aligned fast path for dataset crops, and `--engine ray`, whose rows
equal the plain command's."""

from __future__ import annotations

import csv
import tarfile
from pathlib import Path

import numpy as np
import pytest

from agegender.cli.main import EXIT_OK, EXIT_SOME_FAILED, main
from agegender.faces.align import CANONICAL_TEMPLATE
from agegender.faces.canonical import aligned_crop
from agegender.faces.detector import FaceDetector
from agegender.imageio import decode_image
from agegender.inference import Predictor
from agegender.preprocessing import Preprocessing

pytestmark = pytest.mark.archive


@pytest.fixture(scope="module")
def crops(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 6 UTKFace crops (extracted at test time), an empty and a non-image file."""
    folder = tmp_path_factory.mktemp("crops")
    count = 0
    with tarfile.open(archive, "r|gz") as stream:
        for member in stream:
            if member.isfile() and member.name.endswith(".jpg") and " " not in member.name:
                (folder / Path(member.name).name).write_bytes(stream.extractfile(member).read())
                count += 1
                if count == 6:
                    break
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.png").write_bytes(b"not an image")
    return folder


def _faces(folder: Path) -> list[Path]:
    return sorted(path for path in folder.glob("*.jpg") if path.stat().st_size)


# -- the aligned fast path -------------------------------------------------------------------
def test_an_aligned_crop_puts_the_face_on_the_template(crops: Path):
    """The fixed transform maps a UTKFace crop's face onto the model's template: the detector
    finds its 5 points near the template's (as close as in the crop itself)."""
    prep = Preprocessing(size=112, align=True)
    detector = FaceDetector()
    for path in _faces(crops):
        crop = aligned_crop(decode_image(path), prep)
        assert crop.shape == (112, 112, 3)
        (face,) = detector.detect(crop)
        distance = np.linalg.norm(face.landmarks / 112 - CANONICAL_TEMPLATE, axis=1)
        assert np.median(distance) < 0.06, path.name


def test_the_aligned_predictor_takes_each_image_as_one_face_without_a_detector(crops: Path):
    predictor = Predictor(aligned=True)
    assert predictor.detector is None
    files = _faces(crops)
    rows = predictor.predict_batch(files)
    for path, (row,) in zip(files, rows, strict=True):
        width, height = decode_image(path).shape[1::-1]
        assert (row.x, row.y, row.w, row.h, row.det_score) == (0, 0, width, height, None)
        assert row.error is None and 0 < row.age < 120


def test_predict_aligned_on_the_command_line(crops: Path, tmp_path: Path):
    output = tmp_path / "rows.csv"
    assert main(["predict", str(crops), "--aligned", "--output", str(output)]) \
        == EXIT_SOME_FAILED
    with output.open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 8
    assert sum(row["error"] == "" for row in rows) == 6


# -- Ray ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    yield
    ray.shutdown()


def test_ray_refuses_a_video_and_names_it(tmp_path: Path, caplog):
    pytest.importorskip("ray")
    video = tmp_path / "holiday.mp4"
    video.write_bytes(b"not really a video")
    assert main(["predict", "--engine", "ray", str(video)]) == 2
    assert "holiday.mp4 is a video" in caplog.text


def test_ray_refuses_a_search_network_it_does_not_run(crops: Path, caplog):
    pytest.importorskip("ray")
    assert main(["predict", "--engine", "ray", "--detector", "yunet", str(crops)]) == 2
    assert "does not take --detector yunet" in caplog.text


def test_ray_rows_equal_the_plain_commands(crops: Path, tmp_path: Path, ray_session, capfd):
    plain, on_ray = tmp_path / "plain.csv", tmp_path / "ray.csv"
    assert main(["predict", str(crops), "--output", str(plain)]) == EXIT_SOME_FAILED
    capfd.readouterr()
    assert main(["predict", "--engine", "ray", "--ray-actors", "2", str(crops),
                 str(tmp_path / "missing.jpg"), "--output", str(on_ray)]) == EXIT_SOME_FAILED
    chatter = capfd.readouterr().err
    for notice in ("core_worker", "Token authentication", "streaming_executor", "INFO"):
        assert notice not in chatter, chatter  # Ray's own messages only with -v
    ray_lines = on_ray.read_text().splitlines()
    assert ray_lines[1].startswith(f"{tmp_path / 'missing.jpg'},")  # missing inputs first
    assert "\n".join(ray_lines[:1] + ray_lines[2:]) + "\n" == plain.read_text()
    errors = [line for line in ray_lines if "not an image file" in line or "empty file" in line]
    assert len(errors) == 2


def test_ray_reads_a_listing_and_writes_parquet(crops: Path, tmp_path: Path, ray_session,
                                               monkeypatch: pytest.MonkeyPatch):
    """Relative paths, as listed, name the rows; the actors find the files wherever they run."""
    import pyarrow.parquet as pq

    monkeypatch.chdir(crops.parent)
    listing = tmp_path / "listing.csv"
    files = [f"{crops.name}/{path.name}" for path in _faces(crops)[:3]]
    listing.write_text("path\n" + "\n".join(files) + "\n")
    plain = tmp_path / "plain.csv"
    assert main(["predict", *files, "--output", str(plain)]) == EXIT_OK
    output = tmp_path / "rows.parquet"
    assert main(["predict", "--engine", "ray", str(listing), "--output", str(output)]) == EXIT_OK
    table = pq.read_table(output).to_pylist()
    with plain.open(newline="") as stream:
        expected = list(csv.DictReader(stream))
    assert [row["file"] for row in table] == files
    assert [row["age"] for row in table] == [float(row["age"]) for row in expected]


def test_uris_are_listed_and_read_and_their_errors_are_rows(crops: Path):
    """A `file://` URI stands for any pyarrow filesystem: a folder's images are listed, each
    read by the actor; an unreadable or missing one gives a row with its error."""
    pytest.importorskip("pyarrow")
    from agegender.inference.ray_batch import PredictActor, list_inputs

    folder_uri = crops.as_uri()
    files, missing = list_inputs([folder_uri, folder_uri + "/nothing-here"])
    assert files == [path.as_uri() for path in sorted(crops.glob("*"))
                     if path.suffix in (".jpg", ".png")]
    assert missing == [(folder_uri + "/nothing-here", "no images at this URI")]
    actor = PredictActor(None, batch_size=32, aligned=True, threads=1)
    names = [files[0], (crops / "text.png").as_uri(), folder_uri + "/gone.jpg"]
    rows = actor({"file": np.array(names), "location": np.array(names)}).to_pylist()
    assert [row["file"] for row in rows] == names
    assert rows[0]["error"] is None and 0 < rows[0]["age"] < 120
    assert rows[1]["error"] == "not an image file"
    assert rows[2]["error"].startswith("cannot read")
