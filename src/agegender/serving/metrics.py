"""Prometheus metrics of one server (its own registry, so several apps in a process stay apart)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class ServerMetrics:
    """Requests by route and status, latency, faces found, queue depth, faces per model call."""

    def __init__(self, queue_depth: Callable[[], float]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("agegender_requests", "HTTP requests by route and status code",
                                ["route", "status"], registry=self.registry)
        self.latency = Histogram("agegender_request_seconds", "Time to answer a request",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.faces = Counter("agegender_faces", "Faces found in uploaded images",
                             registry=self.registry)
        self.queue_depth = Gauge("agegender_queue_depth",
                                 "Prediction requests in progress or waiting",
                                 registry=self.registry)
        self.queue_depth.set_function(queue_depth)
        self.model_batch = Histogram("agegender_model_batch_faces", "Faces per model call",
                                     buckets=BATCH_BUCKETS, registry=self.registry)

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
