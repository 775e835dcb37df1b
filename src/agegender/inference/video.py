"""Video input: every N-th frame of a video file as an RGB image, with its time.

Decoding uses PyAV (FFmpeg's libraries in a wheel), an optional dependency:
`pip install "agegender[video]"`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg"})


class VideoReadError(Exception):
    """A video that cannot be opened or decoded; `reason` is short enough for an output row."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


@dataclass(frozen=True)
class Frame:
    index: int
    time: float
    image: np.ndarray


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def iter_frames(path: Path, every: int = 1) -> Iterator[Frame]:
    """Frames 0, every, 2·every, … of the first video stream; time in seconds from the start.

    Raises VideoReadError (before or between frames) for a missing, corrupt or truncated file.
    """
    if every < 1:
        raise ValueError("every must be at least 1")
    try:
        import av
    except ImportError:
        raise VideoReadError(str(path), 'video input needs PyAV: pip install "agegender[video]"'
                             ) from None
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoReadError(str(path), "no video stream")
            stream = container.streams.video[0]
            for index, frame in enumerate(container.decode(stream)):
                if index % every == 0:
                    time = float(frame.time) if frame.time is not None else index / float(
                        stream.average_rate or 1)
                    yield Frame(index, round(time, 3), frame.to_ndarray(format="rgb24"))
    except av.error.FFmpegError as error:
        raise VideoReadError(str(path), f"unreadable video ({error.strerror or error})"
                             ) from error
