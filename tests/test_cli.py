"""End to end: train → evaluate → predict on ~200 images of the real UTKFace archive."""

from __future__ import annotations

import csv
import json
import tarfile
from pathlib import Path

import pytest

from agegender.cli.main import EXIT_ERROR, EXIT_OK, EXIT_SOME_FAILED, main

pytestmark = pytest.mark.archive


@pytest.fixture(scope="module")
def trained_run(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    code = main(["train", "--data", str(archive), "--preset", "seed-cnn", "--epochs", "2",
                 "--limit", "200", "--out", str(out)])
    assert code == EXIT_OK
    return out


@pytest.fixture(scope="module")
def face_files(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A few real crops extracted at test time (dataset images never live in the repo)."""
    folder = tmp_path_factory.mktemp("faces")
    files = []
    with tarfile.open(archive, "r|gz") as stream:
        for member in stream:
            if member.isfile() and member.name.endswith(".jpg") and " " not in member.name:
                target = folder / Path(member.name).name
                target.write_bytes(stream.extractfile(member).read())
                files.append(target)
                if len(files) == 5:
                    break
    return files


def test_train_writes_checkpoints_log_curves_and_test_metrics(trained_run: Path):
    for name in ("best.pt", "last.pt", "config.yaml", "log.csv", "curves.png", "metrics.json"):
        assert (trained_run / name).stat().st_size > 0, name
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["split"] == "test"
    assert 0 < metrics["mae"] < 60
    assert 0 <= metrics["gender_acc"] <= 1
    assert (trained_run / "test_report" / "confusion_matrix.png").exists()


def test_train_refuses_to_overwrite_a_run_without_resume(archive: Path, trained_run: Path):
    code = main(["train", "--data", str(archive), "--limit", "200", "--out", str(trained_run)])
    assert code == EXIT_ERROR


def test_resume_continues_a_finished_run_for_more_epochs(archive: Path, trained_run: Path,
                                                         tmp_path: Path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    code = main(["train", "--data", str(archive), "--out", str(run), "--resume", "--epochs", "3"])
    assert code == EXIT_OK
    with (run / "log.csv").open() as stream:
        assert [r["epoch"] for r in csv.DictReader(stream)] == ["1", "2", "3"]


def test_a_run_repeats_from_the_config_yaml_it_wrote(trained_run: Path, tmp_path: Path):
    # config.yaml names the data, so --config alone gives the same run
    code = main(["train", "--config", str(trained_run / "config.yaml"), "--out",
                 str(tmp_path / "again")])
    assert code == EXIT_OK
    assert (tmp_path / "again" / "log.csv").read_text() == (trained_run / "log.csv").read_text()


def test_resume_refuses_flags_that_would_change_the_run(trained_run: Path, caplog):
    code = main(["train", "--out", str(trained_run), "--resume", "--lr", "0.1", "--no-flip"])
    assert code == EXIT_ERROR
    assert "--flip, --lr would change it" in caplog.text
    code = main(["train", "--out", str(trained_run), "--resume", "--preset", "seed-cnn"])
    assert code == EXIT_ERROR


def test_combinations_that_cannot_work_are_refused_with_a_reason(archive: Path, tmp_path: Path,
                                                                 caplog):
    code = main(["train", "--data", str(archive), "--consistency-weight", "3", "--out",
                 str(tmp_path / "run")])
    assert code == EXIT_ERROR
    assert "consistency term (consistency_weight) needs a transfer model" in caplog.text
    assert not (tmp_path / "run").exists()
    assert main(["train", "--out", str(tmp_path / "nodata")]) == EXIT_ERROR
    assert "no data to train on" in caplog.text


def test_evaluate_writes_the_report(archive: Path, trained_run: Path, tmp_path: Path):
    report = tmp_path / "report"
    code = main(["evaluate", "--data", str(archive), "--limit", "30",
                 "--model", str(trained_run / "best.pt"), "--report", str(report)])
    assert code == EXIT_OK
    metrics = json.loads((report / "metrics.json").read_text())
    # --limit draws from the test split (split.csv beside the archive), not from all images
    assert (metrics["split"], metrics["n_images"]) == ("test", 30)
    assert metrics["provenance"]["split_origin"] == f"split file {archive.parent / 'split.csv'}"
    assert 0 < metrics["mae"] < 60
    for name in ("confusion_matrix.png", "age_scatter.png", "age_error_histogram.png",
                 "prediction_grid.png", "predictions.csv"):
        assert (report / name).stat().st_size > 0, name


def test_predict_reports_bad_files_and_keeps_going(trained_run: Path, face_files: list[Path],
                                                   tmp_path: Path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(face_files[0].read_bytes()[:300])
    empty = tmp_path / "empty.jpg"
    empty.touch()
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    output = tmp_path / "out.csv"
    inputs = [*map(str, face_files), str(broken), str(empty), str(text),
              str(tmp_path / "missing.jpg")]
    code = main(["predict", *inputs, "--model", str(trained_run / "best.pt"),
                 "--output", str(output)])
    assert code == EXIT_SOME_FAILED
    with output.open() as stream:
        rows = {Path(r["file"]).name: r for r in csv.DictReader(stream)}
    assert len(rows) == len(inputs)
    for face in face_files:
        row = rows[face.name]
        assert row["error"] == ""
        assert 0 <= float(row["age"]) < 120
        assert row["gender"] in ("male", "female")
        assert 0.5 <= float(row["gender_prob"]) <= 1
    assert rows["empty.jpg"]["error"] == "empty file"
    assert rows["notes.jpg"]["error"] == "not an image file"
    assert rows["broken.jpg"]["error"]
    assert rows["missing.jpg"]["error"] == "no such file or folder"


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_predict_writes_json_formats(trained_run: Path, face_files: list[Path], tmp_path: Path,
                                     suffix: str):
    output = tmp_path / f"out{suffix}"
    code = main(["predict", str(face_files[0].parent), "--model", str(trained_run / "best.pt"),
                 "--output", str(output)])
    assert code == EXIT_OK
    text = output.read_text()
    rows = json.loads(text) if suffix == ".json" else [json.loads(x) for x in text.splitlines()]
    assert len(rows) == len(face_files)
    assert {"file", "age", "gender", "gender_prob", "error"} <= set(rows[0])
