"""The canonical model input crop of a face: the one function training and inference share."""

from __future__ import annotations

import numpy as np

from agegender.faces.align import align_face
from agegender.faces.detector import Detection, FaceDetector
from agegender.preprocessing import Preprocessing, resize_face


def canonical_crop(image: np.ndarray, prep: Preprocessing,
                   detection: Detection | None) -> np.ndarray:
    """prep.size² × channels uint8 crop of `detection` in `image`.

    With `prep.align` the face's 5 points are mapped onto the template; without a detection
    (or without alignment) the whole image is taken as an already aligned face and resized.
    """
    if prep.align and detection is not None:
        image = align_face(image, detection.landmarks, prep.size)
    return resize_face(image, prep)


def crop_of_face_image(image: np.ndarray, prep: Preprocessing,
                       detector: FaceDetector | None) -> tuple[np.ndarray, Detection | None]:
    """Canonical crop of an image that shows one face (a dataset crop): its largest detection
    aligned, or the whole image when alignment is off or no face is found."""
    detections = detector.detect(image) if prep.align and detector is not None else []
    detection = detections[0] if detections else None
    return canonical_crop(image, prep, detection), detection
