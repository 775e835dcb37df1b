"""`/v1/live`: the page's live mode. Frames come over a WebSocket, the server tracks faces per
connection (`agegender.tracking`) and answers each frame with tracked boxes and each track's
steady answer.

Bounded: at most `max_connections` connections (one more is accepted, told why, and closed
with code 1013 "try again later"); a connection that sends nothing for `idle_timeout_s` is
closed (1001); at most `frames_in_flight` frames of a connection wait or are being analysed,
and a frame beyond that is dropped at once (answered `{"dropped": n}`), never queued. A
closed connection's tracks are freed with it.
"""

from __future__ import annotations

import asyncio
import logging
import threading

import numpy as np
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from agegender.imageio import ImageReadError, decode_image
from agegender.inference.output import rounded
from agegender.inference.predictor import NO_FACE, FaceResult, ImageResult, face_rows
from agegender.serving.service import InferenceService
from agegender.serving.settings import LiveSettings
from agegender.tracking.annotate import track_label

log = logging.getLogger(__name__)

TRY_AGAIN_LATER, GOING_AWAY, TOO_BIG = 1013, 1001, 1009


class LiveConnections:
    """The open live connections: a count under a lock, so the bound holds across threads."""

    def __init__(self, settings: LiveSettings) -> None:
        self.settings = settings
        self.open = 0
        self._lock = threading.Lock()

    def enter(self) -> bool:
        with self._lock:
            if self.open >= self.settings.max_connections:
                return False
            self.open += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.open -= 1


def add_live_route(app: FastAPI, service: InferenceService, settings: LiveSettings) -> None:
    connections = LiveConnections(settings)
    app.state.live_connections = connections

    @app.websocket("/v1/live")
    async def live(websocket: WebSocket) -> None:
        """Send JPEG or PNG frames as binary messages; each is answered in order with
        `{"frame": n, "width", "height", "faces": [...]}` (each face with its `track` and the
        track's answer so far) or `{"dropped": n}`; errors as `{"error": {...}}`."""
        await websocket.accept()
        if not service.ready:
            await websocket.send_json({"error": {"code": "not_ready",
                                                 "message": "the models are still loading"}})
            await websocket.close(TRY_AGAIN_LATER)
            return
        if not connections.enter():
            await websocket.send_json({"error": {
                "code": "too_many_connections",
                "message": f"{settings.max_connections} live connections are open; retry "
                           "later"}})
            await websocket.close(TRY_AGAIN_LATER)
            return
        try:
            await _serve_connection(websocket, service, settings)
        finally:
            connections.leave()


async def _serve_connection(websocket: WebSocket, service: InferenceService,
                            settings: LiveSettings) -> None:
    """Receive frames until the client leaves or idles; one task analyses them in order."""
    from agegender.tracking.session import TrackedSource

    source = TrackedSource("live")
    waiting: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
    in_flight = 0
    sending = asyncio.Lock()

    async def analyse_in_order() -> None:
        nonlocal in_flight
        while True:
            number, data = await waiting.get()
            try:
                answer = await asyncio.to_thread(_answer, service, source, number, data)
            except Exception:  # one frame's failure is answered; the connection goes on
                log.exception("live frame %d failed", number)
                answer = {"frame": number, "error": {"code": "internal",
                                                     "message": "internal error"}}
            finally:
                in_flight -= 1
            async with sending:
                await websocket.send_json(answer)

    worker = asyncio.create_task(analyse_in_order())
    number = 0
    try:
        while (data := await _next_frame(websocket, settings)) is not None:
            if in_flight >= settings.frames_in_flight:
                async with sending:
                    await websocket.send_json({"dropped": number})
            else:
                in_flight += 1
                waiting.put_nowait((number, data))
            number += 1
    except WebSocketDisconnect:
        return
    finally:
        worker.cancel()


async def _next_frame(websocket: WebSocket, settings: LiveSettings) -> bytes | None:
    """The next binary message; None once the client has left, idled (closed 1001) or sent
    a frame over the size bound (closed 1009). Text messages (a ping) only keep it alive."""
    while True:
        try:
            message = await asyncio.wait_for(websocket.receive(), settings.idle_timeout_s)
        except TimeoutError:
            await websocket.close(GOING_AWAY, "idle")
            return None
        if message["type"] == "websocket.disconnect":
            return None
        data = message.get("bytes")
        if data is None:
            continue
        if len(data) > settings.max_frame_bytes:
            await websocket.close(TOO_BIG, "frame too large")
            return None
        return data


def _answer(service: InferenceService, source, number: int, data: bytes) -> dict:
    """One frame's answer: its faces, tracked (runs in a worker thread, one frame of a
    connection at a time)."""
    predictor = service.predictor
    try:
        image = decode_image(data, source="frame")
    except ImageReadError as error:
        return {"frame": number, "error": {"code": "unreadable_image", "message": error.reason}}
    faces = predictor.find_faces(image)
    where = {"file": "live", "frame": number, "time": None}
    if faces:
        predictions, log_probs, appearance = predictor.predict_crops_with_distribution(
            np.stack([face.crop for face in faces]))
        rows = face_rows(faces, predictions, **where)
    else:
        rows, log_probs, appearance = [FaceResult(**where, error=NO_FACE)], None, None
    tracked = source.add(ImageResult("live", rows, frame=number, age_log_probs=log_probs,
                                     appearance=appearance))
    height, width = image.shape[:2]
    return {"frame": number, "width": width, "height": height,
            "faces": [_tracked_json(row) for row in tracked if row["error"] is None]}


def _tracked_json(row: dict) -> dict:
    shown = rounded(row)
    return {"box": [shown["x"], shown["y"], shown["w"], shown["h"]], "track": row["track"],
            "label": track_label(row), "age": shown["age"], "gender": shown["gender"],
            "gender_prob": shown["gender_prob"], "track_age": shown["track_age"],
            "track_age_low": shown["track_age_low"], "track_age_high": shown["track_age_high"],
            "track_gender": shown["track_gender"],
            "track_gender_prob": shown["track_gender_prob"], "track_views": row["track_views"]}
