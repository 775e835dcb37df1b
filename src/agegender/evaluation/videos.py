"""Synthetic videos of moving faces with known truth, to measure tracking and the tracks'
answers (`benchmarks/tracking.py`, the tests, and the still in docs/).

Face crops move over a smooth random background seen by a camera that pans and zooms; they
turn (in-plane rotation), cross each other (the nearer one hides the other), pass behind an
occluding bar, and frames get blurred now and then; the video is encoded as H.264 at a
compression that shows. A person may be shown by several photos of them in turn, each
cross-fading into the next over a few frames, as a turn of the head or a change of light
changes how a face looks. Every frame's truth (each person's square, and whether it is
visible) is kept, so every detection can be matched to the person it is.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from agegender.evaluation.scenes import PlacedFace, background

WORLD_MARGIN = 2.2
"""The world (the background the camera looks at) is this many frames wide and high."""

CAMERA_START = 0.6
"""The camera's first top-left corner, in frame widths and heights from the world's."""

VISIBLE_SHARE = 0.6
"""A face counts as seen in a frame when at least this share of its square is neither hidden
by the occluder or a nearer face nor outside the frame."""


@dataclass(frozen=True)
class FacePath:
    """One person's motion: from `start` to `end` (centres, in pixels of the first frame's
    view: the camera's later pan and zoom move the face in the frame) between the frames
    `enter` and `leave`, its side growing from `side` to `side × grow`, turning by up to
    ±`turn`° (a sine of period `turn_period` frames); nearer faces (higher `depth`) hide
    farther ones. `face` is who it is (the truth); `photos` are the crops that show them, in
    turn, `photo_frames` frames each, the last `fade` of them cross-fading into the next
    (no photos: the crop `face` all along)."""

    face: int
    start: tuple[float, float]
    end: tuple[float, float]
    side: float
    grow: float = 1.0
    turn: float = 0.0
    turn_period: float = 50.0
    enter: int = 0
    leave: int | None = None
    depth: int = 0
    photos: tuple[int, ...] = ()
    photo_frames: int = 50
    fade: int = 8

    def look(self, frame: int) -> tuple[int, int, float]:
        """The crops shown at `frame`: this one, the next, and the next one's weight (0 but
        in the last `fade` frames of a photo's turn, rising to 1 at the switch)."""
        photos = self.photos or (self.face,)
        turn, step = divmod(max(0, frame - self.enter), max(1, self.photo_frames))
        current, following = photos[turn % len(photos)], photos[(turn + 1) % len(photos)]
        fading = step - (self.photo_frames - self.fade) + 1
        weight = fading / (self.fade + 1) if fading > 0 and current != following else 0.0
        return current, following, weight

    def at(self, frame: int, frames: int) -> tuple[float, float, float, float] | None:
        """Centre x, y, side and angle at `frame`, or None outside [enter, leave)."""
        leave = frames if self.leave is None else self.leave
        if not self.enter <= frame < leave:
            return None
        t = (frame - self.enter) / max(1, leave - 1 - self.enter)
        x = self.start[0] + t * (self.end[0] - self.start[0])
        y = self.start[1] + t * (self.end[1] - self.start[1])
        angle = self.turn * np.sin(2 * np.pi * (frame - self.enter) / self.turn_period)
        return x, y, self.side * (1 + t * (self.grow - 1)), float(angle)


@dataclass(frozen=True)
class Occluder:
    """A bar (x, y, w, h in frame pixels) shown over the frames `first`..`last`."""

    box: tuple[int, int, int, int]
    first: int
    last: int


@dataclass
class VideoScript:
    """Everything that makes one video: size, frame rate, the faces' paths, the camera's pan
    (world pixels per frame) and zoom (total factor over the video), occluders, blurred
    frames, and the encoder's quality (x264 CRF)."""

    width: int = 640
    height: int = 480
    fps: int = 25
    frames: int = 250
    paths: list[FacePath] = field(default_factory=list)
    pan: tuple[float, float] = (0.0, 0.0)
    zoom: float = 1.0
    occluders: list[Occluder] = field(default_factory=list)
    blurred: frozenset[int] = frozenset()
    crf: int = 28
    seed: int = 0


@dataclass(frozen=True)
class TrueFace:
    """A face's truth in one frame: where it is (frame pixels), the share of its square seen,
    and whether that counts as seen (`VISIBLE_SHARE`)."""

    face: int
    placed: PlacedFace
    visible: bool
    share: float = 1.0


