"""Report folder and plots on small synthetic data."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agegender.evaluation import age_metrics, gender_metrics
from agegender.evaluation.plots import plot_prediction_grid, plot_training_curves
from agegender.evaluation.report import EvalPredictions, write_report

NAN = math.nan
PLOTS = ("confusion_matrix.png", "age_scatter.png", "age_error_histogram.png",
         "groups_age_group.png")


def _predictions(count: int = 30, with_images: bool = True) -> EvalPredictions:
    rng = np.random.default_rng(1)
    age_true = rng.uniform(1, 90, count).round()
    age_true[0] = NAN
    gender_true = rng.integers(0, 2, count).astype(float)
    gender_true[1] = NAN
    race = rng.integers(0, 5, count).astype(float)
    race[2] = NAN
    age_pred = np.nan_to_num(age_true, nan=30.0) + rng.normal(0, 6, count)
    return EvalPredictions(
        sources=[f"face_{index}.jpg" for index in range(count)],
        age_true=age_true,
        age_pred=age_pred,
        gender_true=gender_true,
        prob_female=np.nan_to_num(gender_true, nan=0.5) * 0.3 + rng.uniform(0, 0.7, count),
        race=race,
        age_low=age_pred - 8,
        age_high=age_pred + 8,
        images=rng.integers(0, 256, (count, 24, 24, 3), dtype=np.uint8) if with_images else None,
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[EvalPredictions, Path, dict]:
    predictions = _predictions()
    report_dir = tmp_path_factory.mktemp("report") / "nested"
    return predictions, report_dir, write_report(predictions, report_dir, grid_size=12)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_report_writes_every_file(report: tuple[EvalPredictions, Path, dict]) -> None:
    _, report_dir, _ = report
    for name in ("metrics.json", "predictions.csv", "worst_age_errors.csv", "gender_errors.csv",
                 *PLOTS, "prediction_grid.png"):
        assert (report_dir / name).stat().st_size > 0, name
    assert not list(report_dir.glob("*.tmp")), "temp file left behind"


def test_metrics_json_matches_metrics_on_same_data(
    report: tuple[EvalPredictions, Path, dict],
) -> None:
    predictions, report_dir, returned = report
    written = json.loads((report_dir / "metrics.json").read_text(encoding="utf-8"))
    assert written == returned
    assert written["n_images"] == 30
    assert written["age"] == age_metrics(predictions.age_true, predictions.age_pred,
                                         age_low=predictions.age_low,
                                         age_high=predictions.age_high)
    assert written["gender"] == gender_metrics(predictions.gender_true, predictions.prob_female)
    assert written["age"]["n"] == 29
    assert written["age"]["interval_coverage"] is not None
    assert sum(group["n"] for group in written["by_race"].values()) == 29
    assert set(written["by_gender"]) <= {"male", "female"}
    assert sum(group["n"] for group in written["by_age_group"].values()) == 29


def test_prediction_csvs(report: tuple[EvalPredictions, Path, dict]) -> None:
    predictions, report_dir, _ = report
    rows = _read_csv(report_dir / "predictions.csv")
    assert len(rows) == 30
    assert list(rows[0]) == ["source", "age_true", "age_pred", "gender_true", "prob_female",
                             "race", "abs_error", "age_low", "age_high"]
    assert rows[0]["source"] == "face_0.jpg"
    assert rows[0]["age_true"] == rows[0]["abs_error"] == ""
    assert rows[1]["gender_true"] == ""
    assert rows[3]["gender_true"] in ("0", "1")

    worst = [float(row["abs_error"]) for row in _read_csv(report_dir / "worst_age_errors.csv")]
    assert len(worst) == 29
    assert worst == sorted(worst, reverse=True)
    assert worst[0] == pytest.approx(np.nanmax(predictions.abs_error), abs=1e-4)

    errors = _read_csv(report_dir / "gender_errors.csv")
    confusion = report[2]["gender"]["confusion"]["matrix"]
    wrong = confusion[0][1] + confusion[1][0]
    assert len(errors) == wrong > 1
    confidence = [max(float(row["prob_female"]), 1 - float(row["prob_female"])) for row in errors]
    assert confidence == sorted(confidence, reverse=True)


def test_grid_png_is_a_valid_image(report: tuple[EvalPredictions, Path, dict]) -> None:
    _, report_dir, _ = report
    with Image.open(report_dir / "prediction_grid.png") as image:
        image.verify()
    with Image.open(report_dir / "prediction_grid.png") as image:
        assert image.format == "PNG"
        width, height = image.size
    assert width > 0 and height > 0
    assert width > height  # 12 faces on a 4-column grid: 3 rows


def test_gender_only_data_omits_age_section(tmp_path: Path) -> None:
    predictions = _predictions(count=8, with_images=False)
    predictions.age_true[:] = NAN
    predictions.race[:] = NAN
    metrics = write_report(predictions, tmp_path)
    assert set(metrics) == {"gender", "by_gender", "n_images", "fairness", "gender_reliability"}
    assert set(metrics["fairness"]["groups"]) == {"gender"}
    assert all(group["age_mae"] is None for group in metrics["by_gender"].values())
    assert (tmp_path / "confusion_matrix.png").exists()
    assert not (tmp_path / "age_scatter.png").exists()
    assert not (tmp_path / "prediction_grid.png").exists()
    assert _read_csv(tmp_path / "worst_age_errors.csv") == []
    json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))


def test_age_only_data_omits_gender_sections(tmp_path: Path) -> None:
    predictions = _predictions(count=6, with_images=False)
    predictions.gender_true[:] = NAN
    metrics = write_report(predictions, tmp_path)
    assert "gender" not in metrics and "by_gender" not in metrics
    assert "age" in metrics and "by_race" in metrics
    assert not (tmp_path / "confusion_matrix.png").exists()


def test_eval_predictions_rejects_misaligned_columns() -> None:
    with pytest.raises(ValueError, match="age_pred"):
        EvalPredictions(sources=["a", "b"], age_true=[1, 2], age_pred=[1], gender_true=[0, 1],
                        prob_female=[0.1, 0.9], race=[NAN, NAN])


def test_training_curves_with_empty_columns(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text(
        "epoch,lr,train_loss,train_mae,train_gender_acc,val_loss,val_mae,val_gender_acc,seconds\n"
        "1,0.001,0.9,,0.61,0.8,,0.65,12.5\n"
        "2,0.001,0.7,,0.72,0.75,,0.70,12.1\n"
        "3,0.0005,0.6,,0.80,,,,11.9\n",
        encoding="utf-8",
    )
    out = tmp_path / "plots" / "curves.png"
    plot_training_curves(log, out)
    with Image.open(out) as image:
        assert image.size[0] > image.size[1] > 0


def test_grid_handles_grayscale_and_missing_labels(tmp_path: Path) -> None:
    images = np.zeros((3, 16, 16, 1), dtype=np.uint8)
    out = tmp_path / "grid.png"
    plot_prediction_grid(images, [NAN, 30, 40], [20, 31, 60], [1, NAN, 0], [0.93, 0.2, 0.7], out,
                         columns=3, rows=1)
    assert out.stat().st_size > 0
    with pytest.raises(ValueError, match="uint8"):
        plot_prediction_grid(images.astype(float), [1], [1], [1], [1], out)
