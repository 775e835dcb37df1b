"""The page's live mode, `/v1/live`: tracked answers per connection, and its bounds."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("norfair")
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from agegender.inference.predictor import Predictor
from agegender.serving.app import create_app
from agegender.serving.live import TRY_AGAIN_LATER
from agegender.serving.service import InferenceService
from agegender.serving.settings import LiveSettings, ServeSettings

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "astronaut_face.jpg"


def _frames(count: int) -> list[bytes]:
    """JPEG frames of the example face moving right over a grey 480×360 canvas."""
    face = Image.open(EXAMPLE).convert("RGB")
    frames = []
    for step in range(count):
        canvas = Image.new("RGB", (480, 360), (90, 100, 110))
        canvas.paste(face, (40 + 8 * step, 100))
        buffer = io.BytesIO()
        canvas.save(buffer, format="JPEG", quality=90)
        frames.append(buffer.getvalue())
    return frames


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor()


def _client(predictor: Predictor, live: LiveSettings) -> TestClient:
    service = InferenceService(ServeSettings(), predictor)
    service.load()
    return TestClient(create_app(service.settings, service, live))


def test_a_connection_gets_one_track_with_a_steady_label(predictor):
    with _client(predictor, LiveSettings(frames_in_flight=8)) as client, \
            client.websocket_connect("/v1/live") as socket:
        answers = []
        for frame in _frames(6):
            socket.send_bytes(frame)
            answers.append(socket.receive_json())
    assert [answer["frame"] for answer in answers] == list(range(6))
    faces = [answer["faces"][0] for answer in answers]
    assert {face["track"] for face in faces} == {1}
    assert [face["track_views"] for face in faces] == [1, 2, 3, 4, 5, 6]
    assert {face["track_gender"] for face in faces} == {"female"}
    assert faces[-1]["label"].startswith("#1 F ")


def test_frames_beyond_the_bound_are_dropped_not_queued(predictor):
    with _client(predictor, LiveSettings(frames_in_flight=1)) as client, \
            client.websocket_connect("/v1/live") as socket:
        for frame in _frames(8):
            socket.send_bytes(frame)
        answers = [socket.receive_json() for _ in range(8)]
    dropped = [answer["dropped"] for answer in answers if "dropped" in answer]
    analysed = [answer["frame"] for answer in answers if "frame" in answer]
    assert dropped and analysed and sorted(dropped + analysed) == list(range(8))


def test_connections_beyond_the_bound_are_refused_and_closing_frees_them(predictor):
    with _client(predictor, LiveSettings(max_connections=2)) as client:
        connections = client.app.state.live_connections
        first = client.websocket_connect("/v1/live").__enter__()
        second = client.websocket_connect("/v1/live").__enter__()
        first.send_bytes(_frames(1)[0])
        assert first.receive_json()["faces"]
        with client.websocket_connect("/v1/live") as third:
            refusal = third.receive_json()
            with pytest.raises(WebSocketDisconnect) as closed:
                third.receive_json()
        assert refusal["error"]["code"] == "too_many_connections"
        assert closed.value.code == TRY_AGAIN_LATER
        assert connections.open == 2
        first.__exit__(None, None, None)
        second.__exit__(None, None, None)
        for _ in range(10):  # many connections, one after another: the count stays bounded
            with client.websocket_connect("/v1/live") as again:
                again.send_bytes(_frames(1)[0])
                assert again.receive_json()["frame"] == 0
        assert connections.open == 0


def test_an_idle_connection_is_closed(predictor):
    with _client(predictor, LiveSettings(idle_timeout_s=0.2)) as client, \
            client.websocket_connect("/v1/live") as socket, \
            pytest.raises(WebSocketDisconnect) as closed:
        socket.receive_json()
    assert closed.value.code == 1001
