"""Evaluation says what it measured: the data, the split and the count are printed and
recorded; --limit draws from the split; a labelled folder without a split column is scored
whole; compare shows each report's provenance and warns when they differ."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agegender.cli.main import EXIT_OK, main
from agegender.inference.predictor import bundled_model_path


def _labelled_folder(folder: Path, count: int, with_split: bool) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    with (folder / "labels.csv").open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["file", "age", "gender", *(["split"] if with_split else [])])
        for index in range(count):
            name = f"{index}.png"
            Image.fromarray(rng.integers(0, 256, (48, 48, 3), np.uint8)).save(folder / name)
            split = ["train", "val", "test", "test"][index % 4]
            writer.writerow([name, 20 + index % 40, index % 2, *([split] if with_split else [])])
    return folder


def _evaluate(data: Path, report: Path, *flags: str) -> dict:
    assert main(["evaluate", "--data", str(data), "--model", str(bundled_model_path()),
                 "--report", str(report), *flags]) == EXIT_OK
    return json.loads((report / "metrics.json").read_text())


@pytest.fixture(scope="module")
def unsplit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _labelled_folder(tmp_path_factory.mktemp("data") / "unsplit", 24, with_split=False)


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _labelled_folder(tmp_path_factory.mktemp("data") / "split", 24, with_split=True)


def test_a_labelled_folder_without_a_split_column_is_evaluated_whole(unsplit, tmp_path,
                                                                     capsys):
    metrics = _evaluate(unsplit, tmp_path / "whole")
    assert (metrics["split"], metrics["n_images"]) == ("all", 24)
    assert metrics["provenance"]["data"] == str(unsplit)
    assert metrics["provenance"]["split_origin"].startswith("drawn")
    assert f"{unsplit}, all split, 24 images" in capsys.readouterr().out
    asked = _evaluate(unsplit, tmp_path / "test", "--split", "test")
    assert asked["split"] == "test" and asked["n_images"] < 24


def test_limit_draws_from_the_split(split, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="agegender")
    metrics = _evaluate(split, tmp_path / "limited", "--limit", "5")
    assert (metrics["split"], metrics["n_images"]) == ("test", 5)  # 12 test images, 5 drawn
    assert metrics["provenance"]["limit"] == 5
    assert metrics["provenance"]["split_origin"] == "the dataset's own"
    assert "test split (the dataset's own), 5 images (--limit 5)" in caplog.text


def test_compare_shows_provenance_and_warns_when_reports_differ(unsplit, split, tmp_path,
                                                                caplog):
    whole = tmp_path / "whole"
    _evaluate(unsplit, whole)
    limited = tmp_path / "limited"
    _evaluate(split, limited, "--limit", "5")
    assert main(["compare", str(whole), str(limited), "--output", str(tmp_path / "c")]) == 0
    warnings = [record.getMessage() for record in caplog.records
                if record.levelno == logging.WARNING and "not like for like" in
                record.getMessage()]
    assert [warning.split(" (")[0] for warning in warnings] == [
        "the reports measured different data", "the reports measured different splits",
        "the reports measured different numbers of images"]
    page = (tmp_path / "c" / "compare.html").read_text(encoding="utf-8")
    assert "What each report measured" in page and str(unsplit) in page and "⚠" in page
