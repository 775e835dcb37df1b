"""`agegender serve`: every status code the API promises, on the CLI's numbers."""

from __future__ import annotations

import asyncio
import io
import json
import struct
import tempfile
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")
import httpx
from fastapi.testclient import TestClient

from agegender.inference.output import rounded
from agegender.inference.predictor import Predictor
from agegender.serving.app import create_app
from agegender.serving.batcher import MicroBatcher
from agegender.serving.service import InferenceService
from agegender.serving.settings import ServeSettings

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "astronaut_face.jpg"


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor()


def _client(predictor: Predictor, **settings) -> TestClient:
    service = InferenceService(ServeSettings(**settings), predictor)
    service.load()
    return TestClient(create_app(service.settings, service))


@pytest.fixture(scope="module")
def client(predictor: Predictor):
    with _client(predictor) as client:
        yield client


def _photo() -> bytes:
    return EXAMPLE.read_bytes()


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares width × height pixels (the data is never reached)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)))


def test_predict_gives_the_cli_numbers(client, predictor):
    """Multipart and raw body both answer with the rows `agegender predict` writes."""
    expected = [rounded(row.to_dict()) for row in predictor.predict(EXAMPLE)]
    for response in (client.post("/v1/predict", files={"image": ("x.jpg", _photo())}),
                     client.post("/v1/predict", content=_photo())):
        assert response.status_code == 200
        body = response.json()
        assert (body["width"], body["height"]) == Image.open(EXAMPLE).size
        assert len(body["faces"]) == len(expected) == 1
        face, row = body["faces"][0], expected[0]
        assert face["box"] == [row["x"], row["y"], row["w"], row["h"]]
        assert {key: face[key] for key in ("det_score", "age", "age_low", "age_high", "gender",
                                           "gender_prob")} == {
            key: row[key] for key in ("det_score", "age", "age_low", "age_high", "gender",
                                      "gender_prob")}
        assert np.array(face["landmarks"]).shape == (5, 2)


def test_annotated_image_as_json_field_and_as_png(client):
    answer = client.post("/v1/predict?annotate=true", content=_photo()).json()
    assert answer["annotated_image"].startswith("data:image/png;base64,")
    response = client.post("/v1/predict", content=_photo(), headers={"Accept": "image/png"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).size == Image.open(EXAMPLE).size
    assert '"faces"' in response.headers["x-faces"]


def test_a_photo_without_a_face_gives_no_faces(client):
    buffer = io.BytesIO()
    Image.new("RGB", (800, 600), (90, 140, 200)).save(buffer, format="PNG")
    response = client.post("/v1/predict", content=buffer.getvalue())
    assert response.status_code == 200
    assert response.json()["faces"] == []


def test_batch_answers_each_image_and_reports_bad_ones_alone(client):
    files = [("images", ("a.jpg", _photo())), ("images", ("notes.txt", b"not an image")),
             ("images", ("b.jpg", _photo()))]
    response = client.post("/v1/predict/batch", files=files)
    assert response.status_code == 200
    results = response.json()["results"]
    assert [entry["file"] for entry in results] == ["a.jpg", "notes.txt", "b.jpg"]
    assert results[0]["faces"] == results[2]["faces"] and len(results[0]["faces"]) == 1
    assert results[1]["error"]["status"] == 415
    assert client.post("/v1/predict/batch", content=_photo()).status_code == 415


@pytest.mark.parametrize(("name", "data", "status"), [
    ("empty", b"", 422),
    ("text", b"hello, I am a text file\n" * 10, 415),
    ("random bytes", bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)), 415),
    ("truncated", EXAMPLE.read_bytes()[:1500], 422),
    ("corrupt", EXAMPLE.read_bytes()[:600] + b"\xff" * 3000, 422),
    ("100-megapixel header", _png_header(10_000, 10_000), 413),
])
def test_bad_uploads_get_a_4xx_json_error(client, name, data, status):
    """The format is sniffed: the misleading name and Content-Type change nothing."""
    for response in (client.post("/v1/predict", content=data,
                                 headers={"Content-Type": "image/jpeg"}),
                     client.post("/v1/predict", files={"image": ("photo.jpg", data,
                                                                 "image/jpeg")})):
        assert response.status_code == status, name
        assert response.json()["error"]["status"] == status


def test_a_real_100_megapixel_image_is_refused(client):
    buffer = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(buffer, format="PNG")
    response = client.post("/v1/predict", content=buffer.getvalue())
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "image_too_large"


def test_upload_over_the_size_limit_gets_413(predictor):
    with _client(predictor, max_upload_bytes=100_000) as small:
        big = _photo() + b"\0" * 100_000
        assert small.post("/v1/predict", content=big).status_code == 413
        assert small.post("/v1/predict", files={"image": ("x.jpg", big)}).status_code == 413
        assert small.post("/v1/predict", content=_photo()).status_code == 200


