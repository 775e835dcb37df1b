"""Inference: model backends, the predictor and result writers (no training stack needed)."""

from agegender.inference.backends import FacePredictions, ModelBackend, load_backend
from agegender.inference.predictor import RESULT_COLUMNS, FaceFilter, FaceResult, Predictor

__all__ = ["RESULT_COLUMNS", "FaceFilter", "FacePredictions", "FaceResult", "ModelBackend",
           "Predictor", "load_backend"]
