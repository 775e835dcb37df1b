"""Video input: every N-th frame of a video file or a live source as an RGB image, with its
time.

Decoding uses PyAV (FFmpeg's libraries in a wheel), an optional dependency:
`pip install "agegender[video]"`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
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


LIVE_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://",
                "srt://")
"""Network streams FFmpeg reads, taken as live sources."""


def is_live_source(argument: str) -> bool:
    """A network stream URL (`LIVE_SCHEMES`) or a webcam device (`/dev/video…`)."""
    return argument.lower().startswith(LIVE_SCHEMES) or argument.startswith("/dev/video")


def frame_rate(path: Path | str) -> Fraction | None:
    """The first video stream's average frame rate, None when the file does not say."""
    import av

    with av.open(str(path)) as container:
        rate = container.streams.video[0].average_rate if container.streams.video else None
    return Fraction(rate) if rate else None


@dataclass(frozen=True)
class StreamEnd:
    """Why a live source stopped: `broken` (with FFmpeg's reason) or its end."""

    broken: bool
    reason: str = ""


class LiveSource:
    """Frames of a live source (webcam, network stream) read by a thread of their own, as they
    arrive: at most `buffer` wait to be processed; when another arrives the oldest waiting
    one is dropped (`dropped` counts them), so a slow consumer falls behind by at most
    `buffer` frames and memory stays bounded.

    A source that delivers faster than its own clock (a file served over HTTP) is read at
    the pace of its timestamps, as a camera would send it. Use as a context manager; `frames`
    yields until the source ends or breaks (then `end` says which) or `stop` is called.
    """

    def __init__(self, url: str, every: int = 1, buffer: int = 2) -> None:
        if every < 1 or buffer < 1:
            raise ValueError("every and buffer must be at least 1")
        self.url, self.every, self.buffer = url, every, buffer
        self.dropped = 0
        self.end: StreamEnd | None = None
        self.rate: Fraction | None = None
        self._waiting: deque[Frame] = deque()
        self._ready = threading.Condition()
        self._stopping = threading.Event()
        self._opened = threading.Event()
        self._thread = threading.Thread(target=self._read, name=f"live {url}", daemon=True)

    def __enter__(self) -> LiveSource:
        self._thread.start()
        self._opened.wait()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop reading (the reader thread ends at its next frame)."""
        self._stopping.set()
        with self._ready:
            self._ready.notify_all()

    def frames(self, timeout: float = 0.5) -> Iterator[Frame]:
        """The frames as they come (oldest waiting first), until the end or `stop`."""
        while True:
            with self._ready:
                while not self._waiting and self.end is None and not self._stopping.is_set():
                    self._ready.wait(timeout)
                if self._waiting:
                    frame = self._waiting.popleft()
                else:
                    return
            yield frame

    def _read(self) -> None:
        try:
            import av
        except ImportError:
            self._finish(StreamEnd(True, 'live input needs PyAV: pip install "agegender[video]"'))
            return
        try:
            options = {"format": "v4l2"} if self.url.startswith("/dev/video") else {}
            with av.open(self.url, timeout=10.0, **options) as container:
                if not container.streams.video:
                    raise VideoReadError(self.url, "no video stream")
                stream = container.streams.video[0]
                self.rate = Fraction(stream.average_rate) if stream.average_rate else None
                self._opened.set()
                self._decode(container, stream)
            self._finish(StreamEnd(False))
        except (av.error.FFmpegError, OSError) as error:
            reason = getattr(error, "strerror", None) or str(error)
            self._finish(StreamEnd(True, f"stream broke ({reason})"))
        except VideoReadError as error:
            self._finish(StreamEnd(True, error.reason))

    def _decode(self, container, stream) -> None:
        started, first_time = time.monotonic(), None
        for index, frame in enumerate(container.decode(stream)):
            if self._stopping.is_set():
                return
            if index % self.every:
                continue
            moment = float(frame.time) if frame.time is not None else index / float(
                stream.average_rate or 25)
            first_time = moment if first_time is None else first_time
            ahead = (moment - first_time) - (time.monotonic() - started)
            if ahead > 0:
                self._stopping.wait(ahead)
            image = frame.to_ndarray(format="rgb24")  # not under the lock the reader waits on
            with self._ready:
                if len(self._waiting) >= self.buffer:
                    self._waiting.popleft()
                    self.dropped += 1
                self._waiting.append(Frame(index, round(moment, 3), image))
                self._ready.notify()

    def _finish(self, end: StreamEnd) -> None:
        with self._ready:
            self.end = end
            self._ready.notify_all()
        self._opened.set()
