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

ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]]) / 112
"""InsightFace's 5-point template for its 112×112 recognition crops, in units of the side:
the crops face-recognition teachers (SFace, ArcFace) were trained on."""


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
    Where the crop reaches past the image, it is black.

    Only the part of the image the crop needs is read, so a face costs the same in a
    24-megapixel photo as in a small one; strong reductions are done first with a box filter
    (`Image.reduce`), so such a face is not aliased by a single bilinear step.
    """
    return np.asarray(_warp(image, landmarks, size, template, "RGB"), dtype=np.uint8)


def align_face_with_coverage(image: np.ndarray, landmarks: np.ndarray, size: int,
                             template: np.ndarray = CANONICAL_TEMPLATE
                             ) -> tuple[np.ndarray, np.ndarray]:
    """`align_face`'s crop, and its size×size uint8 coverage: 255 where the crop shows the
    image, 0 where it reaches past it. Training uses it to fill that black area with other
    content, since a face in a photo has surroundings where a dataset's tight crop has none."""
    warped = np.asarray(_warp(image, landmarks, size, template, "RGBA"), dtype=np.uint8)
    return np.ascontiguousarray(warped[:, :, :3]), np.ascontiguousarray(warped[:, :, 3])


def crop_transform(landmarks: np.ndarray, size: int,
                   template: np.ndarray = CANONICAL_TEMPLATE) -> np.ndarray:
    """2×3 affine map from image pixels to the size×size crop `align_face` cuts for these
    5 points."""
    return similarity_transform(landmarks, template * size)


def _warp(image: np.ndarray, landmarks: np.ndarray, size: int, template: np.ndarray,
          mode: str) -> Image.Image:
    matrix = crop_transform(landmarks, size, template)
    to_image = np.linalg.inv(np.vstack((matrix, [0.0, 0.0, 1.0])))[:2]
    factor = int(np.hypot(*to_image[:, 0])) // 2
    step = factor if factor >= 2 else 1
    # The image region under the crop, with room for the filter; its corner on the reduction's
    # grid, so the reduced region has exactly the reduced image's pixels.
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]]) @ to_image[:, :2].T
    low = np.floor((corners + to_image[:, 2]).min(0)).astype(int) - 2 * step - 2
    high = np.ceil((corners + to_image[:, 2]).max(0)).astype(int) + 2 * step + 2
    left, top = np.maximum(low, 0) // step * step
    right, bottom = np.minimum(high, (image.shape[1], image.shape[0]))
    if right <= left or bottom <= top:
        return Image.new(mode, (size, size))
    pil = Image.fromarray(np.ascontiguousarray(image[top:bottom, left:right])).convert(mode)
    if step > 1:
        pil = pil.reduce(step)
    # region pixel → crop pixel: the whole image's transform, shifted and scaled to the region
    region_to_crop = np.hstack((matrix[:, :2] * step, matrix[:, :2] @ [[left], [top]]
                                + matrix[:, 2:]))
    inverse = np.linalg.inv(np.vstack((region_to_crop, [0.0, 0.0, 1.0])))[:2]
    return pil.transform((size, size), Image.Transform.AFFINE, tuple(inverse.ravel()),
                         resample=Image.Resampling.BILINEAR)
