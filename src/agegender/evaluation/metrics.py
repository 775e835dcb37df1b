"""Age and gender metrics in plain numpy, returned as JSON-ready Python values.

Missing labels are NaN and are left out of the metric that needs them. Figures that are
undefined on the data at hand (an empty set, a class that never occurs) are `None`, so the
result always serialises as strict JSON.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from agegender.data.records import FEMALE, GENDER_NAMES, GENDER_THRESHOLD, MALE

AGE_GROUPS: tuple[tuple[int, int], ...] = (
    (0, 2), (3, 9), (10, 19), (20, 29), (30, 39), (40, 49), (50, 59), (60, 69), (70, 200),
)
"""Inclusive ranges of whole years; a fractional age belongs to the range holding its whole year."""

AGE_GROUP_LABELS: tuple[str, ...] = (
    *(f"{low}-{high}" for low, high in AGE_GROUPS[:-1]),
    f"{AGE_GROUPS[-1][0]}+",
)

def age_group_ids(age: ArrayLike) -> np.ndarray:
    """Index into `AGE_GROUPS` of each age (its whole year), NaN where the age is unknown."""
    age = np.asarray(age, dtype=float)
    ids = np.full(age.shape, np.nan)
    for index, (low, high) in enumerate(AGE_GROUPS):
        ids[(age >= low) & (age < high + 1)] = index
    return ids


CS_TOLERANCE_YEARS = 5.0
"""Cumulative score tolerance: the share of predictions within this many years counts as `cs5`."""

"""`gender_prob_female` at or above this predicts female."""

CALIBRATION_BINS = 10


def age_metrics(
    age_true: ArrayLike,
    age_pred: ArrayLike,
    *,
    age_low: ArrayLike | None = None,
    age_high: ArrayLike | None = None,
) -> dict:
    """MAE, RMSE, CS5 and MAE per age group over the rows that have an age label.

    With `age_low`/`age_high` (a prediction interval) it also reports how often the interval
    holds the true age and how wide it is, which is what makes an interval worth trusting.
    """
    if (age_low is None) != (age_high is None):
        raise ValueError("age_low and age_high must be given together")
    true, pred = _float_arrays(age_true=age_true, age_pred=age_pred)
    labelled = np.isfinite(true)
    _require_predictions(labelled, age_pred=pred)
    true, abs_error = true[labelled], np.abs(pred[labelled] - true[labelled])
    result = {
        "n": int(true.size),
        "mae": _mean_or_none(abs_error),
        "rmse": None if true.size == 0 else float(np.sqrt(np.mean(abs_error**2))),
        "cs5": _mean_or_none(abs_error <= CS_TOLERANCE_YEARS),
        "mae_by_group": _mae_by_age_group(true, abs_error),
    }
    if age_low is not None:
        _, low, high = _float_arrays(age_true=age_true, age_low=age_low, age_high=age_high)
        _require_predictions(labelled, age_low=low, age_high=high)
        low, high = low[labelled], high[labelled]
        result["interval_coverage"] = _mean_or_none((low <= true) & (true <= high))
        result["interval_width"] = _mean_or_none(high - low)
    return result


def gender_metrics(
    gender_true: ArrayLike, prob_female: ArrayLike, threshold: float = GENDER_THRESHOLD
) -> dict:
    """Accuracy, per-class precision/recall/F1, ROC AUC, ECE and the confusion matrix.

    AUC and ECE judge the probability itself, not just the thresholded decision: a model can
    be accurate yet badly calibrated, and AUC does not depend on the chosen threshold.
    """
    true, prob = _float_arrays(gender_true=gender_true, prob_female=prob_female)
    labelled = np.isfinite(true)
    _require_predictions(labelled, prob_female=prob)
    true, prob = true[labelled], prob[labelled]
    if not np.isin(true, (MALE, FEMALE)).all():
        raise ValueError(f"gender_true must be {MALE} (male), {FEMALE} (female) or NaN")
    true = true.astype(int)
    predicted = (prob >= threshold).astype(int)
    confusion = np.zeros((len(GENDER_NAMES), len(GENDER_NAMES)), dtype=int)
    np.add.at(confusion, (true, predicted), 1)
    per_class = {name: _class_scores(confusion, index) for index, name in enumerate(GENDER_NAMES)}
    f1_scores = [scores["f1"] for scores in per_class.values()]
    confidence = np.where(predicted == FEMALE, prob, 1.0 - prob)
    return {
        "n": int(true.size),
        "accuracy": _mean_or_none(predicted == true),
        "per_class": per_class,
        "macro_f1": None if None in f1_scores else float(np.mean(f1_scores)),
        "roc_auc": _roc_auc(true == FEMALE, prob),
        "ece": _expected_calibration_error(predicted == true, confidence),
        "confusion": {"labels": list(GENDER_NAMES), "matrix": confusion.tolist()},
    }


def breakdown(
    group_ids: ArrayLike,
    group_names: Sequence[str],
    *,
    age_true: ArrayLike,
    age_pred: ArrayLike,
    gender_true: ArrayLike,
    prob_female: ArrayLike,
    threshold: float = GENDER_THRESHOLD,
) -> dict[str, dict]:
    """Age MAE and gender accuracy per group (race, gender, ...), to show who the model fails.

    `group_ids` are codes indexing `group_names` (e.g. `RACE_NAMES`), NaN where unknown; such
    rows are left out. Groups without rows are omitted.
    """
    ids, age_true, age_pred, gender_true, prob_female = _float_arrays(
        group_ids=group_ids, age_true=age_true, age_pred=age_pred,
        gender_true=gender_true, prob_female=prob_female,
    )
    known_ids = ids[np.isfinite(ids)]
    if not np.isin(known_ids, np.arange(len(group_names))).all():
        raise ValueError(f"group_ids must be codes 0..{len(group_names) - 1} or NaN")
    result = {}
    for code, name in enumerate(group_names):
        member = ids == code
        if not member.any():
            continue
        age = age_metrics(age_true[member], age_pred[member])
        gender = gender_metrics(gender_true[member], prob_female[member], threshold)
        result[name] = {
            "n": int(member.sum()),
            "age_mae": age["mae"],
            "age_n": age["n"],
            "gender_accuracy": gender["accuracy"],
            "gender_n": gender["n"],
        }
    return result


def _float_arrays(**named: ArrayLike) -> list[np.ndarray]:
    """Coerce to 1-D float arrays of one length: misaligned columns fail instead of broadcasting."""
    arrays = [np.asarray(values, dtype=float) for values in named.values()]
    shapes = {name: array.shape for name, array in zip(named, arrays, strict=True)}
    if any(array.ndim != 1 for array in arrays) or len(set(shapes.values())) > 1:
        raise ValueError(f"expected 1-D arrays of equal length, got shapes {shapes}")
    return arrays


def _require_predictions(labelled: np.ndarray, **predictions: np.ndarray) -> None:
    """A missing prediction on a labelled row is an upstream bug, not a missing label: raise."""
    for name, values in predictions.items():
        if not np.isfinite(values[labelled]).all():
            raise ValueError(f"{name} is NaN or infinite on labelled rows")


def _mean_or_none(values: np.ndarray) -> float | None:
    return float(np.mean(values)) if values.size else None


def _mae_by_age_group(age_true: np.ndarray, abs_error: np.ndarray) -> dict[str, dict]:
    by_group = {}
    for (low, high), label in zip(AGE_GROUPS, AGE_GROUP_LABELS, strict=True):
        in_group = (age_true >= low) & (age_true < high + 1)
        if in_group.any():
            by_group[label] = {"mae": float(abs_error[in_group].mean()), "n": int(in_group.sum())}
    return by_group


def _class_scores(confusion: np.ndarray, index: int) -> dict:
    """Precision, recall and F1 of one class; `None` where a denominator is zero."""
    hits = confusion[index, index]
    predicted, actual = confusion[:, index].sum(), confusion[index, :].sum()
    precision = float(hits / predicted) if predicted else None
    recall = float(hits / actual) if actual else None
    if precision is None or recall is None:
        f1 = None
    elif precision + recall == 0:
        f1 = 0.0
    else:
        f1 = 2 * precision * recall / (precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "support": int(actual)}


def _roc_auc(is_positive: np.ndarray, scores: np.ndarray) -> float | None:
    """Mann-Whitney AUC: P(positive scores above negative), ties counting half via average ranks."""
    positives = int(is_positive.sum())
    negatives = is_positive.size - positives
    if positives == 0 or negatives == 0:
        return None
    order = np.argsort(scores, kind="stable")
    _, first_index, tie_counts = np.unique(scores[order], return_index=True, return_counts=True)
    ranks = np.empty(scores.size)
    ranks[order] = np.repeat(first_index + (tie_counts + 1) / 2, tie_counts)
    rank_sum = ranks[is_positive].sum()
    return float((rank_sum - positives * (positives + 1) / 2) / (positives * negatives))


def _expected_calibration_error(correct: np.ndarray, confidence: np.ndarray) -> float | None:
    """Sample-weighted gap between accuracy and confidence over equal-width confidence bins."""
    if confidence.size == 0:
        return None
    bins = np.minimum((confidence * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
    correct_per_bin = np.bincount(bins, weights=correct, minlength=CALIBRATION_BINS)
    confidence_per_bin = np.bincount(bins, weights=confidence, minlength=CALIBRATION_BINS)
    return float(np.abs(correct_per_bin - confidence_per_bin).sum() / confidence.size)
