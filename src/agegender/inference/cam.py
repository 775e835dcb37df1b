"""Class activation maps in numpy, from an exported model's last feature map and head weights.

The bundled model's heads are linear over the global average of its last feature map A
(F×h×w), so each output is an average of per-location terms and needs no autograd:

- gender: the logit is w·mean(A) + b, so w·A[:, i, j] is the class activation map of Zhou et
  al. (2016), signed towards the predicted gender;
- age: the expected age E = Σ p_k·k of p = softmax((W·mean(A) + c) / T) has the gradient
  g = Wᵀ(p ⊙ (k − E)) / T with respect to the pooled features, and Σ_f g_f·A[f, i, j] is
  Grad-CAM (Selvaraju et al., 2017) of the expected age: where the face pushes the estimate up.

The gender map is ReLU-ed like Grad-CAM and scaled to [0, 1] per face: the evidence for the
answer. The age map keeps its sign, scaled to [-1, 1] per face: positive where the face pushes
the estimate toward older, negative toward younger (for a young face nearly every region pulls
younger, so a ReLU-ed map would be blank). Both equal the torch Grad-CAM of the same network
(`models.gradcam`) up to a positive factor.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

import numpy as np


def _encode(values: np.ndarray) -> dict:
    array = np.ascontiguousarray(values, dtype="<f4")
    return {"shape": list(array.shape), "float32": base64.b64encode(array.tobytes()).decode()}


def _decode(encoded: dict) -> np.ndarray:
    data = np.frombuffer(base64.b64decode(encoded["float32"]), dtype="<f4")
    return data.reshape(encoded["shape"]).astype(np.float32)


@dataclass(frozen=True)
class LinearHeads:
    """What the maps need of the heads over the pooled features: the gender logit's weights
    `gender_weight` (its bias and temperature change no map), and the age logits
    `age_weight`·x + `age_bias` over the ages `age_bins`, read at `age_temperature` (that of
    the distribution whose age the model reports)."""

    gender_weight: np.ndarray
    age_weight: np.ndarray
    age_bias: np.ndarray
    age_bins: np.ndarray
    age_temperature: float = 1.0

    def to_json(self) -> str:
        return json.dumps({
            "gender_weight": _encode(self.gender_weight), "age_weight": _encode(self.age_weight),
            "age_bias": _encode(self.age_bias), "age_bins": _encode(self.age_bins),
            "age_temperature": self.age_temperature})

    @classmethod
    def from_json(cls, text: str) -> LinearHeads:
        values = json.loads(text)
        return cls(_decode(values["gender_weight"]), _decode(values["age_weight"]),
                   _decode(values["age_bias"]), _decode(values["age_bins"]),
                   float(values["age_temperature"]))


def gender_cam(feature_map: np.ndarray, heads: LinearHeads, female: np.ndarray) -> np.ndarray:
    """N×h×w class activation maps towards the gender shown (`female`, N booleans: the model's
    answer, which flip averaging may have made, not this one view's logit)."""
    per_location = np.einsum("f,nfhw->nhw", heads.gender_weight, feature_map)
    return _scaled(per_location * np.where(female, 1.0, -1.0)[:, None, None])


def age_logits(pooled: np.ndarray, heads: LinearHeads) -> np.ndarray:
    """N×bins age logits at the reported temperature from N×F pooled features.

    `einsum`, not `@`: for a batch of faces numpy's BLAS starts threads of its own, which then
    fight onnxruntime's for the cores; on 2 cores the model's batches took twice as long."""
    return ((np.einsum("nf,af->na", pooled, heads.age_weight) + heads.age_bias)
            / heads.age_temperature)


def age_log_distribution(pooled: np.ndarray, heads: LinearHeads) -> np.ndarray:
    """N×bins natural-log probabilities over `heads.age_bins` from N×F pooled features: the
    distribution whose age the model reports."""
    logits = age_logits(pooled, heads)
    peak = logits.max(axis=1, keepdims=True)
    return logits - peak - np.log(np.exp(logits - peak).sum(axis=1, keepdims=True))


def age_distribution(feature_map: np.ndarray, heads: LinearHeads) -> np.ndarray:
    """N×bins probabilities over `heads.age_bins`, from the feature map (the heads are linear
    over its global average)."""
    return np.exp(age_log_distribution(feature_map.mean(axis=(2, 3), dtype=np.float64), heads))


def age_cam(feature_map: np.ndarray, heads: LinearHeads) -> np.ndarray:
    """N×h×w signed Grad-CAM of the expected age, in [-1, 1] (toward older where positive),
    from the softmax's closed-form gradient."""
    probs = age_distribution(feature_map, heads)
    expected = np.einsum("na,a->n", probs, heads.age_bins)
    gradient = np.einsum("na,af->nf", probs * (heads.age_bins - expected[:, None]),
                         heads.age_weight)
    gradient /= heads.age_temperature
    return _scaled(np.einsum("nf,nfhw->nhw", gradient, feature_map), signed=True)


def _scaled(maps: np.ndarray, signed: bool = False) -> np.ndarray:
    """ReLU unless `signed`, then each map divided by its largest |value| (an all-zero map
    stays zero)."""
    if not signed:
        maps = np.maximum(maps, 0.0)
    peaks = np.abs(maps).max(axis=(1, 2), keepdims=True)
    return (maps / np.where(peaks > 0, peaks, 1.0)).astype(np.float32)