def test_malformed_requests_get_4xx(client):
    missing = client.post("/v1/predict", files={"other": ("x.jpg", _photo())})
    assert missing.status_code == 422 and missing.json()["error"]["code"] == "missing_image"
    broken = client.post("/v1/predict", content=b"--x\r\nnonsense",
                         headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert 400 <= broken.status_code < 500
    assert client.post("/v1/predict?annotate=maybe", content=_photo()).status_code == 422
    assert client.get("/v1/predict").status_code == 405
    assert client.get("/nowhere").json()["error"]["status"] == 404


def test_uploads_never_touch_the_disk(client, monkeypatch):
    """A 3 MB multipart upload stays in memory (Starlette spools parts over 1 MB by default)."""
    def refuse(*args, **kwargs):
        raise AssertionError("an upload was written to a temporary file")

    for name in ("TemporaryFile", "NamedTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, refuse)
    big = _photo() + b"\0" * 3_000_000  # trailing bytes after the JPEG's end are ignored
    response = client.post("/v1/predict", files={"image": ("x.jpg", big)})
    assert response.status_code == 200
    assert len(response.json()["faces"]) == 1


def test_the_model_is_not_taken_from_the_request(client):
    response = client.post("/v1/predict?model=/etc/passwd", content=_photo(),
                           headers={"X-Model": "/etc/passwd"})
    assert response.status_code == 200
    assert client.get("/readyz").json()["model"] == "agegender_mobilenet_v2.onnx"


class _SlowPredictor(Predictor):
    """Finds faces only once `release` is set, so requests pile up."""

    def __init__(self, predictor: Predictor) -> None:
        self.__dict__.update(predictor.__dict__)
        self.release = threading.Event()

    def find_faces(self, image, detector=None):
        self.release.wait(5)
        return super().find_faces(image, detector)


def _concurrently(app, requests: int) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await asyncio.gather(*(client.post("/v1/predict", content=_photo())
                                          for _ in range(requests)))
    return asyncio.run(run())


def test_a_full_queue_gets_503_with_retry_after(predictor):
    slow = _SlowPredictor(predictor)
    service = InferenceService(ServeSettings(max_queue=2, retry_after_s=3), slow)
    service.load()
    threading.Timer(1.0, slow.release.set).start()
    responses = _concurrently(create_app(service.settings, service), 5)
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200, 200, 503, 503, 503]
    refused = next(response for response in responses if response.status_code == 503)
    assert refused.headers["retry-after"] == "3"
    assert refused.json()["error"]["code"] == "queue_full"


def test_a_slow_request_times_out_with_504(predictor):
    slow = _SlowPredictor(predictor)
    service = InferenceService(ServeSettings(request_timeout_s=0.2), slow)
    service.load()
    try:
        [response] = _concurrently(create_app(service.settings, service), 1)
    finally:
        slow.release.set()
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "timeout"


def test_health_readiness_and_metrics(predictor, client):
    service = InferenceService(ServeSettings(), predictor)
    loading = TestClient(create_app(service.settings, service))  # no lifespan: not loaded
    assert loading.get("/healthz").json() == {"status": "ok"}
    assert loading.get("/readyz").status_code == 503
    assert loading.post("/v1/predict", content=_photo()).status_code == 503
    service.load()
    assert loading.get("/readyz").status_code == 200

    client.post("/v1/predict", content=_photo())
    client.post("/v1/predict", content=b"text")
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    text = metrics.text
    for line in ('agegender_requests_total{route="/v1/predict",status="200"}',
                 'agegender_requests_total{route="/v1/predict",status="415"}',
                 'agegender_request_seconds_bucket{le="0.25",route="/v1/predict"}',
                 "agegender_faces_total", "agegender_queue_depth 0.0",
                 "agegender_model_batch_faces_count"):
        assert line in text, line


def test_cors_is_off_by_default_and_configurable(client, predictor):
    origin = {"Origin": "https://example.org"}
    assert "access-control-allow-origin" not in client.get("/healthz", headers=origin).headers
    with _client(predictor, cors_origins=("https://example.org",)) as open_client:
        response = open_client.get("/healthz", headers=origin)
        assert response.headers["access-control-allow-origin"] == "https://example.org"
        other = open_client.get("/healthz", headers={"Origin": "https://elsewhere.org"})
        assert "access-control-allow-origin" not in other.headers


def test_page_and_its_assets_are_served_by_the_app(client):
    page = client.get("/")
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "http://" not in page.text and "https://" not in page.text
    for asset in ("/static/app.js", "/static/style.css"):
        response = client.get(asset)
        assert response.status_code == 200 and "https://" not in response.text
    docs = client.get("/docs")
    assert docs.status_code == 200 and "https://" not in docs.text  # Swagger UI: no CDN either
    assert client.get("/static-offline-docs/swagger-ui-bundle.js").status_code == 200
    assert "/v1/predict" in client.get("/openapi.json").json()["paths"]


def test_micro_batcher_serves_concurrent_callers_in_one_call():
    calls: list[int] = []

    def predict(crops: np.ndarray) -> list[float]:
        calls.append(len(crops))
        return [float(value) for value in crops[:, 0]]

    batcher = MicroBatcher(predict, max_batch=64, max_wait_s=0.5, expecting_more=lambda: True)
    futures = [batcher.submit(np.full((count, 1), start)) for start, count in
               ((1, 2), (2, 1), (3, 3))]
    assert [future.result(5) for future in futures] == [[1.0, 1.0], [2.0], [3.0, 3.0, 3.0]]
    assert sum(calls) == 6 and len(calls) < 3
    # alone, a request does not wait for company: were it to, it would wait an hour
    alone = MicroBatcher(predict, max_batch=64, max_wait_s=3600.0,
                         expecting_more=lambda: False)
    assert alone.submit(np.full((1, 1), 7)).result(60) == [7.0]
    batcher.close()
    alone.close()


def test_a_caller_that_gave_up_is_skipped_and_the_model_thread_lives_on():
    release, running = threading.Event(), threading.Event()
    seen: list[float] = []

    def predict(crops: np.ndarray) -> list[float]:
        running.set()
        release.wait(5)
        seen.extend(float(value) for value in crops[:, 0])
        return [float(value) for value in crops[:, 0]]

    batcher = MicroBatcher(predict, max_batch=64, max_wait_s=0.0)
    first = batcher.submit(np.full((1, 1), 1))
    assert running.wait(5)  # the model thread is busy with the first call
    gone = batcher.submit(np.full((1, 1), 2))
    assert gone.cancel()
    release.set()
    assert first.result(5) == [1.0]
    assert batcher.submit(np.full((1, 1), 3)).result(5) == [3.0]
    assert 2.0 not in seen
    batcher.close()


def test_a_30_mb_upload_gets_413_under_the_default_limit(client):
    assert ServeSettings().max_upload_bytes < 30 * 2**20
    big = _photo() + b"\0" * (30 * 2**20)
    for response in (client.post("/v1/predict", content=big),
                     client.post("/v1/predict", files={"image": ("big.jpg", big)})):
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "upload_too_large"


@pytest.mark.archive
def test_the_api_equals_the_cli_on_utkface_and_lfw_photos():
    from benchmarks.serve_agreement import ARCHIVES, compare

    missing = [str(path) for path in ARCHIVES.values() if not path.is_file()]
    if missing:
        pytest.skip(f"not found: {missing}")
    results = compare(photos_per_set=3)
    assert results["photos"] == 6
    assert results["differing"] == {}
    assert results["faces_api"] == results["faces_cli"] >= 6


class _BrokenPredictor(Predictor):
    def __init__(self, predictor: Predictor) -> None:
        self.__dict__.update(predictor.__dict__)

    def find_faces(self, image, detector=None):
        raise RuntimeError("a bug, not bad input")


def test_a_server_fault_is_a_json_500_and_counted(predictor):
    service = InferenceService(ServeSettings(), _BrokenPredictor(predictor))
    service.load()
    client = TestClient(create_app(service.settings, service), raise_server_exceptions=False)
    response = client.post("/v1/predict", content=_photo())
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal"
    assert 'route="/v1/predict",status="500"' in client.get("/metrics").text


def test_an_upload_that_trickles_in_gets_408(predictor):
    service = InferenceService(ServeSettings(request_timeout_s=0.3), predictor)
    service.load()
    app = create_app(service.settings, service)

    async def trickle():
        yield _photo()[:100]
        await asyncio.sleep(3)
        yield _photo()[100:]

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post("/v1/predict", content=trickle())

    response = asyncio.run(run())
    assert response.status_code == 408
    assert response.json()["error"]["code"] == "body_timeout"


@pytest.mark.parametrize("size", [(8, 8), (400, 300), (40, 150)])
def test_a_small_image_without_a_face_gives_no_faces(client, size):
    buffer = io.BytesIO()
    Image.new("RGB", size, (40, 160, 60)).save(buffer, format="PNG")
    response = client.post("/v1/predict", content=buffer.getvalue())
    assert response.status_code == 200
    assert response.json()["faces"] == []


def _two_faces() -> bytes:
    """The example face twice, large and small, the large one cut by the left edge."""
    face = Image.open(EXAMPLE).convert("RGB")
    canvas = Image.new("RGB", (900, 600), (200, 200, 200))
    canvas.paste(face.resize((face.width * 2, face.height * 2)), (-110, 100))
    canvas.paste(face, (600, 200))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


def test_face_filters_as_query_parameters(client):
    photo = _two_faces()
    every = client.post("/v1/predict", content=photo).json()["faces"]
    assert [face["face"] for face in every] == [0, 1]
    for face in every:  # boxes lie within the image; the points are kept
        x, y, w, h = face["box"]
        assert x >= 0 and y >= 0 and x + w <= 900 and y + h <= 600
        assert np.array(face["landmarks"]).shape == (5, 2)
    assert client.post("/v1/predict?max_faces=1", content=photo).json()["faces"] == every[:1]
    small = min(every[1]["box"][2:])
    assert client.post(f"/v1/predict?min_face={small + 1}",
                       content=photo).json()["faces"] == every[:1]
    assert client.post("/v1/predict?min_score=1", content=photo).json()["faces"] == []
    batch = client.post("/v1/predict/batch?max_faces=1",
                        files=[("images", ("a.png", photo))]).json()["results"]
    assert batch[0]["faces"] == every[:1]
    for query in ("max_faces=0", "min_face=-1", "min_score=1.5", "min_score=nan",
                  "max_faces=x"):
        response = client.post(f"/v1/predict?{query}", content=photo)
        assert response.status_code == 422, query
        assert response.json()["error"]["code"] == "invalid_request"


def test_the_cli_json_and_the_api_json_carry_the_same_face(client, tmp_path):
    from agegender.cli.main import main
    from agegender.inference.output import IMAGE_FIELDS

    photo = tmp_path / "two.png"
    photo.write_bytes(_two_faces())
    output = tmp_path / "rows.json"
    assert main(["predict", str(photo), "--output", str(output)]) == 0
    cli = [{key: value for key, value in row.items() if key not in IMAGE_FIELDS}
           for row in json.loads(output.read_text())]
    api = client.post("/v1/predict", content=photo.read_bytes()).json()["faces"]
    assert len(api) == 2
    assert api == cli  # the same fields, names, nesting, numbering and values


def test_a_jpeg_header_before_random_bytes_is_a_corrupt_image_not_a_non_image(client):
    noise = bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8))
    for header in (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01", b"\xff\xd8\xff\xe0",
                   b"\x89PNG\r\n\x1a\n"):
        corrupt = client.post("/v1/predict", content=header + noise)
        assert corrupt.status_code == 422, header
        assert corrupt.json()["error"]["code"] == "unreadable_image"
    assert client.post("/v1/predict", content=noise).status_code == 415


