"""`agegender serve`: the HTTP API and the web page (needs the `serve` extra)."""

from __future__ import annotations

import argparse
import errno
import logging
import socket
from pathlib import Path

from agegender.faces.search import DEFAULT_SEARCH, SEARCH_HELP, SEARCH_NETWORKS
from agegender.limits import flag_type
from agegender.precision import PRECISION_HELP, PRECISIONS

log = logging.getLogger("agegender")


def add_parser(commands: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]
               ) -> None:
    from agegender.serving.settings import LiveSettings, ServeSettings

    defaults = ServeSettings()
    serve = commands.add_parser(
        "serve", parents=parents,
        help="HTTP API (/v1/predict, /docs) and a web page (/) for age and gender",
        description="Serve the predictor over HTTP: POST /v1/predict, /v1/predict/batch, "
                    "GET /healthz, /readyz, /metrics, /docs, and a web page at /.")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default: %(default)s, this machine only)")
    serve.add_argument("--port", type=flag_type("port"), default=8000,
                       help="port to listen on, 0–65535; 0 takes a free one (default: "
                            "%(default)s)")
    serve.add_argument("--model", type=Path,
                       help="checkpoint (.pt) or .onnx (default: the bundled model)")
    serve.add_argument("--precision", choices=PRECISIONS, default=None,
                       help=PRECISION_HELP)
    serve.add_argument("--detector", choices=SEARCH_NETWORKS, default=DEFAULT_SEARCH,
                       help=SEARCH_HELP)
    serve.add_argument("--max-batch", type=flag_type("max_batch"), default=defaults.max_batch,
                       metavar="N",
                       help="faces per model call, shared by concurrent requests, at least 1 "
                            "(default: %(default)s)")
    serve.add_argument("--max-queue", type=flag_type("max_queue"), default=defaults.max_queue,
                       metavar="N",
                       help="requests in progress before new ones get 503 with Retry-After, at "
                            "least 1 (default: %(default)s)")
    serve.add_argument("--workers", type=flag_type("workers"), default=defaults.workers,
                       metavar="N",
                       help="threads that decode and detect, at least 1 (default: the cores, "
                            "%(default)s here)")
    serve.add_argument("--max-upload-mb", type=flag_type("max_upload_mb", float),
                       default=defaults.max_upload_bytes / 2**20, metavar="MB",
                       help="largest request body in MiB, more than 0; larger gets 413 "
                            "(default: %(default)g)")
    serve.add_argument("--timeout", type=flag_type("timeout", float),
                       default=defaults.request_timeout_s, metavar="SECONDS",
                       help="seconds before a request gets 504, more than 0 (default: "
                            "%(default)g)")
    serve.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                       help="allow browser calls from this origin (repeat it for several; "
                            "default: none, CORS off)")
    live = LiveSettings()
    serve.add_argument("--live-connections", type=flag_type("live_connections"),
                       default=live.max_connections, metavar="N",
                       help="the page's live mode: most WebSocket connections at once, at "
                            "least 1 (default: %(default)s)")
    serve.add_argument("--live-idle", type=flag_type("live_idle", float),
                       default=live.idle_timeout_s, metavar="SECONDS",
                       help="the live mode: close a connection that sends nothing for this "
                            "long, more than 0 (default: %(default)g)")
    serve.add_argument("--live-in-flight", type=flag_type("live_in_flight"),
                       default=live.frames_in_flight, metavar="N",
                       help="the live mode: frames of a connection waiting or analysed at "
                            "once, at least 1; more are dropped (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from agegender.serving.app import create_app
        from agegender.serving.service import InferenceService
    except ImportError as error:
        raise ValueError(f"agegender serve needs the serve extra ({error.name} is missing): "
                         "pip install 'agegender[serve]'") from error
    from agegender.serving.settings import LiveSettings, ServeSettings

    settings = ServeSettings(
        model=args.model, workers=args.workers, max_batch=args.max_batch,
        max_queue=args.max_queue, max_upload_bytes=max(1, int(args.max_upload_mb * 2**20)),
        request_timeout_s=args.timeout, cors_origins=tuple(args.cors_origin),
        precision=args.precision, detector=args.detector)
    listening = listening_socket(args.host, args.port)  # a port in use stops here, at once
    try:
        service = InferenceService(settings)
        service.load()  # a bad --model stops here, before the port answers
        host, port = listening.getsockname()[:2]
        log.info("serving %s on http://%s:%d/", service.model_path.name, host, port)
        live = LiveSettings(max_connections=args.live_connections,
                            idle_timeout_s=args.live_idle,
                            frames_in_flight=args.live_in_flight)
        server = uvicorn.Server(uvicorn.Config(create_app(settings, service, live),
                                               log_level="warning"))
        try:
            server.run(sockets=[listening])
        finally:
            service.close()
    finally:
        listening.close()
    return 0


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, or ValueError (exit status 2) with a sentence saying why
    not: the port in use, the address not this machine's, no permission."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as error:
        raise ValueError(f"--host {host}: not an address to listen on ({error.strerror})"
                         ) from None
    listening = socket.socket(family, socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind((host, port))
    except OSError as error:
        listening.close()
        if error.errno == errno.EADDRINUSE:
            raise ValueError(f"port {port} on {host} is already in use (another server?); "
                             "stop it or choose another with --port") from None
        raise ValueError(f"cannot listen on {host}:{port}: "
                         f"{(error.strerror or str(error)).lower()}") from None
    return listening
