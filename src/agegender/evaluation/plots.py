"""Evaluation and training plots written straight to PNG.

Figures are built with `matplotlib.figure.Figure` on an Agg canvas rather than through
pyplot: nothing is registered in pyplot's global figure list (so nothing can be left open
and leak over a long run), and the caller's backend is never switched.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from numpy.typing import ArrayLike

from agegender.data.records import FEMALE, MALE
from agegender.evaluation.metrics import CS_TOLERANCE_YEARS, GENDER_THRESHOLD

TRAINING_PANELS = (("loss", "Loss"), ("mae", "Age MAE (years)"), ("gender_acc", "Gender accuracy"))
"""Metric suffixes of the training log's `train_*`/`val_*` columns, with their panel titles."""

GENDER_LETTERS = ("M", "F")
DPI = 100


def plot_training_curves(log_csv: Path | str, out_png: Path | str) -> None:
    """Loss, age MAE and gender accuracy per epoch, train vs val, to spot over/under-fitting.

    Empty cells (a head without labels in the data) are skipped; a panel without any
    values says so instead of drawing empty axes.
    """
    with open(log_csv, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    epochs = np.array([_float_or_nan(row.get("epoch")) for row in rows])
    figure = _new_figure(13, 3.8)
    for axes, (metric, title) in zip(figure.subplots(1, 3), TRAINING_PANELS, strict=True):
        for split in ("train", "val"):
            values = np.array([_float_or_nan(row.get(f"{split}_{metric}")) for row in rows])
            present = np.isfinite(values) & np.isfinite(epochs)
            if present.any():
                axes.plot(epochs[present], values[present], marker="o", markersize=3, label=split)
        axes.set_title(title)
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        if axes.lines:
            axes.legend()
            axes.grid(alpha=0.3)
        else:
            _mark_no_data(axes)
    _save(figure, out_png)


def plot_confusion_matrix(confusion: dict, out_png: Path | str) -> None:
    """Counts with row-normalised shares: a per-class recall view that survives class imbalance.

    `confusion` is the `gender_metrics` entry: {"labels": [...], "matrix": rows = true}.
    """
    labels = confusion["labels"]
    counts = np.asarray(confusion["matrix"], dtype=float)
    row_totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, row_totals, out=np.zeros_like(counts), where=row_totals > 0)
    figure = _new_figure(4.8, 4)
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (row, column), count in np.ndenumerate(counts):
        share = shares[row, column]
        axes.text(column, row, f"{int(count)}\n{share:.1%}", ha="center", va="center",
                  color="white" if share > 0.5 else "black")
    axes.set_xticks(range(len(labels)), labels)
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    figure.colorbar(image, ax=axes, label="share of true class")
    _save(figure, out_png)


def plot_age_scatter(age_true: ArrayLike, age_pred: ArrayLike, out_png: Path | str) -> None:
    """Predicted vs true age with the ideal diagonal, to show bias and regression to the mean."""
    true, pred = _labelled_ages(age_true, age_pred)
    figure = _new_figure(5, 5)
    axes = figure.add_subplot()
    if true.size:
        low = min(0.0, float(pred.min()))
        high = float(max(true.max(), pred.max(), 1.0)) * 1.05
        axes.scatter(true, pred, s=8, alpha=0.4, edgecolors="none")
        axes.plot([low, high], [low, high], "k--", linewidth=1, label="perfect")
        axes.set_xlim(low, high)
        axes.set_ylim(low, high)
        axes.set_aspect("equal")
        axes.legend(loc="upper left")
        axes.grid(alpha=0.3)
    else:
        _mark_no_data(axes)
    axes.set_title(f"Predicted vs true age (n={true.size})")
    axes.set_xlabel("true age")
    axes.set_ylabel("predicted age")
    _save(figure, out_png)


def plot_error_histogram(age_true: ArrayLike, age_pred: ArrayLike, out_png: Path | str) -> None:
    """Histogram of signed errors (predicted - true): skew shows systematic over/under-estimates."""
    true, pred = _labelled_ages(age_true, age_pred)
    errors = pred - true
    figure = _new_figure(6, 4)
    axes = figure.add_subplot()
    if errors.size:
        low, high = math.floor(errors.min()), math.ceil(errors.max())
        axes.hist(errors, bins=np.arange(low, high + 2) - 0.5, color="tab:blue")
        axes.axvline(0, color="k", linewidth=1)
        axes.set_title(f"Signed age error: mean {errors.mean():+.2f} years (n={errors.size})")
    else:
        _mark_no_data(axes)
        axes.set_title("Signed age error")
    axes.set_xlabel("predicted - true (years)")
    axes.set_ylabel("images")
    _save(figure, out_png)


