"""`agegender predict` as a new user meets it: no invented faces, settings refused when given,
messages a user can act on, one JSON face shape (each test was written against a defect)."""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agegender.cli.main import EXIT_ERROR, EXIT_OK, EXIT_SOME_FAILED, build_parser, main
from agegender.inference.predictor import NO_FACE

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "astronaut_face.jpg"


@pytest.fixture(scope="module")
def faceless(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A plain 400×300 image, random noise, a 40×150 strip and an 8×8 thumbnail."""
    folder = tmp_path_factory.mktemp("faceless")
    rng = np.random.default_rng(0)
    images = {"green.jpg": Image.new("RGB", (400, 300), (40, 160, 60)),
              "noise.png": Image.fromarray(rng.integers(0, 256, (480, 512, 3), np.uint8)),
              "strip.jpg": Image.new("RGB", (40, 150), (120, 110, 100)),
              "tiny.png": Image.new("RGB", (8, 8), (120, 110, 100))}
    for name, image in images.items():
        image.save(folder / name)
    return [folder / name for name in images]


def _rows(path: Path) -> list[dict]:
    if path.suffix == ".csv":
        with path.open() as stream:
            return list(csv.DictReader(stream))
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_images_without_a_face_get_no_face_whatever_their_size(faceless, tmp_path):
    output = tmp_path / "rows.csv"
    assert main(["predict", *map(str, faceless), "--output", str(output)]) == EXIT_OK
    rows = _rows(output)
    assert [row["error"] for row in rows] == [NO_FACE] * 4
    assert all(row["age"] == "" and row["gender"] == "" for row in rows)


def test_whole_image_answers_crops_without_a_detection(faceless, tmp_path):
    output = tmp_path / "rows.jsonl"
    assert main(["predict", *map(str, faceless), "--whole-image", "--output",
                 str(output)]) == EXIT_OK
    rows = _rows(output)
    assert all(row["error"] is None and row["age"] is not None for row in rows)
    assert rows[0]["box"] == [0, 0, 400, 300] and rows[0]["det_score"] is None


@pytest.mark.parametrize(("flag", "value"), [
    ("--batch-size", "-5"), ("--batch-size", "0"), ("--workers", "0"), ("--every", "0"),
    ("--max-faces", "0"), ("--min-face", "-1"), ("--min-score", "1.5"), ("--min-score", "nan"),
    ("--ray-actors", "0"), ("--batch-size", "many")])
def test_a_setting_out_of_range_is_refused_when_parsed(flag, value, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["predict", str(EXAMPLE), flag, value])
    assert stopped.value.code == 2
    assert f"argument {flag}:" in capsys.readouterr().err


def test_annotate_and_output_are_checked_before_any_work(tmp_path, caplog, monkeypatch):
    import agegender.inference.predictor as predictor

    def no_work(*args, **kwargs):
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr(predictor.Predictor, "__init__", no_work)
    taken = tmp_path / "taken.jpg"
    taken.write_bytes(b"x")
    assert main(["predict", str(EXAMPLE), "--annotate", str(taken)]) == EXIT_ERROR
    assert "--annotate" in caplog.text and "an existing file" in caplog.text
    assert main(["predict", str(EXAMPLE), "--output", str(tmp_path / "rows.txt")]) == EXIT_ERROR
    assert main(["predict", str(EXAMPLE), "--output", str(tmp_path)]) == EXIT_ERROR
    assert main(["predict", str(EXAMPLE), "--output", str(taken / "rows.csv")]) == EXIT_ERROR
    assert "is a file, not a folder" in caplog.text


def test_failures_are_told_on_stderr_with_the_right_counts(faceless, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="agegender")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(EXAMPLE.read_bytes()[:400])
    output = tmp_path / "rows.csv"
    code = main(["predict", str(EXAMPLE), str(faceless[0]), str(broken),
                 str(tmp_path / "missing.jpg"), "--output", str(output)])
    assert code == EXIT_SOME_FAILED
    warnings = [record.getMessage() for record in caplog.records
                if record.levelno == logging.WARNING]
    assert any(message.startswith(f"{broken}: ") for message in warnings)
    assert f"{tmp_path / 'missing.jpg'}: no such file or folder" in warnings
    assert caplog.records[-1].getMessage() == (
        f"3 images, 1 not found to {output}: 1 face, 1 image without a face, 2 failed")


def test_failure_reasons_are_capped(tmp_path, caplog):
    names = [str(tmp_path / f"missing{index}.jpg") for index in range(14)]
    assert main(["predict", *names, "--output", str(tmp_path / "rows.csv")]) == EXIT_SOME_FAILED
    warnings = [record.getMessage() for record in caplog.records
                if record.levelno == logging.WARNING]
    assert len(warnings) == 11
    assert warnings[-1] == f"… and 4 more failures; every reason is in {tmp_path / 'rows.csv'}"


def test_a_video_is_counted_as_a_video(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="agegender")
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not really a video")
    main(["predict", str(video), str(EXAMPLE), "--output", str(tmp_path / "rows.csv")])
    assert caplog.records[-1].getMessage().startswith(
        f"1 image, 1 video to {tmp_path / 'rows.csv'}: 1 face, 0 images without a face, 1 "
        "failed")


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_and_quiet_work_before_or_after_the_command(where):
    for flag, name in (("-v", "verbose"), ("-q", "quiet")):
        argv = [flag, "predict", "x.jpg"] if where == "before" else ["predict", "x.jpg", flag]
        assert getattr(build_parser().parse_args(argv), name) is True


def test_quiet_keeps_only_warnings(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    assert main(["predict", str(EXAMPLE), "-q", "--output", str(tmp_path / "r.csv")]) == EXIT_OK
    assert not [record for record in caplog.records if record.name.startswith("agegender")
                and record.levelno < logging.WARNING]


def _env() -> dict[str, str]:
    """The environment of a child `agegender`: the package under test, one thread."""
    import agegender

    return {**os.environ, "PYTHONPATH": str(Path(agegender.__file__).parents[1]),
            "OMP_NUM_THREADS": "1"}


def _run(arguments: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = _env()
    return subprocess.run([sys.executable, "-m", "agegender", *arguments], env=env,
                          capture_output=True, cwd=ROOT, **kwargs)


def test_a_broken_pipe_ends_quietly(tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for index in range(40):
        Image.new("RGB", (64, 64), (index, 90, 90)).save(folder / f"{index}.png")
    reader = subprocess.Popen(["head", "-2"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    writer = subprocess.run([sys.executable, "-m", "agegender", "-q", "predict", str(folder)],
                            stdout=reader.stdin, stderr=subprocess.PIPE, env=_env(), cwd=ROOT)
    reader.stdin.close()
    assert len(reader.stdout.read().splitlines()) == 2
    reader.wait()
    assert b"Traceback" not in writer.stderr and b"BrokenPipeError" not in writer.stderr
    assert writer.returncode == 141


def test_a_dash_reads_one_image_from_standard_input():
    result = _run(["predict", "-", "--max-faces", "1"], input=EXAMPLE.read_bytes())
    assert result.returncode == EXIT_OK, result.stderr
    (row,) = csv.DictReader(result.stdout.decode().splitlines())
    assert row["file"] == "-" and row["error"] == "" and float(row["age"]) > 0


def test_json_rows_nest_the_box_and_carry_landmarks(tmp_path):
    output = tmp_path / "rows.json"
    assert main(["predict", str(EXAMPLE), "--output", str(output)]) == EXIT_OK
    (row,) = json.loads(output.read_text())
    assert list(row) == ["file", "frame", "time", "face", "box", "det_score", "landmarks",
                         "age", "age_low", "age_high", "gender", "gender_prob", "error"]
    assert row["face"] == 0 and len(row["box"]) == 4
    assert np.array(row["landmarks"]).shape == (5, 2)
    assert main(["predict", str(EXAMPLE), "--output", str(tmp_path / "rows.csv")]) == EXIT_OK
    header = (tmp_path / "rows.csv").read_text().splitlines()[0].split(",")
    assert header[4:8] == ["x", "y", "w", "h"] and "landmarks" not in header  # CSV stays flat


@pytest.fixture(scope="module")
def two_faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example face twice, large and small, the large one cut by the left edge."""
    face = Image.open(EXAMPLE).convert("RGB")
    canvas = Image.new("RGB", (900, 600), (200, 200, 200))
    canvas.paste(face.resize((face.width * 2, face.height * 2)), (-110, 100))
    canvas.paste(face, (600, 200))
    path = tmp_path_factory.mktemp("two") / "two.png"
    canvas.save(path)
    return path


def test_face_filters_on_the_command_line(two_faces, tmp_path):
    def faces(*flags: str) -> list[dict]:
        output = tmp_path / "rows.jsonl"
        assert main(["predict", str(two_faces), *flags, "--output", str(output)]) == EXIT_OK
        return [row for row in _rows(output) if row["error"] is None]

    every = faces()
    assert len(every) == 2 and every[0]["box"][2] > every[1]["box"][2]
    assert every[0]["box"][0] == 0  # cut by the left edge: clipped to it
    assert all(row["box"][0] >= 0 and row["box"][1] >= 0 and row["box"][0] + row["box"][2] <= 900
               and row["box"][1] + row["box"][3] <= 600 for row in every)  # within the image
    assert every[0]["landmarks"] is not None
    assert faces("--max-faces", "1") == every[:1]
    smaller = min(every[1]["box"][2:])
    assert faces("--min-face", str(smaller + 1)) == every[:1]
    assert faces("--min-score", "1") == []  # no detector score reaches 1
    assert main(["predict", str(two_faces), "--max-faces", "1", "--aligned"]) == EXIT_ERROR


def test_help_shows_every_default_and_lists_the_choices():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for name, command in commands.items():
        for action in command._actions:
            if action.help in (None, "==SUPPRESS==") or action.option_strings == ["-h", "--help"]:
                continue
            needs_default = (action.default not in (None, False, [], "==SUPPRESS==")
                             and action.option_strings)
            if needs_default:
                assert "default" in action.help, f"{name} {action.option_strings}"
    train_help = "".join(commands["train"].format_help().split())  # as wrapped, unwrapped
    assert "seed-cnn," in train_help and "transfer-mobilenet_v2" in train_help
    assert "{train,val,test,all}" in commands["evaluate"].format_help()
    assert "Thin:" not in parser.format_help() and "parsing here" not in parser.format_help()
