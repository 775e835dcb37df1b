"""Grad-CAM (Selvaraju et al., 2017) of a checkpoint's gender and age outputs, with torch.

Works for every model family, including the seed CNNs whose dense heads rule out a plain class
activation map: forward hooks read the output of each family's named target layer
(`model.cam_layers`, the last spatial feature map) and autograd gives the output's gradient
there. The targets match `inference.cam` (the predicted gender's logit; the expected age of the
calibrated age distribution, or the age output of a single-age model), so for a model with
linear heads over pooled features both give the same maps. The age map keeps its sign: a young
face's evidence pulls the age down, and a map of only what pulls it up would be blank.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from agegender.models.age_distribution import expected_age
from agegender.models.deploy import Calibration


def grad_cam_maps(model: nn.Module, images: torch.Tensor, calibration: Calibration | None = None,
                  female: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(gender maps, age maps), each N×h×w, of `model` (eval mode) on `images`, without flip
    averaging. A gender map, in [0, 1], shows the evidence for `female` (N booleans, the answer
    shown), or for this view's own logit when not given; an age map, in [-1, 1], the evidence
    toward older (positive) and toward younger (negative)."""
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
            maps = [_grad_cam(targets[task], captured[layers[task]], signed=task == "age")
                    for task in ("gender", "age")]
    finally:
        for handle in handles:
            handle.remove()
    return maps[0], maps[1]


def _grad_cam(target: torch.Tensor, activation: torch.Tensor, signed: bool = False
              ) -> np.ndarray:
    """Σ_f mean_ij(∂y/∂A_f) · A_f at each location: ReLU-ed and scaled to a maximum of 1 (the
    evidence for y), or with `signed` kept whole and scaled to a largest |value| of 1 (toward a
    larger y where positive, a smaller where negative). The batch's targets are summed: in eval
    mode each image's target depends on its own activations only."""
    (gradient,) = torch.autograd.grad(target.sum(), activation, retain_graph=True)
    weights = gradient.mean((2, 3), keepdim=True)
    maps = (weights * activation).sum(1).detach()
    if not signed:
        maps = torch.relu(maps)
    peaks = maps.abs().amax((1, 2), keepdim=True)
    return (maps / torch.where(peaks > 0, peaks, 1.0)).numpy().astype(np.float32)