def plot_prediction_grid(
    images: np.ndarray,
    age_true: ArrayLike,
    age_pred: ArrayLike,
    gender_true: ArrayLike,
    prob_female: ArrayLike,
    out_png: Path | str,
    columns: int = 5,
    rows: int = 5,
) -> None:
    """The first `columns * rows` faces titled with truth vs prediction, for eyeballing failures.

    Titles are green when the gender is right and the age within 5 years, red otherwise,
    judged on whichever labels exist; black when the face has no label at all. Missing
    labels show as "?". The number in brackets is the confidence in the predicted gender.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 N x H x W x C with C in (1, 3), "
                         f"got {images.dtype} {images.shape}")
    shown = min(len(images), columns * rows)
    used_rows = max(1, math.ceil(shown / columns))
    figure = _new_figure(columns * 2.3, used_rows * 2.5)
    for index, axes in enumerate(figure.subplots(used_rows, columns, squeeze=False).flat):
        axes.axis("off")
        if index >= shown:
            continue
        if images.shape[-1] == 1:
            axes.imshow(images[index, ..., 0], cmap="gray", vmin=0, vmax=255)
        else:
            axes.imshow(images[index])
        title, color = _describe_prediction(
            float(age_true[index]), float(age_pred[index]),
            float(gender_true[index]), float(prob_female[index]),
        )
        axes.set_title(title, fontsize=8, color=color)
    _save(figure, out_png)


def plot_groups(groups: dict[str, dict], title: str, out_png: Path | str) -> None:
    """Per group (from `groups.fairness_by_group`): age MAE and bias, and gender accuracy with
    the recall of women and of men, side by side, so the worst-served group stands out."""
    names = list(groups)
    positions = np.arange(len(names))
    figure = _new_figure(max(7.0, 1.1 * len(names) + 3), 3.8)
    age_axes, gender_axes = figure.subplots(1, 2)
    for offset, (key, label) in zip((-0.2, 0.2), (("age_mae", "MAE"), ("age_bias", "bias")),
                                    strict=True):
        age_axes.bar(positions + offset, [_or_nan(groups[n][key]) for n in names], 0.4,
                     label=label)
    age_axes.axhline(0, color="k", linewidth=0.8)
    age_axes.set_title(f"Age by {title}: MAE and bias (years)")
    for offset, (key, label) in zip((-0.27, 0, 0.27), (("gender_accuracy", "accuracy"),
                                                      ("female_recall", "recall (women)"),
                                                      ("male_recall", "recall (men)")),
                                    strict=True):
        gender_axes.bar(positions + offset, [_or_nan(groups[n][key]) for n in names], 0.27,
                        label=label)
    gender_axes.set_ylim(0, 1.05)
    gender_axes.set_title(f"Gender by {title}")
    for axes in (age_axes, gender_axes):
        axes.set_xticks(positions, [f"{n}\nn={groups[n]['n']}" for n in names], fontsize=7)
        axes.legend(fontsize=7)
        axes.grid(axis="y", alpha=0.3)
    _save(figure, out_png)


def plot_reliability(bins: list[dict], ece: float | None, out_png: Path | str) -> None:
    """Reliability diagram of the gender decision: accuracy against confidence per bin."""
    figure = _new_figure(4.5, 4.2)
    axes = figure.add_subplot()
    axes.plot([0.5, 1], [0.5, 1], color="gray", linestyle="--", linewidth=1, label="calibrated")
    if bins:
        axes.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o",
                  label="model")
        for b in bins:
            axes.annotate(f"{b['n']}", (b["confidence"], b["accuracy"]), fontsize=6,
                          textcoords="offset points", xytext=(3, -9))
    axes.set_xlabel("confidence of the predicted gender")
    axes.set_ylabel("accuracy")
    axes.set_title("Gender reliability" + ("" if ece is None else f" (ECE {ece:.3f})"))
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    _save(figure, out_png)


def plot_interval_coverage(groups: dict[str, dict], target: float, out_png: Path | str) -> None:
    """Share of true ages inside the predicted interval, per age group, against its target."""
    names = [n for n in groups if groups[n]["interval_coverage"] is not None]
    figure = _new_figure(7, 3.6)
    axes = figure.add_subplot()
    if names:
        axes.bar(names, [groups[n]["interval_coverage"] for n in names], color="tab:green")
        axes.axhline(target, color="k", linestyle="--", linewidth=1, label=f"target {target:.0%}")
        axes.legend()
    else:
        _mark_no_data(axes)
    axes.set_ylim(0, 1.05)
    axes.set_title("Age interval coverage by true age group")
    _save(figure, out_png)


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value


def _new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, out_png: Path | str) -> None:
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=DPI)


def _mark_no_data(axes: Axes) -> None:
    axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes,
              color="gray")


def _float_or_nan(cell: str | None) -> float:
    return float(cell) if cell not in (None, "") else math.nan


def _labelled_ages(age_true: ArrayLike, age_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    true, pred = np.asarray(age_true, dtype=float), np.asarray(age_pred, dtype=float)
    present = np.isfinite(true) & np.isfinite(pred)
    return true[present], pred[present]


def _describe_prediction(
    age_true: float, age_pred: float, gender_true: float, prob_female: float
) -> tuple[str, str]:
    """Title "true: 34 F / pred: 31 F (0.93)" and its colour for one grid cell."""
    predicted_gender = FEMALE if prob_female >= GENDER_THRESHOLD else MALE
    confidence = prob_female if predicted_gender == FEMALE else 1.0 - prob_female
    true_gender = "?" if math.isnan(gender_true) else GENDER_LETTERS[int(gender_true)]
    title = (f"true: {_age_text(age_true)} {true_gender} / "
             f"pred: {_age_text(age_pred)} {GENDER_LETTERS[predicted_gender]} ({confidence:.2f})")
    checks = []
    if not math.isnan(age_true):
        checks.append(abs(age_pred - age_true) <= CS_TOLERANCE_YEARS)
    if not math.isnan(gender_true):
        checks.append(int(gender_true) == predicted_gender)
    if not checks:
        return title, "black"
    return title, "green" if all(checks) else "red"


def _age_text(age: float) -> str:
    return "?" if math.isnan(age) else f"{age:.0f}"
