"""`--annotate out.mp4`: a video's frames with every face's box in its track's colour and the
track's answer as the label, encoded as H.264 through PyAV at the input's frame rate."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from types import TracebackType

import numpy as np

from agegender.inference.annotate import Drawn, draw_boxes

TRACK_COLOURS = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
                 (70, 190, 190), (240, 50, 230), (128, 128, 0), (0, 128, 128), (170, 110, 40),
                 (128, 0, 0), (0, 0, 128)]
"""Distinct colours (Sasha Trubetskoy's list, the darker ones, so white text reads on them);
track n gets colour n modulo their number, the same in every frame."""


def track_label(row: dict) -> str:
    """`#3 F 34 (28-41) 0.97`: the track's number, then its answer so far, in ASCII."""
    return (f"#{row['track']} {row['track_gender'][0].upper()} {row['track_age']:.0f} "
            f"({row['track_age_low']:.0f}-{row['track_age_high']:.0f}) "
            f"{row['track_gender_prob']:.2f}")


def tracked_boxes(rows: list[dict]) -> list[Drawn]:
    """What to draw for a frame's tracked rows (`TrackedSource.add`)."""
    return [((row["x"], row["y"], row["w"], row["h"]), track_label(row),
             TRACK_COLOURS[(row["track"] - 1) % len(TRACK_COLOURS)])
            for row in rows if row.get("track") is not None]


class VideoAnnotator:
    """Context manager writing annotated frames to an H.264 file (yuv420p, so every player
    reads it); the frame size is the first frame's, rounded down to even numbers as the
    encoder needs."""

    def __init__(self, path: Path, fps: float | Fraction | None) -> None:
        self.path = path
        self.fps = Fraction(fps).limit_denominator(1001) if fps else Fraction(25)
        self._container = None
        self._stream = None

    def __enter__(self) -> VideoAnnotator:
        import av

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self.path), mode="w")
        return self

    def write(self, image: np.ndarray, rows: list[dict]) -> None:
        """Draw `rows` (a frame's tracked rows) on `image` and encode it."""
        import av

        if self._stream is None:
            height, width = image.shape[:2]
            self._stream = self._container.add_stream("libx264", rate=self.fps)
            self._stream.width, self._stream.height = width - width % 2, height - height % 2
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"crf": "23", "preset": "veryfast"}
        drawn = np.asarray(draw_boxes(image, tracked_boxes(rows)))
        drawn = drawn[:self._stream.height, :self._stream.width]
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(drawn), format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._stream is not None:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        self._container.close()
