"""The server's configuration, fixed at start-up (a request can change none of it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agegender.faces.search import DEFAULT_SEARCH, check_search
from agegender.limits import check
from agegender.onnx_session import available_cores
from agegender.precision import check_precision

CHECKED = ("workers", "model_threads", "max_batch", "batch_wait_ms", "max_queue",
           "retry_after_s", "max_upload_bytes", "max_batch_images", "request_timeout_s")
"""The fields with a range (`agegender.limits.LIMITS`): a server never starts with one out of
it, so it never answers 5xx for a setting."""


@dataclass(frozen=True)
class ServeSettings:
    """Limits and sizes of `agegender serve`.

    Threads are sized for the machine: `workers` threads decode and detect, each running the
    detector on one onnxruntime thread of its own, and one more thread runs the model with
    `model_threads` onnxruntime threads; so a loaded server keeps about `workers` +
    `model_threads` threads busy instead of every session spreading over all cores at once.
    """

    model: Path | None = None
    """The model (.onnx or .pt); None: the bundled one. Never taken from a request."""
    workers: int = available_cores()
    """Threads that decode, detect and align (and draw annotated images)."""
    model_threads: int = 1
    """onnxruntime intra-op threads of the age/gender model."""
    max_batch: int = 32
    """Faces per model call: faces of concurrent requests share a call."""
    batch_wait_ms: float = 5.0
    """How long a model call waits for more faces while other requests are still detecting."""
    max_queue: int = 64
    """Requests in progress (waiting or running) before a new one gets 503 with Retry-After."""
    retry_after_s: int = 1
    """Seconds the 503 answer asks a client to wait."""
    max_upload_bytes: int = 20 * 1024 * 1024
    """Largest request body; a larger one gets 413."""
    max_batch_images: int = 16
    """Most images in one `/v1/predict/batch` request."""
    request_timeout_s: float = 30.0
    """A request not answered in this time gets 504."""
    cors_origins: tuple[str, ...] = ()
    """Origins allowed to call the API from a browser (CORS); empty: CORS off."""
    precision: str | None = None
    """"int8" or "fp32" (`agegender.precision`); None: the default precision."""
    detector: str = DEFAULT_SEARCH
    """The network that searches images for faces (`agegender.faces.search`)."""

    def __post_init__(self) -> None:
        for name in CHECKED:
            check(name, getattr(self, name))
        if self.precision is not None:
            check_precision(self.precision)
        check_search(self.detector)


@dataclass(frozen=True)
class LiveSettings:
    """The live mode's bounds (`agegender serve --live-*`)."""

    max_connections: int = 4
    idle_timeout_s: float = 30.0
    frames_in_flight: int = 2
    max_frame_bytes: int = 4 * 1024 * 1024

    def __post_init__(self) -> None:
        check("live_connections", self.max_connections)
        check("live_idle", self.idle_timeout_s)
        check("live_in_flight", self.frames_in_flight)
        check("max_upload_bytes", self.max_frame_bytes)