def test_both_decompression_bomb_refusals_state_the_one_limit(client):
    from agegender.imageio import MAX_PIXELS

    limit = f"over the {MAX_PIXELS / 1e6:.0f}-megapixel limit"
    ours = client.post("/v1/predict", content=_png_header(9_000, 9_000))  # 81 MP: our check
    pillows = client.post("/v1/predict", content=_png_header(20_000, 10_000))  # Pillow's
    for response in (ours, pillows):
        assert response.status_code == 413
        assert limit in response.json()["error"]["message"]


@pytest.mark.parametrize("settings", [
    {"max_batch": -1}, {"max_batch": 0}, {"max_queue": 0}, {"workers": 0},
    {"max_upload_bytes": 0}, {"request_timeout_s": 0}, {"batch_wait_ms": -1},
    {"model_threads": 0}, {"max_batch_images": 0}, {"retry_after_s": -1}])
def test_settings_out_of_range_are_refused_before_a_server_starts(settings):
    with pytest.raises(ValueError, match=next(iter(settings))):
        ServeSettings(**settings)


def test_an_upload_over_the_limit_sent_by_urllib_hears_the_413(predictor):
    """urllib sends the whole body before it reads the answer: the server must read (and
    discard) it rather than close the connection under it."""
    import socket
    import urllib.error
    import urllib.request

    import uvicorn

    service = InferenceService(ServeSettings(), predictor)
    service.load()
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(service.settings, service),
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    try:
        for _ in range(100):
            if server.started:
                break
            threading.Event().wait(0.1)
        body = _photo() + b"\0" * (30 * 2**20)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/predict", data=body,
                                         headers={"Content-Type": "image/jpeg"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=60)
        assert refused.value.code == 413
        answer = json.loads(refused.value.read())
        assert answer["error"]["code"] == "upload_too_large"
    finally:
        server.should_exit = True
        thread.join(10)
        listening.close()
