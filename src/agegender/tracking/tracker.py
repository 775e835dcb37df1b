"""Face tracks across frames: norfair's tracker fed the detector's boxes and scores.

norfair (its maintained fork, `norfair-enough`: numpy and scipy only, no OpenCV) is an
optional dependency, imported on first use: `pip install "agegender[track]"`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Box = tuple[float, float, float, float]
"""x, y, width, height in pixels, as the detector gives it."""

TRACK_EXTRA = 'pip install "agegender[track]"'


class TrackingUnavailable(ImportError):
    """norfair is not installed; the message says what to install."""


@dataclass(frozen=True)
class TrackerConfig:
    """How faces are matched from frame to frame.

    `max_distance`: a detection continues a track when 1 − IoU of its box and the track's
    predicted box (norfair's Kalman filter) is at most this, i.e. they overlap by an IoU of
    at least 1 − `max_distance`. `memory`: frames a track survives without a detection
    (an occlusion, a missed detection) before it ends; counted in processed frames.
    """

    max_distance: float = 0.9
    memory: int = 25


def _norfair():
    try:
        import norfair
    except ImportError:
        raise TrackingUnavailable(f"tracking faces needs norfair: {TRACK_EXTRA}") from None
    return norfair


class FaceTracker:
    """Gives every face of a frame a track number (1, 2, …, in order of first sight).

    Not thread-safe: one tracker per video or stream, updated frame by frame in order.
    """

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self._norfair = _norfair()
        self._tracker = self._norfair.Tracker(
            distance_function="iou", distance_threshold=self.config.max_distance,
            hit_counter_max=self.config.memory, initialization_delay=0)
        self._numbers: dict[int, int] = {}
        self._updates = 0

    def update(self, boxes: Sequence[Box], scores: Sequence[float | None], period: int = 1
               ) -> list[int]:
        """The track number of each box of this frame (`period`: frames since the last
        update, for `--every N`)."""
        self._updates += 1
        detections = [
            self._norfair.Detection(
                np.array([[x, y], [x + w, y + h]], dtype=np.float64),
                scores=np.full(2, 1.0 if score is None else score), data=(self._updates, index))
            for index, ((x, y, w, h), score) in enumerate(zip(boxes, scores, strict=True))]
        numbers = [0] * len(detections)
        for track in self._tracker.update(detections, period=period):
            update, index = track.last_detection.data
            if update == self._updates:  # matched (or started) by this frame's detection
                numbers[index] = self._numbers.setdefault(track.id, len(self._numbers) + 1)
        for index, number in enumerate(numbers):
            if number == 0:  # norfair returned no track for it: one of its own
                numbers[index] = self._numbers.setdefault(-self._updates * 1000 - index,
                                                          len(self._numbers) + 1)
        return numbers
