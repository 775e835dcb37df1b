"""Hand-checked examples for the evaluation metrics."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from agegender.data.records import GENDER_NAMES, RACE_NAMES
from agegender.evaluation.metrics import (
    AGE_GROUP_LABELS,
    age_group_ids,
    age_metrics,
    breakdown,
    gender_metrics,
)

NAN = math.nan


def test_age_group_labels() -> None:
    assert AGE_GROUP_LABELS == (
        "0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+",
    )


def test_age_metrics_hand_checked() -> None:
    # errors: +2, -4, +6, 0 -> |e| = 2, 4, 6, 0
    result = age_metrics([1, 25, 34, 80], [3, 21, 40, 80])
    assert result["n"] == 4
    assert result["mae"] == pytest.approx(3.0)
    assert result["rmse"] == pytest.approx(math.sqrt((4 + 16 + 36 + 0) / 4))
    assert result["cs5"] == pytest.approx(0.75)
    assert result["mae_by_group"] == {
        "0-2": {"mae": 2.0, "n": 1},
        "20-29": {"mae": 4.0, "n": 1},
        "30-39": {"mae": 6.0, "n": 1},
        "70+": {"mae": 0.0, "n": 1},
    }


def test_age_groups_use_whole_years_and_pool_errors() -> None:
    result = age_metrics([2.5, 3.0, 9.9, 29.0, 20.0], [2.5, 5.0, 13.9, 30.0, 23.0])
    groups = result["mae_by_group"]
    assert groups["0-2"] == {"mae": 0.0, "n": 1}
    assert groups["3-9"]["n"] == 2
    assert groups["3-9"]["mae"] == pytest.approx(3.0)
    assert groups["20-29"] == {"mae": 2.0, "n": 2}


def test_cs5_counts_exactly_five_years_as_within() -> None:
    assert age_metrics([30, 30], [35, 24])["cs5"] == pytest.approx(0.5)


def test_age_metrics_excludes_missing_labels() -> None:
    result = age_metrics([20, NAN, 40], [22, 99, 40])
    assert result["n"] == 2
    assert result["mae"] == pytest.approx(1.0)


def test_age_metrics_interval_coverage_and_width() -> None:
    result = age_metrics(
        [20, 30, 40, 50, NAN],
        [21, 30, 45, 50, 10],
        age_low=[15, 31, 40, 45, 0],
        age_high=[25, 35, 50, 50, 99],
    )
    # covered: 20 in [15,25], 30 not in [31,35], 40 in [40,50], 50 in [45,50] (bounds inclusive)
    assert result["interval_coverage"] == pytest.approx(0.75)
    assert result["interval_width"] == pytest.approx((10 + 4 + 10 + 5) / 4)


def test_age_metrics_empty_and_all_missing_are_none_not_nan() -> None:
    for result in (age_metrics([], []), age_metrics([NAN, NAN], [1, 2], age_low=[0, 0],
                                                     age_high=[3, 3])):
        assert result["n"] == 0
        assert result["mae"] is result["rmse"] is result["cs5"] is None
        assert result["mae_by_group"] == {}
        json.dumps(result, allow_nan=False)


def test_age_metrics_rejects_missing_prediction_and_misaligned_input() -> None:
    with pytest.raises(ValueError, match="age_pred"):
        age_metrics([20, 30], [21, NAN])
    with pytest.raises(ValueError, match="equal length"):
        age_metrics([20, 30], [21])
    with pytest.raises(ValueError, match="together"):
        age_metrics([20], [21], age_low=[19])


def test_gender_metrics_per_class_hand_checked() -> None:
    # true:      M    M    M    F    F    F    F
    # predicted: M    M    F    F    F    F    M
    truth = [0, 0, 0, 1, 1, 1, 1]
    prob = [0.1, 0.2, 0.7, 0.8, 0.9, 0.6, 0.4]
    result = gender_metrics(truth, prob)
    assert result["n"] == 7
    assert result["accuracy"] == pytest.approx(5 / 7)
    assert result["confusion"] == {"labels": ["male", "female"], "matrix": [[2, 1], [1, 3]]}
    male, female = result["per_class"]["male"], result["per_class"]["female"]
    assert male["precision"] == pytest.approx(2 / 3)
    assert male["recall"] == pytest.approx(2 / 3)
    assert male["f1"] == pytest.approx(2 / 3)
    assert female["precision"] == pytest.approx(3 / 4)
    assert female["recall"] == pytest.approx(3 / 4)
    assert female["f1"] == pytest.approx(3 / 4)
    assert (male["support"], female["support"]) == (3, 4)
    assert result["macro_f1"] == pytest.approx((2 / 3 + 3 / 4) / 2)


def test_gender_threshold_moves_the_decision() -> None:
    assert gender_metrics([0, 1], [0.3, 0.6], threshold=0.5)["accuracy"] == 1.0
    assert gender_metrics([0, 1], [0.3, 0.6], threshold=0.7)["accuracy"] == 0.5


def test_roc_auc_perfect_ranking_is_one() -> None:
    assert gender_metrics([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4])["roc_auc"] == pytest.approx(1.0)


def test_roc_auc_all_ties_is_one_half() -> None:
    assert gender_metrics([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5])["roc_auc"] == pytest.approx(0.5)


def test_roc_auc_hand_computed_with_a_tie() -> None:
    # positive 0.5 beats 0.2 and ties 0.5 (half); positive 0.9 beats both: (1.5 + 2) / 4
    result = gender_metrics([0, 1, 0, 1], [0.2, 0.5, 0.5, 0.9])
    assert result["roc_auc"] == pytest.approx(0.875)
    # without ties: 0.35 beats 0.1 but not 0.4, 0.8 beats both: 3 / 4
    result = gender_metrics([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert result["roc_auc"] == pytest.approx(0.75)


def test_roc_auc_undefined_with_one_class() -> None:
    result = gender_metrics([1, 1, 1], [0.2, 0.6, 0.9])
    assert result["roc_auc"] is None
    assert result["per_class"]["male"]["recall"] is None
    assert result["per_class"]["male"]["f1"] is None
    assert result["macro_f1"] is None
    json.dumps(result, allow_nan=False)


def test_ece_of_calibrated_toy_set_is_zero() -> None:
    # 10 faces at P(female)=0.8, 8 of them female; 10 at 0.3 (confidence 0.7 male), 7 male
    truth = [1] * 8 + [0] * 2 + [0] * 7 + [1] * 3
    prob = [0.8] * 10 + [0.3] * 10
    assert gender_metrics(truth, prob)["ece"] == pytest.approx(0.0, abs=1e-12)


def test_ece_of_overconfident_set_is_the_gap() -> None:
    # always 99% sure "female", right half the time
    result = gender_metrics([0, 1] * 5, [0.99] * 10)
    assert result["ece"] == pytest.approx(0.49)


def test_gender_metrics_excludes_missing_labels() -> None:
    result = gender_metrics([0, NAN, 1], [0.1, 0.9, 0.9])
    assert result["n"] == 2
    assert result["accuracy"] == 1.0
    assert result["confusion"]["matrix"] == [[1, 0], [0, 1]]


def test_gender_metrics_empty_is_none_not_nan() -> None:
    result = gender_metrics([], [])
    assert result["n"] == 0
    assert result["accuracy"] is result["roc_auc"] is result["ece"] is None
    assert result["confusion"]["matrix"] == [[0, 0], [0, 0]]
    json.dumps(result, allow_nan=False)


def test_gender_metrics_rejects_bad_labels() -> None:
    with pytest.raises(ValueError, match="gender_true"):
        gender_metrics([0, 2], [0.1, 0.9])


def test_breakdown_by_race_skips_unknown_and_empty_groups() -> None:
    result = breakdown(
        [0, 0, 2, NAN],
        RACE_NAMES,
        age_true=[20, 30, NAN, 50],
        age_pred=[22, 30, 40, 10],
        gender_true=[0, 1, 1, 0],
        prob_female=[0.1, 0.2, 0.9, 0.9],
    )
    assert result == {
        "White": {"n": 2, "age_mae": 1.0, "age_n": 2, "gender_accuracy": 0.5, "gender_n": 2},
        "Asian": {"n": 1, "age_mae": None, "age_n": 0, "gender_accuracy": 1.0, "gender_n": 1},
    }


def test_breakdown_by_gender_gives_per_class_recall() -> None:
    gender = [0, 0, 1, 1]
    result = breakdown(gender, GENDER_NAMES, age_true=[10, 20, 30, 40], age_pred=[10, 24, 30, 40],
                       gender_true=gender, prob_female=[0.1, 0.6, 0.7, 0.8])
    assert result["male"]["gender_accuracy"] == 0.5
    assert result["male"]["age_mae"] == 2.0
    assert result["female"]["gender_accuracy"] == 1.0


def test_breakdown_rejects_unknown_codes() -> None:
    with pytest.raises(ValueError, match="group_ids"):
        breakdown([7], RACE_NAMES, age_true=[1], age_pred=[1], gender_true=[0],
                  prob_female=[0.1])


def test_results_are_plain_python_types() -> None:
    result = {"age": age_metrics(np.array([20.0]), np.array([21.0])),
              "gender": gender_metrics(np.array([1.0]), np.array([0.7]))}
    assert type(result["age"]["mae"]) is float
    assert type(result["age"]["n"]) is int
    assert type(result["gender"]["confusion"]["matrix"][1][1]) is int
    json.dumps(result, allow_nan=False)


def test_age_group_ids_follow_the_inclusive_whole_year_ranges() -> None:
    ids = age_group_ids([0, 2.9, 3, 19.5, 20, 69.9, 70, 116, NAN])
    np.testing.assert_array_equal(ids[:-1], [0, 0, 1, 2, 3, 7, 8, 8])
    assert np.isnan(ids[-1])
