"""5-point similarity alignment to the canonical face crop.

Training crops and every face the detector finds later are mapped onto the same template,
so the model sees one geometry. The template is the median RetinaFace landmark position
over UTKFace's aligned 200×200 crops (503 images, every 40th of the archive), in units of
the crop side: a UTKFace crop stays almost unchanged, and a face found in a photo is framed
the way the training faces were.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

CANONICAL_TEMPLATE = np.array([
    [0.2980, 0.2920],  # image-left eye
    [0.6881, 0.2905],  # image-right eye
    [0.4867, 0.5238],  # nose tip
    [0.3184, 0.6780],  # mouth, image-left corner
    [0.6694, 0.6792],  # mouth, image-right corner
], dtype=np.float64)


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """2×3 matrix of the rotation + uniform scale + shift that best maps source points onto
    target points in the least-squares sense (Umeyama, 1991; reflections excluded)."""
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    source_mean, target_mean = source.mean(0), target.mean(0)
    centred_source, centred_target = source - source_mean, target - target_mean
    covariance = centred_target.T @ centred_source / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1
    rotation = u @ np.diag(sign) @ vt
    variance = (centred_source ** 2).sum() / len(source)
    scale = (singular * sign).sum() / variance if variance > 0 else 1.0
    shift = target_mean - scale * rotation @ source_mean
    return np.hstack((scale * rotation, shift[:, None]))


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int,
               template: np.ndarray = CANONICAL_TEMPLATE) -> np.ndarray:
    """The size×size RGB uint8 crop of the face whose 5 points are `landmarks`, mapped onto
    `template` (in units of the crop side; the canonical one unless another network's is given).

    Strong reductions are done first with a box filter (`Image.reduce`), so a face in a
    24-megapixel photo is not aliased by a single bilinear step.
    """
    pil = Image.fromarray(image)
    points = np.asarray(landmarks, dtype=np.float64)
    matrix = similarity_transform(points, template * size)
    scale = float(np.hypot(*matrix[:, 0]))
    factor = int(1.0 / scale) // 2
    if factor >= 2:
        pil = pil.reduce(factor)
        points = points / factor
        matrix = similarity_transform(points, template * size)
    inverse = np.linalg.inv(np.vstack((matrix, [0.0, 0.0, 1.0])))[:2]
    warped = pil.transform((size, size), Image.Transform.AFFINE, tuple(inverse.ravel()),
                           resample=Image.Resampling.BILINEAR)
    return np.asarray(warped, dtype=np.uint8)
