"""Micro-batching: the faces of concurrent requests go through the model in one call."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np


@dataclass
class _Request:
    crops: np.ndarray
    future: Future = field(default_factory=Future)


class MicroBatcher:
    """Runs `predict` (N crops → N results) on its own thread over the crops of many callers.

    A call takes what is queued, up to `max_batch` crops; while `expecting_more()` says other
    requests are still on their way (decoding, detecting), it waits up to `max_wait_s` for
    them, so one model call serves several requests. Alone, a request never waits. Callers get
    a `concurrent.futures.Future`, which any event loop can await (`asyncio.wrap_future`).
    """

    def __init__(self, predict: Callable[[np.ndarray], list], max_batch: int, max_wait_s: float,
                 expecting_more: Callable[[], bool] = lambda: False,
                 on_batch: Callable[[int], None] = lambda size: None) -> None:
        self._predict = predict
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._expecting_more = expecting_more
        self._on_batch = on_batch
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="agegender-model", daemon=True)
        self._thread.start()

    def submit(self, crops: np.ndarray) -> Future:
        """A future of `predict(crops)`, computed together with other callers' crops."""
        request = _Request(crops)
        self._queue.put(request)
        return request.future

    def close(self) -> None:
        """Finish the queued calls, then stop the thread."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (first := self._queue.get()) is not None:
            batch, stop = self._gather(first)
            self._call(batch)
            if stop:
                return

    def _gather(self, first: _Request) -> tuple[list[_Request], bool]:
        """`first` and what joins it within the wait; True when `close` was asked."""
        batch, size = [first], len(first.crops)
        deadline = time.monotonic() + self._max_wait_s
        while size < self._max_batch:
            wait = deadline - time.monotonic() if self._expecting_more() else 0.0
            try:
                request = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if request is None:
                return batch, True
            batch.append(request)
            size += len(request.crops)
        return batch, False

    def _call(self, batch: list[_Request]) -> None:
        # A caller that gave up (its request timed out, the server is stopping) cancelled its
        # future: its faces are not run, and setting a result on it would kill this thread.
        batch = [request for request in batch if request.future.set_running_or_notify_cancel()]
        if not batch:
            return
        try:
            results = self._predict(np.concatenate([request.crops for request in batch]))
        except Exception as error:  # every caller hears of the failure; the thread lives on
            for request in batch:
                request.future.set_exception(error)
            return
        self._on_batch(len(results))
        start = 0
        for request in batch:
            request.future.set_result(results[start:start + len(request.crops)])
            start += len(request.crops)
