"""Evaluation: metrics, plots and report folders for age/gender predictions.

Metrics need only numpy. Plots and reports need matplotlib (the `train` extra), so they
are imported on first use: importing this package, or `agegender.evaluation.metrics`,
works on a base install.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from agegender.evaluation.metrics import (
    AGE_GROUP_LABELS,
    AGE_GROUPS,
    GENDER_THRESHOLD,
    age_metrics,
    breakdown,
    gender_metrics,
)

if TYPE_CHECKING:
    from agegender.evaluation.plots import (
        plot_age_scatter,
        plot_confusion_matrix,
        plot_error_histogram,
        plot_mae_by_group,
        plot_prediction_grid,
        plot_training_curves,
    )
    from agegender.evaluation.report import (
        EvalPredictions,
        compute_report_metrics,
        write_report,
    )

_NEEDS_MATPLOTLIB = {
    "agegender.evaluation.plots": (
        "plot_age_scatter",
        "plot_confusion_matrix",
        "plot_error_histogram",
        "plot_mae_by_group",
        "plot_prediction_grid",
        "plot_training_curves",
    ),
    "agegender.evaluation.report": ("EvalPredictions", "compute_report_metrics", "write_report"),
}

__all__ = [
    "AGE_GROUPS",
    "AGE_GROUP_LABELS",
    "GENDER_THRESHOLD",
    "EvalPredictions",
    "age_metrics",
    "breakdown",
    "compute_report_metrics",
    "gender_metrics",
    "plot_age_scatter",
    "plot_confusion_matrix",
    "plot_error_histogram",
    "plot_mae_by_group",
    "plot_prediction_grid",
    "plot_training_curves",
    "write_report",
]


def __getattr__(name: str) -> object:
    """Import the plotting/report names lazily (PEP 562) so matplotlib stays optional."""
    for module, names in _NEEDS_MATPLOTLIB.items():
        if name in names:
            return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
