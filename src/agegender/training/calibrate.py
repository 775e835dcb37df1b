"""Fit a checkpoint's `Calibration` on the validation split and store it in the checkpoint.

Four choices, each made on validation data only:
- flip test-time augmentation is kept when it lowers the validation age MAE;
- the gender temperature minimises the validation log-loss (Guo et al., 2017), which is what
  makes `gender_prob` a probability a user can read;
- the age temperature widens or narrows the predicted distribution until the 80 % interval
  holds 80 % of the validation ages;
- the age is read as the median of that distribution when it has a lower validation MAE than
  the expectation.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from agegender.data.labelled import LabelledFaces
from agegender.models.age_distribution import age_interval, expected_age, median_age
from agegender.models.checkpoint import load_checkpoint, read_checkpoint, write_checkpoint
from agegender.models.deploy import INTERVAL_COVERAGE, Calibration, model_outputs
from agegender.training.batches import make_batch
from agegender.training.config import TrainConfig

log = logging.getLogger("agegender")

TEMPERATURES = np.exp(np.linspace(np.log(0.1), np.log(20.0), 265))
"""Candidate temperatures, 2 % apart."""


def _collect(model: torch.nn.Module, data: LabelledFaces, rows: np.ndarray, config: TrainConfig,
             flip: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(rows), 256):
            images, _, _ = make_batch(data, rows[start:start + 256], config, None)
            outputs.append(model_outputs(model, images, flip))
    gender_logit = torch.cat([out[0] for out in outputs])
    age = torch.cat([out[1] for out in outputs])
    age_logits = None if outputs[0][2] is None else torch.cat([out[2] for out in outputs])
    return gender_logit, age, age_logits


def fit_gender_temperature(logit: np.ndarray, female: np.ndarray) -> float:
    """The temperature with the lowest binary log-loss on the labelled rows."""
    def log_loss(temperature: float) -> float:
        scaled = logit / temperature
        return float(np.mean(np.logaddexp(0, scaled) - female * scaled))
    return float(min(TEMPERATURES, key=log_loss))


def fit_age_temperature(age_logits: torch.Tensor, age: np.ndarray) -> float:
    """The temperature whose interval coverage on these rows is closest to the target."""
    def coverage(temperature: float) -> float:
        low, high = age_interval(age_logits / temperature, INTERVAL_COVERAGE)
        return float(np.mean((low.numpy() <= age) & (age <= high.numpy())))
    return float(min(TEMPERATURES, key=lambda t: abs(coverage(t) - INTERVAL_COVERAGE)))


def fit_calibration(checkpoint: Path, data: LabelledFaces, allow_flip: bool = True
                    ) -> tuple[Calibration, dict]:
    """Fit on `data.rows("val")`; returns the calibration and the validation figures behind it.

    `allow_flip=False` rules out flip averaging (it doubles the model's cost per face).
    """
    loaded = load_checkpoint(checkpoint)
    model, config = loaded.model, TrainConfig.from_dict(loaded.config)
    rows = np.sort(data.rows("val"))
    if len(rows) == 0:
        raise ValueError("calibration needs a validation split, and it is empty")
    age_true, gender_true = data.age[rows], data.gender[rows]
    has_age, has_gender = np.isfinite(age_true), np.isfinite(gender_true)
    figures: dict = {"n_val": len(rows)}
    candidates = {}
    for flip in (False, True):
        candidates[flip] = _collect(model, data, rows, config, flip)
        age = candidates[flip][1].numpy()
        figures[f"val_mae_flip_{str(flip).lower()}"] = (
            float(np.mean(np.abs(age - age_true)[has_age])) if has_age.any() else None)
    flip = bool(allow_flip and has_age.any()
                and figures["val_mae_flip_true"] < figures["val_mae_flip_false"])
    gender_logit, _, age_logits = candidates[flip]
    gender_temperature = (fit_gender_temperature(gender_logit.numpy()[has_gender],
                                              gender_true[has_gender])
                          if has_gender.any() else 1.0)
    age_temperature = (fit_age_temperature(age_logits[torch.from_numpy(has_age)],
                                        age_true[has_age])
                       if age_logits is not None and has_age.any() else 1.0)
    age_median = False
    if age_logits is not None and has_age.any():
        scaled = age_logits / round(age_temperature, 4)
        for name, read_out in (("mean", expected_age), ("median", median_age)):
            error = np.abs(read_out(scaled).numpy() - age_true)[has_age]
            figures[f"val_mae_{name}"] = float(np.mean(error))
        age_median = figures["val_mae_median"] < figures["val_mae_mean"]
    calibration = Calibration(gender_temperature=round(gender_temperature, 4),
                              age_temperature=round(age_temperature, 4), flip=flip,
                              age_median=age_median)
    return calibration, figures


def calibrate_checkpoint(checkpoint: Path, data: LabelledFaces, allow_flip: bool = True
                         ) -> Calibration:
    """Fit the calibration and rewrite `checkpoint` (atomically) with it stored inside."""
    calibration, figures = fit_calibration(checkpoint, data, allow_flip)
    payload = read_checkpoint(checkpoint)
    payload["calibration"] = calibration.to_dict()
    payload["calibration_figures"] = figures
    write_checkpoint(checkpoint, payload)
    log.info("calibrated %s on %d validation faces: %s", checkpoint, figures["n_val"],
             calibration)
    return calibration
