"""The canonical model input crop of a face: the one function training and inference share."""

from __future__ import annotations

import numpy as np

from agegender.faces.align import CANONICAL_TEMPLATE, align_face, align_face_with_coverage
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


def crop_of_face_image(image: np.ndarray, prep: Preprocessing, detector: FaceDetector | None
                       ) -> tuple[np.ndarray, np.ndarray, Detection | None]:
    """Canonical crop of an image that shows one face (a dataset crop): its subject
    (`subject_of`) aligned, or the whole image when alignment is off or no face is found.
    Also the crop's coverage (255 where it shows the image, 0 where the alignment reached
    past it)."""
    detections = detector.detect(image) if prep.align and detector is not None else []
    if not detections:
        crop = canonical_crop(image, prep, None)
        return crop, np.full(crop.shape[:2], 255, dtype=np.uint8), None
    subject = subject_of(detections, image.shape[1], image.shape[0])
    aligned, coverage = align_face_with_coverage(image, subject.landmarks, prep.size)
    return resize_face(aligned, prep), coverage, subject


def subject_of(detections: list[Detection], width: int, height: int) -> Detection:
    """The face a dataset crop is about: the largest detection whose box holds the image's
    centre, else the largest. Dataset crops are centred on their subject, while a larger
    face may stand beside it (LFW's press photos: a neighbour's face, its gender not the
    label's)."""
    return detections[subject_index([face.box for face in detections], width, height)]


def subject_index(boxes: list[tuple[float, float, float, float]], width: int, height: int
                  ) -> int:
    """`subject_of` for boxes (x, y, w, h), largest first: the index of the subject's."""
    centre_x, centre_y = width / 2, height / 2
    for index, (x, y, w, h) in enumerate(boxes):
        if x <= centre_x <= x + w and y <= centre_y <= y + h:
            return index
    return 0


def aligned_crop(image: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """Canonical crop of an image that is already a face crop aligned like the training data
    (UTKFace's aligned crops), without detecting. The template is the median of the landmarks
    in such crops, in units of the crop side, so the crop style puts a face's points at the
    template scaled to the image, and the fixed transform maps them onto the model's template
    (for a square crop, a scaling). The image goes through the same warp as a detected face
    (`align_face`), so the model gets the same kind of pixels."""
    if not prep.align:
        return resize_face(image, prep)
    height, width = image.shape[:2]
    return resize_face(align_face(image, CANONICAL_TEMPLATE * (width, height), prep.size), prep)
