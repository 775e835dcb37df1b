"""`agegender serve`: the HTTP API and the web page (needs the `serve` extra)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("agegender")


def add_parser(commands: argparse._SubParsersAction) -> None:
    from agegender.serving.live import LiveSettings
    from agegender.serving.settings import ServeSettings

    defaults = ServeSettings()
    serve = commands.add_parser(
        "serve", help="HTTP API (/v1/predict, /docs) and a web page (/) for age and gender",
        description="Serve the predictor over HTTP: POST /v1/predict, /v1/predict/batch, "
                    "GET /healthz, /readyz, /metrics, /docs, and a web page at /.")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--model", type=Path,
                       help="checkpoint (.pt) or .onnx; default: the bundled model")
    serve.add_argument("--max-batch", type=int, default=defaults.max_batch,
                       help="faces per model call, shared by concurrent requests")
    serve.add_argument("--max-queue", type=int, default=defaults.max_queue,
                       help="requests in progress before new ones get 503 with Retry-After")
    serve.add_argument("--workers", type=int, default=defaults.workers,
                       help="threads that decode and detect (default: the cores)")
    serve.add_argument("--max-upload-mb", type=float,
                       default=defaults.max_upload_bytes / 2**20,
                       help="largest request body; larger gets 413")
    serve.add_argument("--timeout", type=float, default=defaults.request_timeout_s,
                       help="seconds before a request gets 504")
    serve.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                       help="allow browser calls from this origin (repeat; default: CORS off)")
    live = LiveSettings()
    serve.add_argument("--live-connections", type=int, default=live.max_connections,
                       help="the page's live mode: most WebSocket connections at once")
    serve.add_argument("--live-idle", type=float, default=live.idle_timeout_s, metavar="S",
                       help="the live mode: close a connection that sends nothing for S s")
    serve.add_argument("--live-in-flight", type=int, default=live.frames_in_flight,
                       help="the live mode: frames of a connection waiting or analysed at "
                            "once; more are dropped")


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from agegender.serving.app import create_app
        from agegender.serving.service import InferenceService
    except ImportError as error:
        raise ValueError(f"agegender serve needs the serve extra ({error.name} is missing): "
                         "pip install 'agegender[serve]'") from error
    from agegender.serving.live import LiveSettings
    from agegender.serving.settings import ServeSettings

    settings = ServeSettings(
        model=args.model, workers=args.workers, max_batch=args.max_batch,
        max_queue=args.max_queue, max_upload_bytes=int(args.max_upload_mb * 2**20),
        request_timeout_s=args.timeout, cors_origins=tuple(args.cors_origin))
    service = InferenceService(settings)
    service.load()  # a bad --model stops here, before the port opens
    log.info("serving %s on http://%s:%d/", service.model_path.name, args.host, args.port)
    try:
        live = LiveSettings(max_connections=args.live_connections,
                            idle_timeout_s=args.live_idle,
                            frames_in_flight=args.live_in_flight)
        uvicorn.run(create_app(settings, service, live), host=args.host, port=args.port,
                    log_level="warning")
    finally:
        service.close()
    return 0
