"""Evaluate a model on a labelled split and write the report (used by `train` and `evaluate`)."""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from agegender import __version__
from agegender.atomic import write_json_atomic
from agegender.data.labelled import (
    TEST_OR_ALL,
    LabelledFaces,
    load_labelled_faces,
    resolve_split,
)
from agegender.evaluation.html_report import write_html_report
from agegender.evaluation.plots import plot_training_curves
from agegender.evaluation.report import EvalPredictions, write_report
from agegender.inference.backends import (
    ModelBackend,
    OnnxBackend,
    load_backend,
    predict_in_batches,
)
from agegender.inference.explain import Explainer, OnnxExplainer, load_explainer

log = logging.getLogger("agegender")


def evaluate_rows(backend: ModelBackend, data: LabelledFaces, rows: np.ndarray,
                  report_dir: Path, explainer: Explainer | None = None) -> dict:
    """Predict the given rows with `backend` and write the full evaluation report."""
    rows = np.sort(rows)
    images = np.asarray(data.images[rows])
    predicted = predict_in_batches(backend, images)
    has_interval = bool(np.isfinite(predicted.age_low).all())
    return write_report(EvalPredictions(
        sources=[data.sources[i] for i in rows], age_true=data.age[rows],
        age_pred=predicted.age, gender_true=data.gender[rows],
        prob_female=predicted.prob_female, race=data.race[rows],
        age_low=predicted.age_low if has_interval else None,
        age_high=predicted.age_high if has_interval else None, images=images), report_dir,
        explainer=explainer)


def summarize(metrics: dict, split: str) -> dict:
    """Headline figures (`mae`, `gender_acc`, ...) on top, the full report below."""
    age, gender = metrics.get("age", {}), metrics.get("gender", {})
    return {"split": split, "n_images": metrics.get("n_images"), "mae": age.get("mae"),
            "rmse": age.get("rmse"), "cs5": age.get("cs5"),
            "interval_coverage": age.get("interval_coverage"),
            "gender_acc": gender.get("accuracy"), "gender_ece": gender.get("ece"),
            "gender_f1": gender.get("macro_f1"),
            "gender_auc": gender.get("roc_auc"), **metrics}


def _explainer(backend: ModelBackend, model_path: Path) -> Explainer | None:
    """Activation maps for the worst faces: numpy CAM from the ONNX model already loaded,
    Grad-CAM for a checkpoint; None for an ONNX file exported without the feature map."""
    if isinstance(backend, OnnxBackend):
        return OnnxExplainer(backend) if backend.has_feature_map else None
    return load_explainer(model_path)


def provenance(model_path: Path, data_path: Path, split: str, split_origin: str | None = None,
               limit: int | None = None) -> dict:
    """What the report was made from, for its first section: the model, the data, the split
    (and where it comes from), and the `limit` on the images drawn from it (the count scored
    is the report's `n_images`)."""
    digest = hashlib.sha256(Path(model_path).read_bytes()).hexdigest()
    return {"model": Path(model_path).name, "model_path": str(model_path),
            "model_sha256": digest[:16], "data": str(data_path), "split": split,
            "split_origin": split_origin, "limit": limit,
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "agegender_version": __version__}


def evaluate_model(data_path: Path, model_path: Path, report_dir: Path,
                   split: str | None = None, split_file: Path | None = None,
                   limit: int | None = None, seed: int = 0, cache_dir: Path | None = None,
                   run_dir: Path | None = None) -> dict:
    """Load `model_path`, evaluate it on `split` of `data_path` (None: `TEST_OR_ALL`, the test
    split of data that has one, all of data that has none), at most `limit` images of it,
    write `report_dir` with its report.html. `run_dir` (default: a checkpoint's folder, when it
    holds log.csv) gives the training curves.

    Dataset crops in which no face is detected are taken whole, as training takes them (the
    cache says how many); `agegender predict` does so only with --whole-image."""
    backend = load_backend(model_path)
    data = load_labelled_faces(data_path, backend.preprocessing, split_file=split_file,
                               limit=limit, seed=seed, cache_dir=cache_dir,
                               split=split or TEST_OR_ALL)
    split = resolve_split(split or TEST_OR_ALL, data.split_origin)
    rows = data.rows(split)
    if len(rows) == 0:
        raise ValueError(f"{data_path}: the {split!r} split is empty")
    log.info("evaluating %s on %s: %s split (%s), %d images%s", Path(model_path).name,
             data_path, split, data.split_origin, len(rows),
             f" (--limit {limit})" if limit is not None else "")
    metrics = evaluate_rows(backend, data, rows, report_dir, _explainer(backend, model_path))
    summary = {"provenance": provenance(model_path, data_path, split, data.split_origin, limit),
               **summarize(metrics, split=split)}
    write_json_atomic(report_dir / "metrics.json", summary)
    run_dir = run_dir or Path(model_path).parent
    if (run_dir / "log.csv").is_file():
        plot_training_curves(run_dir / "log.csv", report_dir / "training_curves.png")
    write_html_report(report_dir, summary)
    return summary
