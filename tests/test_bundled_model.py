"""The bundled model: shipped in the package, small, used by default, sane on the example photo."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from agegender.cli.main import EXIT_OK, main
from agegender.inference.backends import OnnxBackend
from agegender.inference.predictor import bundled_model_path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "astronaut_face.jpg"
MAX_ASSETS_BYTES = 30 * 1024 * 1024


def test_the_bundled_model_ships_in_the_package_within_30_mb():
    path = bundled_model_path()
    assets = sum(file.stat().st_size for file in path.parent.iterdir() if file.is_file())
    assert assets <= MAX_ASSETS_BYTES
    backend = OnnxBackend(path, threads=1)
    assert backend.preprocessing.align and backend.preprocessing.size == 112
    assert backend.metadata["agegender.preset"] == "transfer-mobilenet_v2"
    assert json.loads(backend.metadata["agegender.labels"])["gender"] == ["male", "female"]


def test_predict_without_a_model_uses_the_bundled_one(tmp_path):
    """One face row from the bundled model, in range. (A single photo is no accuracy test; the
    model card's figures come from the test split.)"""
    output = tmp_path / "rows.csv"
    assert main(["predict", str(EXAMPLE), "--output", str(output)]) == EXIT_OK
    with output.open() as stream:
        (row,) = list(csv.DictReader(stream))
    assert row["error"] == "" and float(row["det_score"]) > 0.9
    age, low, high = float(row["age"]), float(row["age_low"]), float(row["age_high"])
    assert 0 <= low < age < high <= 100
    assert row["gender"] in ("male", "female") and 0.5 <= float(row["gender_prob"]) <= 1
