"""The tracks of one video or stream: frame rows in, rows with their track's answer out, and
one summary row per track at the end."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np

from agegender.inference.predictor import ImageResult
from agegender.tracking.combine import (
    PersonAnswer,
    PersonEvidence,
    prob_female_of,
    steady_gender,
)
from agegender.tracking.tracker import FaceTracker, TrackerConfig

TRACK_COLUMNS = ["track", "track_age", "track_age_low", "track_age_high", "track_gender",
                 "track_gender_prob", "track_views"]
"""Columns a tracked row adds to `RESULT_COLUMNS`: the track's number, and its combined answer
over the faces it has had so far, this frame's included (`track_views` of them). The gender is
the one the track shows (`combine.steady_gender`), with the combined probability of it."""

SUMMARY_COLUMNS = ["file", "track", "first_frame", "last_frame", "first_time", "last_time",
                   "frames", "age", "age_low", "age_high", "gender", "gender_prob",
                   "face_size", "gender_changes"]
"""One row per track: where it was seen, its final combined answer (the gender without
hysteresis: all the evidence is in), the median face side in pixels (√(w·h)), and how often
the gender it showed changed along the way."""


@dataclass
class Track:
    """What a track has gathered: its evidence, where it was seen, its face sizes (a count
    per whole pixel, so memory stays bounded on an endless stream)."""

    number: int
    first_frame: int
    first_time: float | None
    evidence: PersonEvidence = field(default_factory=PersonEvidence)
    last_frame: int = 0
    last_time: float | None = None
    sizes: Counter = field(default_factory=Counter)
    shown_gender: str | None = None
    gender_changes: int = 0

    def add(self, frame: int, time: float | None, row: dict, log_probs: np.ndarray
            ) -> PersonAnswer:
        """Add a face; the answer so far, with the gender the track shows."""
        self.evidence.add(log_probs, prob_female_of(row["gender"], row["gender_prob"]))
        self.last_frame, self.last_time = frame, time
        self.sizes[round(float(np.sqrt(row["w"] * row["h"])))] += 1
        answer = self.evidence.answer()
        prob_female = prob_female_of(answer.gender, answer.gender_prob)
        shown = steady_gender(self.shown_gender, prob_female)
        if self.shown_gender is not None and shown != self.shown_gender:
            self.gender_changes += 1
        self.shown_gender = shown
        return replace(answer, gender=shown, gender_prob=prob_female_of(shown, prob_female))

    def summary(self, file: str) -> dict:
        answer = self.evidence.answer()
        return {"file": file, "track": self.number, "first_frame": self.first_frame,
                "last_frame": self.last_frame, "first_time": self.first_time,
                "last_time": self.last_time, "frames": self.evidence.views,
                "age": answer.age, "age_low": answer.age_low, "age_high": answer.age_high,
                "gender": answer.gender, "gender_prob": answer.gender_prob,
                "face_size": _median(self.sizes), "gender_changes": self.gender_changes}


class TrackedSource:
    """Tracks the faces of one video or stream, frame by frame in order.

    `every`: the frame step the frames were sampled at (`--every`), so that a track's memory
    counts frames of the source.
    """

    def __init__(self, file: str, config: TrackerConfig | None = None, every: int = 1) -> None:
        self.file = file
        self.every = every
        self.tracker = FaceTracker(config)
        self.tracks: dict[int, Track] = {}

    def add(self, result: ImageResult) -> list[dict]:
        """The rows of one frame (`predict_paths(..., distributions=True)`), each face's with
        its track's number and answer so far (`TRACK_COLUMNS`); error rows as they are."""
        rows = [row.to_dict() for row in result.rows]
        faces = [row for row in rows if row["error"] is None]
        if faces and result.age_log_probs is None:
            raise ValueError("tracking needs the faces' age distributions "
                             "(predict_paths(..., distributions=True))")
        # a frame without faces still moves the tracks on (their predicted boxes, their age)
        numbers = self.tracker.update([(r["x"], r["y"], r["w"], r["h"]) for r in faces],
                                      [r["det_score"] for r in faces],
                                      result.appearance if faces else None, period=self.every)
        if not faces:
            return rows
        frame = result.frame or 0
        for row, number, log_probs in zip(faces, numbers, result.age_log_probs, strict=True):
            track = self.tracks.get(number)
            if track is None:
                track = self.tracks[number] = Track(number, frame, row["time"])
            answer = track.add(frame, row["time"], row, log_probs)
            row.update(track=number, track_age=answer.age, track_age_low=answer.age_low,
                       track_age_high=answer.age_high, track_gender=answer.gender,
                       track_gender_prob=answer.gender_prob, track_views=answer.views)
        return rows

    def summary(self) -> list[dict]:
        """One row per track (`SUMMARY_COLUMNS`), in order of first sight."""
        return [self.tracks[number].summary(self.file) for number in sorted(self.tracks)]


def _median(counts: Counter) -> float | None:
    """The median of values given as value → count."""
    total = sum(counts.values())
    if not total:
        return None
    values = sorted(counts)
    cumulative = np.cumsum([counts[value] for value in values])
    lower = values[int(np.searchsorted(cumulative, (total + 1) // 2))]
    upper = values[int(np.searchsorted(cumulative, total // 2 + 1))]
    return (lower + upper) / 2
