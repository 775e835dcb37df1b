"""Face tracks across frames: norfair's tracker fed the detector's boxes and scores.

norfair (its maintained fork, `norfair-enough`: numpy and scipy only, no OpenCV) is an
optional dependency, imported on first use: `pip install "agegender[track]"`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

Box = tuple[float, float, float, float]
"""x, y, width, height in pixels, as the detector gives it."""

TRACK_EXTRA = 'pip install "agegender[track]"'


class TrackingUnavailable(ValueError):
    """norfair is not installed; the message says what to install (a ValueError, so the CLI
    reports it like any other bad request: its message and exit status 2)."""


def require_tracker() -> None:
    """Raise `TrackingUnavailable` now, before any work, if norfair is missing."""
    _norfair()


@dataclass(frozen=True)
class TrackerConfig:
    """How faces are matched from frame to frame.

    A detection continues the track for which (1 − IoU of its box and the track's predicted
    box, from norfair's Kalman filter) + `appearance_weight` × (cosine distance between its
    appearance and the track's mean one) is smallest, if that is at most `max_distance`.
    The appearance term keeps two crossing faces apart: on generated test videos, the same
    face in consecutive frames was at a median cosine distance of 0.005 (0.054 at the 90th
    percentile, more in blurred frames), two different faces at 0.87 (0.39 at the 10th
    percentile). `memory`: frames a track coasts without a detection (an occlusion, a miss)
    before it ends.

    A track also keeps a gallery of up to `gallery_size` of its looks, each kept when no kept
    look is within `gallery_novelty` of it (a face that turns, a person shown by several
    photos). A face that starts a new track within `relink_frames` of another track's last
    sighting takes that track's number again when its appearance is within `relink_distance`
    of that track's mean or of one of its kept looks: a face seen again after a longer
    occlusion, or after a crossing that broke its track, stays one person. Chosen on two sets
    of videos of validation faces (docs/tracking.md): a gallery of 8 and 0.5 put 0.969 and
    0.968 of true face-frames on their person's main track, against 0.930 and 0.929 for the
    mean look alone and 0.3. Frame counts are in processed frames.
    """

    max_distance: float = 1.0
    appearance_weight: float = 1.0
    memory: int = 25
    relink_frames: int = 250
    relink_distance: float = 0.5
    gallery_size: int = 8
    gallery_novelty: float = 0.1


def _norfair():
    try:
        import norfair
    except ImportError:
        raise TrackingUnavailable(f"tracking faces needs norfair: {TRACK_EXTRA}") from None
    # norfair warns whenever a track's predicted box has collapsed while it coasts without
    # detections (the boxes given to it are always well-formed): not the user's concern
    logging.getLogger("norfair.distances").setLevel(logging.ERROR)
    # and it suggests a vectorised distance once per tracker; ours is per pair, for a few faces
    logging.getLogger("norfair.tracker").setLevel(logging.ERROR)
    return norfair


def _iou(box: np.ndarray, other: np.ndarray) -> float:
    """IoU of two boxes given as 2×2 corner arrays [[x1, y1], [x2, y2]] (in plain floats: it
    runs for every pair of face and track in every frame)."""
    (ax1, ay1), (ax2, ay2) = box.tolist()
    (bx1, by1), (bx2, by2) = other.tolist()
    overlap = (max(0.0, min(ax2, bx2) - max(ax1, bx1))
               * max(0.0, min(ay2, by2) - max(ay1, by1)))
    areas = (max(0.0, ax2 - ax1) * max(0.0, ay2 - ay1)
             + max(0.0, bx2 - bx1) * max(0.0, by2 - by1))
    return overlap / max(areas - overlap, 1e-9)


@dataclass
class _Number:
    """What a track number remembers: its mean appearance (matching from frame to frame), a
    gallery of up to `gallery_size` looks unlike each other (re-linking), and when it was
    last seen."""

    mean: np.ndarray | None
    last_update: int
    looks: list[np.ndarray] = field(default_factory=list)

    def nearest(self, appearance: np.ndarray) -> float:
        """Cosine distance from `appearance` to the nearest of the mean and the kept looks."""
        return 1.0 - max(float(appearance @ look) for look in (self.mean, *self.looks))

    def add(self, appearance: np.ndarray, size: int, novelty: float) -> None:
        """Fold `appearance` into the mean, and keep it as a look when no kept look is within
        `novelty` of it (the oldest kept look makes room)."""
        if size and all(1.0 - float(appearance @ look) > novelty for look in self.looks):
            self.looks = [*self.looks, appearance][-size:]
        mean = 0.8 * self.mean + 0.2 * appearance
        self.mean = mean / max(float(np.linalg.norm(mean)), 1e-12)


class FaceTracker:
    """Gives every face of a frame a track number (1, 2, …, in order of first sight).

    Not thread-safe: one tracker per video or stream, updated frame by frame in order.
    Memory stays bounded on an endless stream: only live tracks and those lost within
    `relink_frames` are kept.
    """

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self._norfair = _norfair()
        self._tracker = self._norfair.Tracker(
            distance_function=self._distance, distance_threshold=self.config.max_distance,
            hit_counter_max=self.config.memory, initialization_delay=0)
        self._numbers: dict[int, int] = {}  # norfair's id → our number
        self._known: dict[int, _Number] = {}
        self._count = 0
        self._updates = 0

    def _distance(self, detection, track) -> float:
        distance = 1.0 - _iou(detection.points, track.estimate)
        known = self._known.get(self._numbers.get(track.id, 0))
        seen = known.mean if known is not None else track.last_detection.embedding
        if detection.embedding is not None and seen is not None:
            distance += self.config.appearance_weight * (
                1.0 - float(detection.embedding @ seen))
        return distance

    def update(self, boxes: Sequence[Box], scores: Sequence[float | None],
               appearance: np.ndarray | None = None, period: int = 1) -> list[int]:
        """The track number of each box of this frame; `appearance`: the faces' unit feature
        vectors (None: match by boxes alone); `period`: frames since the last update (for
        `--every N`)."""
        self._updates += 1
        detections = [
            self._norfair.Detection(
                np.array([[x, y], [x + w, y + h]], dtype=np.float64),
                scores=np.full(2, 1.0 if score is None else score), data=(self._updates, index),
                embedding=None if appearance is None else appearance[index])
            for index, ((x, y, w, h), score) in enumerate(zip(boxes, scores, strict=True))]
        numbers = [0] * len(detections)
        new: list[tuple[int, int]] = []
        for track in self._tracker.update(detections, period=period):
            update, index = track.last_detection.data
            if update != self._updates:
                continue  # coasting: not seen in this frame
            if track.id in self._numbers:
                numbers[index] = self._numbers[track.id]
            else:
                new.append((track.id, index))
        for track_id, index in new:  # new tracks: a face seen before, or a new face
            number = self._relink(appearance, index, set(numbers))
            self._numbers[track_id] = numbers[index] = number
        for index, number in enumerate(numbers):
            if number == 0:  # norfair returned no track for it: one of its own
                numbers[index] = self._new_number()
            self._remember(numbers[index], None if appearance is None else appearance[index])
        self._forget()
        return numbers

    def _relink(self, appearance: np.ndarray | None, index: int, taken: set[int]) -> int:
        """The number of the lost track this face looks like, or a new number."""
        if appearance is not None:
            lost = [(known.nearest(appearance[index]), number)
                    for number, known in self._known.items()
                    if number not in taken and known.mean is not None
                    and known.last_update < self._updates]
            if lost and min(lost)[0] <= self.config.relink_distance:
                return min(lost)[1]
        return self._new_number()

    def _new_number(self) -> int:
        self._count += 1
        return self._count

    def _remember(self, number: int, appearance: np.ndarray | None) -> None:
        known = self._known.get(number)
        if known is None or known.mean is None or appearance is None:
            self._known[number] = _Number(appearance, self._updates,
                                          [] if appearance is None else [appearance])
            return
        known.add(appearance, self.config.gallery_size, self.config.gallery_novelty)
        known.last_update = self._updates

    def _forget(self) -> None:
        """Drop what no later frame can need: numbers lost for longer than `relink_frames`,
        and norfair ids of tracks it has ended."""
        horizon = self._updates - self.config.relink_frames
        self._known = {number: known for number, known in self._known.items()
                       if known.last_update >= horizon}
        alive = {track.id for track in self._tracker.tracked_objects}
        self._numbers = {track_id: number for track_id, number in self._numbers.items()
                         if track_id in alive}
