"""The FastAPI application: thin routes over `InferenceService`; every error is JSON."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agegender.inference.predictor import FaceFilter
from agegender.limits import LIMITS
from agegender.serving.errors import ApiError
from agegender.serving.live import add_live_route
from agegender.serving.metrics import ServerMetrics
from agegender.serving.schemas import BatchPrediction, ErrorBody, Prediction
from agegender.serving.service import InferenceService, png_data_url
from agegender.serving.settings import LiveSettings, ServeSettings
from agegender.serving.uploads import image_uploads, is_multipart, read_body

log = logging.getLogger(__name__)

STATIC = Path(str(resources.files("agegender.serving").joinpath("static")))
PAGE_POLICY = ("default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
               "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
"""The page loads nothing from elsewhere (no CDN): the browser enforces it."""

_BINARY = {"schema": {"type": "string", "format": "binary"}}
IMAGE_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {
        "type": "object", "required": ["image"],
        "properties": {"image": {"type": "string", "format": "binary"}}}},
    "application/octet-stream": _BINARY, "image/jpeg": _BINARY, "image/png": _BINARY}}}
BATCH_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {
        "type": "object", "required": ["images"],
        "properties": {"images": {"type": "array",
                                  "items": {"type": "string", "format": "binary"}}}}}}}}
ERRORS = {status: {"model": ErrorBody, "description": description} for status, description in {
    400: "malformed request", 408: "the upload did not arrive in time",
    413: "upload or image too large",
    415: "not an image: the content is in no image format (it is sniffed, whatever the name "
         "or Content-Type say)",
    422: "corrupt image (an image format that cannot be decoded, or empty), missing field, or "
         "a query parameter out of range",
    503: "models loading, or queue full (see Retry-After)", 504: "request timed out"}.items()}


def _face_filter(
        max_faces: Annotated[int | None, Query(
            ge=LIMITS["max_faces"].low,
            description="keep at most this many faces, the largest")] = None,
        min_face: Annotated[float, Query(
            ge=LIMITS["min_face"].low, allow_inf_nan=False,
            description="keep faces at least this many pixels wide and high (within the "
                        "image)")] = 0,
        min_score: Annotated[float | None, Query(
            ge=LIMITS["min_score"].low, le=LIMITS["min_score"].high, allow_inf_nan=False,
            description="keep faces the detector scored at least this (0–1; default: its own "
                        "threshold, 0.6)")] = None,
) -> FaceFilter:
    """The face filters a request may set, as `agegender predict --max-faces/--min-face/
    --min-score` do (out of range: 422)."""
    return FaceFilter(max_faces=max_faces, min_face=min_face, min_score=min_score)


FaceFilterQuery = Annotated[FaceFilter, Depends(_face_filter)]


def create_app(settings: ServeSettings | None = None,
               service: InferenceService | None = None,
               live: LiveSettings | None = None) -> FastAPI:
    """The application; `service` (default: one built from `settings`) is loaded at start-up
    unless it already is. A service passed in stays open at shutdown: its owner closes it.
    `live`: the bounds of the page's live mode (`/v1/live`)."""
    settings = settings or ServeSettings()
    owned = service is None
    service = service or InferenceService(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.create_task(_load(service))
        yield
        if not loading.done():
            loading.cancel()
        if owned:
            service.close()

    # FastAPIOffline: /docs and /redoc with Swagger UI and ReDoc served by the app, not a CDN
    app = FastAPIOffline(title="agegender", version=_version(), lifespan=lifespan,
                         description="Age and gender of the faces in a photo: the "
                                     "`agegender predict` inference path behind HTTP.")
    app.state.service = service
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST"], allow_headers=["*"],
                           expose_headers=["X-Faces"])
    _add_error_handlers(app)
    app.add_middleware(_MetricsMiddleware, metrics=service.metrics)
    _add_prediction_routes(app, service, settings)
    _add_status_routes(app, service)
    add_live_route(app, service, live or LiveSettings())
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


