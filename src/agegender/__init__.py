"""agegender: age and gender estimation from face photos, and a workbench to train your own.

    from agegender import Predictor
    rows = Predictor().predict("photo.jpg")   # the bundled model; one FaceResult per face
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from agegender.inference.predictor import FaceResult, Predictor

__all__ = ["FaceResult", "Predictor", "__version__"]


def __getattr__(name: str):
    """Import the predictor on first use, so `import agegender` (and the CLI) stays light."""
    if name in ("Predictor", "FaceResult"):
        from agegender.inference import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module 'agegender' has no attribute {name!r}")