def render(script: VideoScript, crops: list[np.ndarray], path: Path) -> list[list[TrueFace]]:
    """Write the video to `path` (H.264 via PyAV) and return each frame's truth."""
    import av

    rng = np.random.default_rng(script.seed)
    world = background(rng, round(script.width * WORLD_MARGIN),
                       round(script.height * WORLD_MARGIN))
    faces = {photo: Image.fromarray(crops[photo]).convert("RGBA")
             for p in script.paths for photo in (p.photos or (p.face,))}
    truth: list[list[TrueFace]] = []
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(script.fps))
        stream.width, stream.height, stream.pix_fmt = script.width, script.height, "yuv420p"
        stream.options = {"crf": str(script.crf), "preset": "veryfast"}
        for frame_index in range(script.frames):
            image, frame_truth = _frame(script, world, faces, frame_index)
            truth.append(frame_truth)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return truth


def _camera(script: VideoScript, frame: int) -> tuple[float, float, float]:
    """The camera's top-left corner in world pixels and its scale (frame px per world px)."""
    t = frame / max(1, script.frames - 1)
    scale = 1 + t * (script.zoom - 1)
    left = script.width * CAMERA_START + script.pan[0] * frame
    top = script.height * CAMERA_START + script.pan[1] * frame
    return left, top, scale


def _frame(script: VideoScript, world: Image.Image, faces: dict[int, Image.Image],
           frame: int) -> tuple[np.ndarray, list[TrueFace]]:
    left, top, scale = _camera(script, frame)
    view = (left, top, left + script.width / scale, top + script.height / scale)
    canvas = world.resize((script.width, script.height), Image.Resampling.BILINEAR, box=view)
    drawn: list[tuple[FacePath, PlacedFace, np.ndarray]] = []
    for face_path in sorted(script.paths, key=lambda p: p.depth):
        where = face_path.at(frame, script.frames)
        if where is None:
            continue
        x, y, side, angle = where
        x, y = x + script.width * CAMERA_START, y + script.height * CAMERA_START  # world
        cx, cy, side = (x - left) * scale, (y - top) * scale, side * scale
        placed, mask = _paste(canvas, _looks(faces, face_path.look(frame)), cx, cy, side, angle)
        drawn.append((face_path, placed, mask))
    occluding = ImageDraw.Draw(canvas)
    hidden = np.zeros((script.height, script.width), bool)
    for occluder in script.occluders:
        if occluder.first <= frame <= occluder.last:
            x, y, w, h = occluder.box
            occluding.rectangle((x, y, x + w, y + h), fill=(90, 90, 90))
            hidden[max(0, y):y + h, max(0, x):x + w] = True
    if frame in script.blurred:
        canvas = canvas.filter(ImageFilter.GaussianBlur(2.5))
    truth = []
    for index, (face_path, placed, mask) in enumerate(drawn):
        nearer = np.zeros_like(hidden)
        for _, _, other in drawn[index + 1:]:
            nearer |= other
        seen = mask & ~hidden & ~nearer
        share = seen.sum() / max(1.0, placed.area)
        truth.append(TrueFace(face_path.face, placed, bool(share >= VISIBLE_SHARE),
                              float(share)))
    return np.asarray(canvas.convert("RGB")), truth


def _looks(faces: dict[int, Image.Image], look: tuple[int, int, float]) -> Image.Image:
    """The crop a person shows: one photo, or two cross-fading (the next at its size)."""
    current, following, weight = look
    if weight <= 0:
        return faces[current]
    return Image.blend(faces[current], faces[following].resize(faces[current].size), weight)


def _paste(canvas: Image.Image, face: Image.Image, cx: float, cy: float, side: float,
           angle: float) -> tuple[PlacedFace, np.ndarray]:
    """Paste `face` at centre (cx, cy), `side` px, turned by `angle`°; its square and the
    frame pixels it covers."""
    side_px = max(8, round(side))
    turned = face.resize((side_px, side_px), Image.Resampling.BILINEAR).rotate(
        angle, resample=Image.Resampling.BICUBIC, expand=True)
    corner = (round(cx - turned.width / 2), round(cy - turned.height / 2))
    canvas.paste(turned, corner, turned)
    mask = np.zeros((canvas.height, canvas.width), bool)
    alpha = np.asarray(turned.getchannel("A")) > 0
    x0, y0 = corner
    left, top = max(0, x0), max(0, y0)
    right = max(left, min(canvas.width, x0 + turned.width))
    bottom = max(top, min(canvas.height, y0 + turned.height))
    mask[top:bottom, left:right] = alpha[top - y0:bottom - y0, left - x0:right - x0]
    theta = np.radians(-angle)
    half = side_px / 2
    square = np.array([[-half, -half], [half, -half], [half, half], [-half, half]])
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    return PlacedFace(0, square @ rotation.T + (cx, cy)), mask


