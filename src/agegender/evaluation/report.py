"""One evaluation run turned into a report folder: metrics, per-image CSVs and plots."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agegender.atomic import write_json_atomic
from agegender.data.records import FEMALE, GENDER_NAMES, RACE_NAMES
from agegender.evaluation.groups import INTERVAL_TARGET, fairness_by_group, reliability_bins
from agegender.evaluation.metrics import (
    AGE_GROUP_LABELS,
    GENDER_THRESHOLD,
    age_group_ids,
    age_metrics,
    breakdown,
    gender_metrics,
)
from agegender.evaluation.plots import (
    plot_age_scatter,
    plot_confusion_matrix,
    plot_error_histogram,
    plot_groups,
    plot_interval_coverage,
    plot_prediction_grid,
    plot_reliability,
)
from agegender.inference.explain import Explainer, worst_faces_sheet

WORST_AGE_ERRORS = 50
WORST_FACES_SHOWN = 24
GROUPING_TITLES = {"age_group": "age group", "gender": "gender", "race": "race"}


@dataclass
class EvalPredictions:
    """Per-image labels and model outputs of one evaluated split; NaN marks a missing label.

    `age_low`/`age_high` are an optional prediction interval; `images` (N x H x W x C uint8)
    are only needed for the prediction grid.
    """

    sources: list[str]
    age_true: np.ndarray
    age_pred: np.ndarray
    gender_true: np.ndarray
    prob_female: np.ndarray
    race: np.ndarray
    age_low: np.ndarray | None = None
    age_high: np.ndarray | None = None
    images: np.ndarray | None = None

    def __post_init__(self) -> None:
        """Coerce and check alignment up front, so a bad column fails before files are written."""
        count = len(self.sources)
        if (self.age_low is None) != (self.age_high is None):
            raise ValueError("age_low and age_high must be given together")
        for name in ("age_true", "age_pred", "gender_true", "prob_female", "race",
                     "age_low", "age_high"):
            if getattr(self, name) is None:
                continue
            values = np.asarray(getattr(self, name), dtype=float)
            if values.shape != (count,):
                raise ValueError(f"{name} has shape {values.shape}, expected ({count},)")
            setattr(self, name, values)
        if self.images is not None and (
            self.images.ndim != 4 or len(self.images) != count or self.images.dtype != np.uint8
        ):
            raise ValueError(f"images must be uint8 {count} x H x W x C, "
                             f"got {self.images.dtype} {self.images.shape}")

    @property
    def abs_error(self) -> np.ndarray:
        """Absolute age error per image, NaN where the age label is missing."""
        return np.abs(self.age_pred - self.age_true)


def write_report(
    predictions: EvalPredictions, report_dir: Path | str, grid_size: int = 25, seed: int = 0,
    explainer: Explainer | None = None,
) -> dict:
    """Write metrics.json, per-image and error-analysis CSVs and plots; return the metrics.

    Sections (and their plots) whose labels are all missing are left out, so a gender-only
    dataset yields a gender-only report. The grid shows a `seed`-reproducible random sample.
    With an `explainer`, worst_faces.png shows the largest age errors with their activation
    maps (without one, the faces alone).
    """
    out = Path(report_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = compute_report_metrics(predictions)
    write_json_atomic(out / "metrics.json", metrics)

    all_rows = np.arange(len(predictions.sources))
    _write_prediction_rows(out / "predictions.csv", predictions, all_rows)
    _write_prediction_rows(out / "worst_age_errors.csv", predictions, _worst_age_rows(predictions))
    _write_prediction_rows(out / "gender_errors.csv", predictions, _gender_error_rows(predictions))

    if "age" in metrics:
        plot_age_scatter(predictions.age_true, predictions.age_pred, out / "age_scatter.png")
        plot_error_histogram(predictions.age_true, predictions.age_pred,
                             out / "age_error_histogram.png")
    if "gender" in metrics:
        plot_confusion_matrix(metrics["gender"]["confusion"], out / "confusion_matrix.png")
    _plot_fairness(metrics, out)
    if predictions.images is not None and grid_size > 0 and len(predictions.sources):
        _plot_sample_grid(predictions, out / "prediction_grid.png", grid_size, seed)
    if predictions.images is not None and "age" in metrics:
        _draw_worst_faces(predictions, explainer, out / "worst_faces.png")
    return metrics


def _plot_fairness(metrics: dict, out: Path) -> None:
    """One figure per grouping, the gender reliability diagram and the interval coverage."""
    groups = metrics["fairness"]["groups"]
    for grouping, figures in groups.items():
        plot_groups(figures, GROUPING_TITLES[grouping], out / f"groups_{grouping}.png")
    if "gender" in metrics:
        plot_reliability(metrics["gender_reliability"], metrics["gender"]["ece"],
                         out / "gender_reliability.png")
    if "age_group" in groups and metrics.get("age", {}).get("interval_coverage") is not None:
        plot_interval_coverage(groups["age_group"], INTERVAL_TARGET,
                               out / "interval_coverage_by_age_group.png")


def _draw_worst_faces(predictions: EvalPredictions, explainer: Explainer | None,
                      out_png: Path) -> None:
    p = predictions
    rows = _worst_age_rows(p)[:WORST_FACES_SHOWN]
    if len(rows) == 0:
        return
    captions = [f"true {_cell(p.age_true[r])} {_gender_letter(p.gender_true[r])} / pred "
                f"{p.age_pred[r]:.0f} {_gender_letter(float(p.prob_female[r] >= 0.5))}"
                for r in rows]
    worst_faces_sheet(p.images[rows], captions, explainer).save(out_png, optimize=True)


def _gender_letter(code: float) -> str:
    return "?" if math.isnan(code) else "MF"[int(code)]


def compute_report_metrics(predictions: EvalPredictions) -> dict:
    """The metrics.json content: every section whose labels exist, plus the image count."""
    p = predictions
    has_age, has_gender = np.isfinite(p.age_true).any(), np.isfinite(p.gender_true).any()
    metrics: dict = {}
    if has_age:
        metrics["age"] = age_metrics(p.age_true, p.age_pred, age_low=p.age_low, age_high=p.age_high)
    if has_gender:
        metrics["gender"] = gender_metrics(p.gender_true, p.prob_female)
    arrays = {"age_true": p.age_true, "age_pred": p.age_pred,
              "gender_true": p.gender_true, "prob_female": p.prob_female}
    if np.isfinite(p.race).any():
        metrics["by_race"] = breakdown(p.race, RACE_NAMES, **arrays)
    if has_gender:
        metrics["by_gender"] = breakdown(p.gender_true, GENDER_NAMES, **arrays)
    if has_age:
        metrics["by_age_group"] = breakdown(age_group_ids(p.age_true), AGE_GROUP_LABELS,
                                            **arrays)
    metrics["fairness"] = fairness_by_group(p.age_true, p.age_pred, p.gender_true,
                                            p.prob_female, p.race, p.age_low, p.age_high)
    if has_gender:
        metrics["gender_reliability"] = reliability_bins(p.gender_true, p.prob_female)
    metrics["n_images"] = len(p.sources)
    return metrics


def _worst_age_rows(predictions: EvalPredictions) -> np.ndarray:
    abs_error = predictions.abs_error
    labelled = np.flatnonzero(np.isfinite(abs_error))
    return labelled[np.argsort(-abs_error[labelled], kind="stable")][:WORST_AGE_ERRORS]


def _gender_error_rows(predictions: EvalPredictions) -> np.ndarray:
    """Misclassified rows, most confident first: confident mistakes hint at label noise."""
    predicted_female = predictions.prob_female >= GENDER_THRESHOLD
    confidence = np.where(predicted_female, predictions.prob_female, 1.0 - predictions.prob_female)
    labelled = np.isfinite(predictions.gender_true)
    wrong = np.flatnonzero(labelled & (predicted_female != (predictions.gender_true == FEMALE)))
    return wrong[np.argsort(-confidence[wrong], kind="stable")]


def _plot_sample_grid(predictions: EvalPredictions, out_png: Path, grid_size: int,
                      seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(predictions.sources), size=min(grid_size, len(predictions.sources)),
                      replace=False)
    columns = math.ceil(math.sqrt(grid_size))
    plot_prediction_grid(
        predictions.images[rows], predictions.age_true[rows], predictions.age_pred[rows],
        predictions.gender_true[rows], predictions.prob_female[rows], out_png,
        columns=columns, rows=math.ceil(len(rows) / columns),
    )


def _write_prediction_rows(path: Path, predictions: EvalPredictions, rows: np.ndarray) -> None:
    """One CSV line per selected image; interval columns only when an interval was predicted."""
    p = predictions
    columns = {"age_true": p.age_true, "age_pred": p.age_pred, "gender_true": p.gender_true,
               "prob_female": p.prob_female, "race": p.race, "abs_error": p.abs_error}
    if p.age_low is not None:
        columns |= {"age_low": p.age_low, "age_high": p.age_high}
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["source", *columns])
        for row in rows:
            writer.writerow([p.sources[row], *(_cell(values[row]) for values in columns.values())])


def _cell(value: float) -> str:
    """Empty for a missing value, else compact (labels as "1", ages as "34.5")."""
    return "" if math.isnan(value) else f"{value:.6g}"