async def _load(service: InferenceService) -> None:
    """Load the models off the event loop; a failure is logged (`/readyz` stays 503)."""
    try:
        await asyncio.to_thread(service.load)
    except Exception:  # logged once here; nobody awaits this task to hear of it again
        log.exception("loading the models failed")


def _add_prediction_routes(app: FastAPI, service: InferenceService,
                           settings: ServeSettings) -> None:
    limit = settings.max_upload_bytes

    @app.post("/v1/predict", openapi_extra=IMAGE_BODY, responses={
        200: {"model": Prediction, "content": {"image/png": {}},
              "description": "the faces; with Accept: image/png the annotated image, and the "
                             "faces as JSON in the X-Faces header"}, **ERRORS})
    async def predict(request: Request, faces: FaceFilterQuery,
                      annotate: bool = False) -> Response:
        """The faces in one image: multipart field `image`, or the raw image as the body."""
        body = await read_body(request, limit, settings.request_timeout_s)
        uploads = await image_uploads(request, body, "image", limit, settings.max_batch_images)
        if len(uploads) > 1:
            raise ApiError(422, "several_images", "one image per request here; "
                                                  "/v1/predict/batch takes several")
        as_png = _wants_png(request.headers.get("accept", ""))
        result = await service.predict(uploads[0][1], annotate=annotate or as_png, faces=faces)
        if as_png:
            return Response(result.annotated_png, media_type="image/png",
                            headers={"X-Faces": json.dumps(result.body)})
        if annotate:
            return JSONResponse({**result.body,
                                 "annotated_image": png_data_url(result.annotated_png)})
        return JSONResponse(result.body)

    @app.post("/v1/predict/batch", openapi_extra=BATCH_BODY,
              responses={200: {"model": BatchPrediction}, **ERRORS})
    async def predict_batch(request: Request,
                            faces: FaceFilterQuery) -> Response:
        """The faces in several images (repeated multipart field `images`); an image that
        cannot be read gets its own error entry, the others still answer."""
        body = await read_body(request, limit, settings.request_timeout_s)
        if not is_multipart(request):
            raise ApiError(415, "not_multipart", "send the images as multipart/form-data "
                                                 "fields named 'images'")
        uploads = await image_uploads(request, body, "images", limit, settings.max_batch_images)
        return JSONResponse({"results": await service.predict_many(uploads, faces)})


def _add_status_routes(app: FastAPI, service: InferenceService) -> None:
    @app.get("/healthz")
    async def healthz() -> dict:
        """The process answers."""
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"model": ErrorBody}})
    async def readyz() -> Response:
        """200 once the models are loaded."""
        service.require_ready()
        return JSONResponse({"status": "ready", "model": service.model_path.name})

    @app.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        """Prometheus text: requests by status, latency, faces found, queue depth."""
        text, content_type = service.metrics.render()
        return Response(text, media_type=content_type)

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return FileResponse(STATIC / "index.html",
                            headers={"Content-Security-Policy": PAGE_POLICY})


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> Response:
        return JSONResponse(error.body(), error.status, headers=error.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        code = str(error.detail).lower().replace(" ", "_")
        return await api_error(request, ApiError(error.status_code, code, str(error.detail),
                                                 dict(error.headers or {})))

    @app.exception_handler(Exception)
    async def internal(request: Request, error: Exception) -> Response:
        log.error("%s %s failed", request.method, request.url.path, exc_info=error)
        return JSONResponse(ApiError(500, "internal", "internal error").body(), 500)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> Response:
        message = "; ".join(f"{'.'.join(map(str, item['loc']))}: {item['msg']}"
                            for item in error.errors())
        return await api_error(request, ApiError(422, "invalid_request", message))


class _MetricsMiddleware:
    """Counts every answer by route and status and times it (plain ASGI: no extra task or
    body copy per request, unlike `@app.middleware`)."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless a response starts: an exception escaped every handler

        async def noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting_status)
        finally:
            route = getattr(scope.get("route"), "path", "other")  # bounded label values
            self.metrics.observe(route, status, time.perf_counter() - started)


def _wants_png(accept: str) -> bool:
    return "image/png" in accept and "application/json" not in accept


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("agegender")
    except PackageNotFoundError:
        return "0"
