"""The work behind the routes: admission, decoding and detection in a bounded pool, the model
through the micro-batcher, results in the CLI's numbers, errors as `ApiError`s."""

from __future__ import annotations

import asyncio
import base64
import io
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from agegender.faces.detector import DetectorConfig
from agegender.imageio import ImageReadError
from agegender.inference.annotate import draw_faces
from agegender.inference.backends import load_backend
from agegender.inference.output import face_json
from agegender.inference.predictor import (
    FaceFilter,
    FaceResult,
    FoundFace,
    Predictor,
    bundled_model_path,
    face_rows,
)
from agegender.precision import model_file, resolve_precision
from agegender.serving.batcher import MicroBatcher
from agegender.serving.errors import ApiError, image_error
from agegender.serving.metrics import ServerMetrics
from agegender.serving.settings import ServeSettings

T = TypeVar("T")


@dataclass
class Answer:
    """One image's answer: the JSON body, and the annotated PNG when it was asked for."""

    body: dict
    annotated_png: bytes | None = None


@dataclass
class _Analysed:
    image: np.ndarray | None
    """The decoded image when it is drawn on; None otherwise (decoded at a reduced scale)."""
    size: tuple[int, int]
    faces: list[FoundFace]
    predictions: Future | None


class InferenceService:
    """Loads the predictor once, then answers predictions for any number of event loops.

    Everything shared is thread-based (the pool, the batcher, the counters), so the service
    does not belong to one asyncio loop.
    """

    def __init__(self, settings: ServeSettings, predictor: Predictor | None = None) -> None:
        """`predictor`: one already loaded (shared by tests); default: built by `load` from
        `settings.model`."""
        self.settings = settings
        self.model_path = Path(settings.model) if settings.model else bundled_model_path()
        self.metrics = ServerMetrics(queue_depth=lambda: self._admitted)
        self.predictor = predictor
        self._pool = ThreadPoolExecutor(settings.workers, thread_name_prefix="agegender-detect")
        self._batcher: MicroBatcher | None = None
        self._lock = threading.Lock()
        self._admitted = 0
        self._detecting = 0
        self._loaded = threading.Event()

    @property
    def ready(self) -> bool:
        return self._loaded.is_set()

    def load(self) -> None:
        """Load the model and the detector (once; later calls return at once)."""
        with self._lock:
            if self.ready:
                return
            if self.predictor is None:
                self.predictor = self._build_predictor()
            self._batcher = MicroBatcher(
                self.predictor.predict_crops, self.settings.max_batch,
                self.settings.batch_wait_ms / 1000, expecting_more=lambda: self._detecting > 0,
                on_batch=self.metrics.model_batch.observe)
            self._loaded.set()

    def _build_predictor(self) -> Predictor:
        """The CLI's predictor, its onnxruntime threads sized for serving: the detector on one
        thread per worker (each worker detects on its own core), the model on
        `model_threads`."""
        precision = resolve_precision(self.model_path, self.settings.precision)
        backend = load_backend(model_file(self.model_path, precision), spinning=False,
                               threads=self.settings.model_threads)
        return Predictor(backend, batch_size=self.settings.max_batch, detector_threads=1,
                         precision=precision,
                         detector_config=DetectorConfig(search=self.settings.detector))

    def close(self) -> None:
        """Stop the pool first: a worker still analysing an image hands its faces to the
        batcher, which must be running until then."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._batcher is not None:
            self._batcher.close()

    async def predict(self, data: bytes, annotate: bool = False,
                      faces: FaceFilter | None = None) -> Answer:
        """The faces in one uploaded image that `faces` keeps (`ApiError` for anything the
        client must fix)."""
        return await self._admit(lambda: self._predict(data, annotate, faces))

    async def predict_many(self, uploads: list[tuple[str, bytes]],
                           faces: FaceFilter | None = None) -> list[dict]:
        """One entry per upload, in order: its prediction or its error (the others still
        answer)."""
        async def one(name: str, data: bytes) -> dict:
            try:
                return {"file": name, **(await self._predict(data, False, faces)).body}
            except ApiError as error:
                return {"file": name, **error.body()}

        return await self._admit(
            lambda: asyncio.gather(*(one(name, data) for name, data in uploads)))

    def require_ready(self) -> None:
        """503 with Retry-After until the models are loaded."""
        if not self.ready:
            raise ApiError(503, "not_ready", "the models are still loading",
                           {"Retry-After": str(self.settings.retry_after_s)})

    async def _admit(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run `work()` within the request timeout, if the queue has room (else 503). The slot is
        held until the work really ends, also past a timeout, so the queue depth stays true."""
        self.require_ready()
        with self._lock:
            if self._admitted >= self.settings.max_queue:
                full = True
            else:
                full, self._admitted = False, self._admitted + 1
        if full:
            raise ApiError(503, "queue_full", f"the server is busy ({self.settings.max_queue} "
                           "requests in progress); retry later",
                           {"Retry-After": str(self.settings.retry_after_s)})
        task = asyncio.ensure_future(work())
        task.add_done_callback(self._release)
        try:
            return await asyncio.wait_for(asyncio.shield(task), self.settings.request_timeout_s)
        except TimeoutError:
            raise ApiError(504, "timeout", "no answer within "
                           f"{self.settings.request_timeout_s:g} s") from None

    def _release(self, task: asyncio.Future) -> None:
        with self._lock:
            self._admitted -= 1
        if not task.cancelled():
            task.exception()  # retrieved: a timed-out request's late error is not logged

    async def _predict(self, data: bytes, annotate: bool, faces: FaceFilter | None) -> Answer:
        loop = asyncio.get_running_loop()
        self._count_detecting(+1)  # `_analyse` counts it off once its faces are found
        analysed = await loop.run_in_executor(self._pool, self._analyse, data, faces,
                                              annotate)
        predictions = (await asyncio.wrap_future(analysed.predictions)
                       if analysed.predictions is not None else [])
        rows = face_rows(analysed.faces, predictions, file="")
        self.metrics.faces.inc(len(rows))
        width, height = analysed.size
        body = {"width": width, "height": height,
                "faces": [face_json(row.to_dict()) for row in rows]}
        if not annotate:
            return Answer(body)
        png = await loop.run_in_executor(self._pool, _annotated_png, analysed.image, rows)
        return Answer(body, png)

    def _count_detecting(self, change: int) -> None:
        with self._lock:
            self._detecting += change

    def _analyse(self, data: bytes, keep: FaceFilter | None, annotate: bool) -> _Analysed:
        """Decode (content sniffed, pixel cap) and find the faces `keep` keeps (default: the
        predictor's filter); their crops go to the batcher from this thread, so the model call
        can start before the loop sees them."""
        assert self.predictor is not None and self._batcher is not None
        try:
            faces, image, size = self.predictor.faces_in_file(data, "upload", keep_image=annotate)
            if keep is not None:
                faces = keep.apply(faces)
        except ImageReadError as error:
            raise image_error(error) from None
        finally:
            self._count_detecting(-1)  # this request now waits on the model, not the detector
        predictions = (self._batcher.submit(np.stack([face.crop for face in faces]))
                       if faces else None)
        return _Analysed(image, size, faces, predictions)


def _annotated_png(image: np.ndarray, rows: list[FaceResult]) -> bytes:
    buffer = io.BytesIO()
    draw_faces(image, rows).save(buffer, format="PNG")
    return buffer.getvalue()


def png_data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
