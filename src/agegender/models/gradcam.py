"""Grad-CAM (Selvaraju et al., 2017) of a checkpoint's gender and age outputs, with torch.

Works for every model family, including the seed CNNs whose dense heads rule out a plain class
activation map: forward hooks read the output of each family's named target layer
(`model.cam_layers`, the last spatial feature map) and autograd gives the output's gradient
there. The targets match `inference.cam` (the predicted gender's logit; the expected age of the
calibrated age distribution, or the age output of a single-age model), so for a model with
linear heads over pooled features both give the same maps.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from agegender.data.records import GENDER_THRESHOLD
from agegender.inference.backends import FacePredictions, TorchCheckpointBackend
from agegender.models.age_distribution import expected_age
from agegender.models.checkpoint import load_checkpoint
from agegender.models.deploy import Calibration
from agegender.preprocessing import Preprocessing, normalize


def grad_cam_maps(model: nn.Module, images: torch.Tensor, calibration: Calibration | None = None,
                  female: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(gender maps, age maps), each N×h×w in [0, 1], of `model` (eval mode) on `images`,
    without flip averaging; the gender map points towards `female` (N booleans, the answer
    shown), or towards this view's own logit when not given."""
    calibration = calibration or Calibration()
    layers = model.cam_layers
    captured: dict[str, torch.Tensor] = {}
    modules = dict(model.named_modules())
    handles = [modules[name].register_forward_hook(
        lambda _module, _inputs, output, name=name: captured.__setitem__(name, output))
        for name in set(layers.values())]
    try:
        with torch.enable_grad():
            gender_logit, age, *rest = model(images)
            shown = gender_logit >= 0 if female is None else torch.from_numpy(female)
            towards = torch.where(shown, 1.0, -1.0)
            age_target = (expected_age(rest[0] / calibration.reported_age_temperature)
                          if rest else age)
            targets = {"gender": gender_logit * towards, "age": age_target}
            maps = [_grad_cam(targets[task], captured[layers[task]]) for task in ("gender", "age")]
    finally:
        for handle in handles:
            handle.remove()
    return maps[0], maps[1]


def _grad_cam(target: torch.Tensor, activation: torch.Tensor) -> np.ndarray:
    """ReLU(Σ_f mean_ij(∂y/∂A_f) · A_f), scaled to a maximum of 1 per image. The batch's
    targets are summed: in eval mode each image's target depends on its own activations only."""
    (gradient,) = torch.autograd.grad(target.sum(), activation, retain_graph=True)
    weights = gradient.mean((2, 3), keepdim=True)
    maps = torch.relu((weights * activation).sum(1)).detach()
    peaks = maps.amax((1, 2), keepdim=True)
    return (maps / torch.where(peaks > 0, peaks, 1.0)).numpy().astype(np.float32)


class GradCamExplainer:
    """A checkpoint's predictions (as `TorchCheckpointBackend` gives them) and Grad-CAM maps."""

    def __init__(self, path):
        loaded = load_checkpoint(path)
        self.model = loaded.model.eval()
        self.calibration = loaded.calibration
        self.backend = TorchCheckpointBackend(loaded.deployed(), loaded.preprocessing)
        self.preprocessing: Preprocessing = loaded.preprocessing
        self.methods = ("Grad-CAM", "Grad-CAM")

    def explain(self, crops: np.ndarray) -> tuple[FacePredictions, np.ndarray, np.ndarray]:
        """Predictions, gender maps and age maps of N canonical crops (uint8)."""
        images = torch.from_numpy(normalize(crops, self.preprocessing))
        predictions = self.backend.predict(crops)
        female = predictions.prob_female >= GENDER_THRESHOLD
        return predictions, *grad_cam_maps(self.model, images, self.calibration, female)
