"""Evaluation: metrics (numpy only), plots and report folders (matplotlib, the `train` extra).

Import plots and reports from their modules, `agegender.evaluation.plots` and
`agegender.evaluation.report`, so that the metrics work on a base install.
"""

from agegender.evaluation.metrics import (
    AGE_GROUP_LABELS,
    AGE_GROUPS,
    GENDER_THRESHOLD,
    age_metrics,
    breakdown,
    gender_metrics,
)

__all__ = ["AGE_GROUPS", "AGE_GROUP_LABELS", "GENDER_THRESHOLD", "age_metrics", "breakdown",
           "gender_metrics"]
