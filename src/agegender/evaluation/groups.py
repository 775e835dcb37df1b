"""Fairness by group and calibration: who the model serves worse, and whether it knows it.

Per group (age group, gender, race): count, age MAE and bias (mean signed error: + reads
people older than they are), gender accuracy and the recall of women and of men, and the
age interval's coverage. Per figure, the best and worst group and the gap between them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from agegender.data.records import FEMALE, GENDER_NAMES, MALE, RACE_NAMES
from agegender.evaluation.metrics import (
    AGE_GROUP_LABELS,
    CALIBRATION_BINS,
    GENDER_THRESHOLD,
    age_group_ids,
)

GROUP_FIGURES = {"age_mae": "lower", "age_bias": "zero", "gender_accuracy": "higher",
                 "female_recall": "higher", "male_recall": "higher",
                 "interval_coverage": "target"}
"""Each group figure and which value is better: lower, higher, nearer zero, or nearer the
interval's nominal coverage (`INTERVAL_TARGET`)."""

INTERVAL_TARGET = 0.8
MIN_GROUP_SIZE_FOR_GAPS = 10
"""Groups smaller than this are listed but not named best or worst: too few to rank."""


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def group_figures(member: np.ndarray, age_true: np.ndarray, age_pred: np.ndarray,
                  gender_true: np.ndarray, prob_female: np.ndarray,
                  age_low: np.ndarray | None, age_high: np.ndarray | None) -> dict:
    """The figures of the rows in `member` (a boolean mask); None where no row has the label."""
    aged = member & np.isfinite(age_true)
    error = age_pred[aged] - age_true[aged]
    gendered = member & np.isfinite(gender_true)
    predicted_female = prob_female >= GENDER_THRESHOLD
    correct = predicted_female[gendered] == (gender_true[gendered] == FEMALE)
    women, men = gendered & (gender_true == FEMALE), gendered & (gender_true == MALE)
    figures = {
        "n": int(member.sum()), "age_n": int(aged.sum()), "gender_n": int(gendered.sum()),
        "age_mae": _mean(np.abs(error)), "age_bias": _mean(error),
        "gender_accuracy": _mean(correct),
        "female_recall": _mean(predicted_female[women]),
        "male_recall": _mean(~predicted_female[men]),
        "interval_coverage": None,
    }
    if age_low is not None and age_high is not None:
        inside = (age_low[aged] <= age_true[aged]) & (age_true[aged] <= age_high[aged])
        figures["interval_coverage"] = _mean(inside)
    return figures


def _groupings(age_true: np.ndarray, gender_true: np.ndarray, race: np.ndarray
               ) -> dict[str, tuple[np.ndarray, Sequence[str]]]:
    """Group codes (NaN: unknown) and names of each grouping the data has labels for."""
    groupings = {}
    if np.isfinite(age_true).any():
        groupings["age_group"] = (age_group_ids(age_true), AGE_GROUP_LABELS)
    if np.isfinite(gender_true).any():
        groupings["gender"] = (gender_true, GENDER_NAMES)
    if np.isfinite(race).any():
        groupings["race"] = (race, RACE_NAMES)
    return groupings


def fairness_by_group(age_true: ArrayLike, age_pred: ArrayLike, gender_true: ArrayLike,
                      prob_female: ArrayLike, race: ArrayLike,
                      age_low: ArrayLike | None = None, age_high: ArrayLike | None = None
                      ) -> dict:
    """{"groups": grouping → group → figures, "gaps": grouping → figure → best/worst/gap}."""
    true, pred, gender, prob, races = (np.asarray(values, dtype=float) for values in
                                       (age_true, age_pred, gender_true, prob_female, race))
    low = None if age_low is None else np.asarray(age_low, dtype=float)
    high = None if age_high is None else np.asarray(age_high, dtype=float)
    groups: dict[str, dict] = {}
    for grouping, (codes, names) in _groupings(true, gender, races).items():
        groups[grouping] = {name: group_figures(codes == code, true, pred, gender, prob, low,
                                                high)
                            for code, name in enumerate(names) if (codes == code).any()}
    return {"groups": groups, "gaps": {grouping: group_gaps(figures)
                                       for grouping, figures in groups.items()}}


def goodness(direction: str, value: float) -> float:
    """Larger is better, whatever the figure: `direction` is one of `GROUP_FIGURES`' values."""
    if direction == "lower":
        return -value
    if direction == "zero":
        return -abs(value)
    if direction == "target":
        return -abs(value - INTERVAL_TARGET)
    return value


def group_gaps(groups: dict[str, dict]) -> dict[str, dict]:
    """Per figure: the best and worst group (of at least `MIN_GROUP_SIZE_FOR_GAPS` labelled
    rows) and the gap between their values."""
    gaps = {}
    for figure in GROUP_FIGURES:
        count = "gender_n" if figure.endswith(("accuracy", "recall")) else "age_n"
        ranked = sorted(((goodness(GROUP_FIGURES[figure], values[figure]), name, values[figure])
                         for name, values in groups.items()
                         if values[figure] is not None
                         and values[count] >= MIN_GROUP_SIZE_FOR_GAPS), reverse=True)
        if len(ranked) >= 2:
            (_, best, best_value), (_, worst, worst_value) = ranked[0], ranked[-1]
            gaps[figure] = {"best": best, "best_value": best_value, "worst": worst,
                            "worst_value": worst_value, "gap": abs(best_value - worst_value)}
    return gaps


def reliability_bins(gender_true: ArrayLike, prob_female: ArrayLike) -> list[dict]:
    """The reliability diagram of the gender decision: per equal-width confidence bin (as in
    the ECE), its range, count, mean confidence and accuracy."""
    true, prob = np.asarray(gender_true, dtype=float), np.asarray(prob_female, dtype=float)
    labelled = np.isfinite(true)
    true, prob = true[labelled], prob[labelled]
    predicted_female = prob >= GENDER_THRESHOLD
    confidence = np.where(predicted_female, prob, 1 - prob)
    correct = predicted_female == (true == FEMALE)
    bins = np.minimum((confidence * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
    return [{"low": index / CALIBRATION_BINS, "high": (index + 1) / CALIBRATION_BINS,
             "n": int((bins == index).sum()),
             "confidence": _mean(confidence[bins == index]),
             "accuracy": _mean(correct[bins == index])}
            for index in range(CALIBRATION_BINS) if (bins == index).any()]