def random_script(rng: np.random.Generator, faces: list[int], seed: int,
                  frames: int = 250, photos: dict[int, list[int]] | None = None
                  ) -> VideoScript:
    """A video of 2–3 of `faces` with the hard cases mixed in: two faces crossing (one in
    front), a pan or a zoom, turning faces, an occluder passing over one face for 6–12
    frames, a few blurred frames, and a compression level between CRF 23 and 33.

    `photos`: face → the crops of that person; such a face shows them in a random order,
    each for 1–2.4 s (25–60 frames), cross-fading into the next over 5–10 frames."""
    width, height = 640, 480
    paths = []
    count = len(faces)
    for slot, face in enumerate(faces):
        own = (photos or {}).get(face, [])
        shown = tuple(int(i) for i in rng.permutation(own)) if len(own) > 1 else ()
        side = float(rng.uniform(70, 150))
        y = height * (0.3 + 0.4 * slot / max(1, count - 1)) + rng.uniform(-20, 20)
        if slot < 2:  # the first two cross: left to right and right to left, near one row
            y = height * 0.5 + (slot - 0.5) * rng.uniform(10, 60)
            xs = (width * 0.15, width * 0.85) if slot == 0 else (width * 0.85, width * 0.15)
        else:
            xs = tuple(rng.uniform(width * 0.2, width * 0.8, 2))
        paths.append(FacePath(
            face, (xs[0], y), (xs[1], y + rng.uniform(-40, 40)),
            side, grow=float(rng.uniform(0.8, 1.3)), turn=float(rng.uniform(5, 20)),
            turn_period=float(rng.uniform(40, 120)), depth=slot,
            enter=0 if slot < 2 else int(rng.integers(0, frames // 4)),
            leave=None if slot < 2 else int(rng.integers(frames * 3 // 4, frames + 1)),
            photos=shown, photo_frames=int(rng.integers(25, 61)), fade=int(rng.integers(5, 11))))
    moving = rng.random() < 0.5
    reach = 250 / frames  # the pan's whole course stays within the world
    pan = ((float(rng.uniform(-1.5, 1.5)) * reach, float(rng.uniform(-0.8, 0.8)) * reach)
           if moving else (0.0, 0.0))
    zoom = 1.0 if moving else float(rng.uniform(0.85, 1.25))
    hide = paths[int(rng.integers(0, count))]
    first = int(rng.integers(frames // 5, frames * 3 // 5))
    length = int(rng.integers(6, 13))
    occluder = _occluder_over(hide, first, frames, width, height)
    blurred = frozenset(int(f) for f in rng.choice(frames, size=frames // 25, replace=False))
    return VideoScript(width, height, 25, frames, paths, pan, zoom,
                       [Occluder(occluder, first, first + length)], blurred,
                       crf=int(rng.integers(23, 34)), seed=seed)


def _occluder_over(face_path: FacePath, frame: int, frames: int, width: int, height: int
                   ) -> tuple[int, int, int, int]:
    """A bar over where `face_path` is at `frame` (in frame pixels, without camera motion:
    a little off when the camera moves, as occluders are)."""
    where = face_path.at(min(max(frame, face_path.enter), frames - 1), frames)
    if where is None:
        return (0, 0, 1, 1)
    x, y, side, _ = where
    return (round(x - side), round(y - side), round(2 * side), round(2 * side))


@dataclass
class TrackingScore:
    """Counts over the videos scored so far (see `score_video`)."""

    face_frames: int = 0
    matched_frames: int = 0
    right_track_frames: int = 0
    switches: int = 0
    tracks: int = 0
    gender_right: int = 0
    gender_changes: list[int] = field(default_factory=list)
    frame_flips: list[int] = field(default_factory=list)
    track_age_errors: list[float] = field(default_factory=list)
    frame_age_errors: list[float] = field(default_factory=list)
    interval_hits: list[bool] = field(default_factory=list)
    frame_interval_hits: list[bool] = field(default_factory=list)
    rule_errors: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    rule_hits: dict[str, list[bool]] = field(default_factory=lambda: defaultdict(list))
    margin_changes: dict[float, list[int]] = field(default_factory=lambda: defaultdict(list))
    margin_right: dict[float, list[bool]] = field(default_factory=lambda: defaultdict(list))
    margin_final: dict[float, list[bool]] = field(default_factory=lambda: defaultdict(list))
    misses: Counter = field(default_factory=Counter)
    wrong: Counter = field(default_factory=Counter)

    def figures(self) -> dict:
        def mean(values: list) -> float | None:
            return float(np.mean(values)) if values else None

        track_mae, frame_mae = mean(self.track_age_errors), mean(self.frame_age_errors)
        return {
            "true_face_frames": self.face_frames,
            "detected_share": self.matched_frames / max(1, self.face_frames),
            "right_track_share": self.right_track_frames / max(1, self.face_frames),
            "switches_per_100_track_frames": 100 * self.switches / max(1, self.matched_frames),
            "faces": self.tracks,
            "track_gender_accuracy": self.gender_right / max(1, self.tracks),
            "track_age_mae": track_mae,
            "frame_age_mae": frame_mae,
            "age_mae_reduction": (1 - track_mae / frame_mae) if track_mae and frame_mae
            else None,
            "track_interval_coverage": mean(self.interval_hits),
            "frame_interval_coverage": mean(self.frame_interval_hits),
            "shown_gender_changes_per_track": mean(self.gender_changes),
            "max_shown_gender_changes": max(self.gender_changes, default=None),
            "frame_gender_flips_per_track": mean(self.frame_flips),
            **{f"rule {name}: age MAE": mean(errors) for name, errors in self.rule_errors.items()},
            **{f"rule {name}: interval coverage": mean(hits)
               for name, hits in self.rule_hits.items()},
            **{f"margin {margin}: {name}": value for margin in sorted(self.margin_changes)
               for name, value in (
                   ("shown gender changes per track", mean(self.margin_changes[margin])),
                   ("most shown gender changes", max(self.margin_changes[margin])),
                   ("face-frames showing the right gender", mean(self.margin_right[margin])),
                   ("final shown gender right", mean(self.margin_final[margin])))},
            **{f"missed face-frames: {cause}": count / max(1, self.face_frames)
               for cause, count in sorted(self.misses.items())},
            **{f"wrong-track face-frames: {cause}": count / max(1, self.face_frames)
               for cause, count in sorted(self.wrong.items())},
        }


def match_rows(rows: list[dict], truth: list[TrueFace]) -> dict[int, dict]:
    """Face → its row: pairs of a face and a row whose box centre lies in the face's square,
    taken nearest centres first, each face and each row once (where two faces overlap, a
    detection goes to the face it is centred on, not to the first one listed)."""
    pairs = []
    for true in truth:
        centre = true.placed.corners.mean(axis=0)
        for index, row in enumerate(rows):
            if row.get("x") is None:
                continue
            point = np.array([row["x"] + row["w"] / 2, row["y"] + row["h"] / 2])
            if true.placed.contains(point):
                pairs.append((float(np.linalg.norm(point - centre)), true.face, index))
    matched: dict[int, dict] = {}
    taken: set[int] = set()
    for _, face, index in sorted(pairs):
        if face not in matched and index not in taken:
            matched[face] = rows[index]
            taken.add(index)
    return matched


def score_video(score: TrackingScore, frames: list[list[dict]], truth: list[list[TrueFace]],
                summary: list[dict], ages: dict[int, float], genders: dict[int, str]) -> None:
    """Add one video: `frames` its rows per frame (tracked), `truth` per frame, `summary` one
    row per track; `ages` and `genders` the true labels by face (an age may be NaN)."""
    seen: dict[int, list[dict]] = defaultdict(list)
    for rows, frame_truth in zip(frames, truth, strict=True):
        matched = match_rows(rows, frame_truth)
        for true in frame_truth:
            if not true.visible:
                continue
            score.face_frames += 1
            if true.face in matched:
                seen[true.face].append(matched[true.face])
            else:
                score.misses[_miss_cause(true)] += 1
    by_track = {row["track"]: row for row in summary}
    mains = {face: Counter(row["track"] for row in rows).most_common(1)[0][0]
             for face, rows in seen.items()}
    for face, rows in seen.items():
        tracks = [row["track"] for row in rows]
        main = mains[face]
        score.matched_frames += len(rows)
        score.right_track_frames += sum(track == main for track in tracks)
        score.switches += sum(a != b for a, b in itertools.pairwise(tracks))
        _count_wrong(score, tracks, main, set(mains.values()) - {main})
        final = by_track[main]
        score.tracks += 1
        score.gender_right += final["gender"] == genders[face]
        score.gender_changes.append(final["gender_changes"])
        _score_margins(score, [row for row in rows if row["track"] == main], genders[face])
        score.frame_flips.append(sum(a["gender"] != b["gender"]
                                     for a, b in itertools.pairwise(rows)))
        age = ages.get(face, float("nan"))
        if np.isfinite(age):
            score.track_age_errors.append(abs(final["age"] - age))
            score.frame_age_errors.append(float(np.mean([abs(r["age"] - age) for r in rows])))
            score.interval_hits.append(final["age_low"] <= age <= final["age_high"])
            score.frame_interval_hits.extend(r["age_low"] <= age <= r["age_high"] for r in rows)
            _score_rules(score, [row for row in rows if row["track"] == main], age)
    for face in {true.face for frame_truth in truth for true in frame_truth if true.visible}:
        if face not in seen:
            score.tracks += 1  # never detected: its track's answer is missing, so wrong


def _miss_cause(true: TrueFace) -> str:
    """Why a seen face may have been missed, for the benchmark's breakdown."""
    side = float(np.sqrt(true.placed.area))
    if side < SMALL_FACE:
        return f"side under {SMALL_FACE} px"
    return "partly hidden (60-90 % seen)" if true.share < 0.9 else "in full view"


SMALL_FACE = 48
"""Faces whose square is smaller than this (pixels a side) are counted apart among misses."""


def _count_wrong(score: TrackingScore, tracks: list[int], main: int, others: set[int]) -> None:
    """Where a face's frames off its main track went: before the main track began (start-up),
    to another face's main track (a swap), or to a number of its own that was never linked
    back (a broken track)."""
    started = tracks.index(main)
    for index, track in enumerate(tracks):
        if track == main:
            continue
        cause = ("before its main track began" if index < started
                 else "on another face's main track" if track in others
                 else "on a broken-off track")
        score.wrong[cause] += 1


SWITCH_MARGINS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75)
"""The hysteresis margins (`combine.steady_gender`) the benchmark compares."""


def _score_margins(score: TrackingScore, rows: list[dict], gender: str) -> None:
    """Replay a face's main track's frames through the combining rule and each margin: how
    often the shown gender changes, how many frames show the right one, the final one."""
    from agegender.tracking.combine import gender_logit, prob_female_of, steady_gender

    logits = np.cumsum([gender_logit(prob_female_of(row["gender"], row["gender_prob"]))
                        for row in rows])
    prob_female = 1.0 / (1.0 + np.exp(-logits / np.arange(1, len(rows) + 1)))
    for margin in SWITCH_MARGINS:
        shown, changes, right = None, 0, 0
        for prob in prob_female:
            now = steady_gender(shown, float(prob), margin)
            changes += shown is not None and now != shown
            right += now == gender
            shown = now
        score.margin_changes[margin].append(changes)
        score.margin_right[margin].append(right / max(1, len(rows)))
        score.margin_final[margin].append(shown == gender)


RULES = {
    "mixture": lambda log_probs, weights: np.log(
        weights @ np.exp(log_probs) / weights.sum() + 1e-300),
    "geometric mean": lambda log_probs, weights: weights @ log_probs / weights.sum(),
    "product": lambda log_probs, weights: weights @ log_probs,
}
"""Ways to combine a track's age distributions (log-probabilities, one row per frame) that
the benchmark compares: the mean of the distributions (`agegender.tracking.combine`'s rule),
the normalised geometric mean, and the product."""


def _score_rules(score: TrackingScore, rows: list[dict], age: float) -> None:
    """Age error and interval hit of each combining rule and weighting, on the rows of a
    face's main track that carry their distribution (`_log_probs`, set by the benchmark)."""
    from agegender.tracking.combine import INTERVAL_TAILS, quantile

    rows = [row for row in rows if "_log_probs" in row]
    if not rows:
        return
    log_probs = np.stack([row["_log_probs"] for row in rows]).astype(np.float64)
    weightings = {"": np.ones(len(rows)),
                  ", weighted by face area": np.array([row["w"] * row["h"] for row in rows]),
                  ", weighted by detection score": np.array([row["det_score"] for row in rows])}
    for rule, combine in RULES.items():
        for weighting, weights in weightings.items():
            if rule != "mixture" and weighting:
                continue
            combined = combine(log_probs, weights)
            probs = np.exp(combined - combined.max())
            cdf = np.cumsum(probs / probs.sum())
            low, median, high = (quantile(cdf, q) for q in (INTERVAL_TAILS[0], 0.5,
                                                             INTERVAL_TAILS[1]))
            score.rule_errors[rule + weighting].append(abs(median - age))
            score.rule_hits[rule + weighting].append(low <= age <= high)
    score.rule_errors["median of the frames' ages"].append(
        abs(float(np.median([row["age"] for row in rows])) - age))
