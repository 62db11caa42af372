"""The inference host: thin FastAPI routes for the Open Inference Protocol V2 over :class:`DataPlane`.

``create_app()`` builds the app; ``prewarm serve`` runs it with uvicorn, and tests run it on loopback in a
thread. Errors of the engine map to HTTP status codes here and only here; every error body is
``{"error": "..."}``. Request bodies are bounded (``PREWARM_HOST__MAX_BODY_MB``, also after gzip or deflate
decompression) before anything parses them, and parsing happens on the model's inference thread, never on
the event loop.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio.to_thread
import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from warmers.codec import HEADER_LENGTH, describe
from warmers.corking import Corked, tcp_socket
from warmers.dataplane import DataPlane, ModelRepository
from warmers.engine import Engine
from warmers.errors import (
    CapacityError,
    InferenceInputError,
    ModelNotFoundError,
    ModelNotReadyError,
    RequestTooLargeError,
    UnsupportedEncodingError,
    WarmupError,
)
from warmers.loopback import LoopbackWarmer, base_url
from warmers.metrics import AFTER_LOAD, NOT_READY, HostMetrics
from warmers.protocol import RepositoryIndexRequest
from warmers.sources import SpecSource, default_source, fleet_source

logger = logging.getLogger(__name__)

STATUS = {
    ModelNotFoundError: 404,
    RequestTooLargeError: 413,
    UnsupportedEncodingError: 415,
    InferenceInputError: 400,
    ModelNotReadyError: 503,
    CapacityError: 507,
}
# Bodies of the repository routes are small JSON objects.
REPOSITORY_BODY_LIMIT = 64 * 1024


def _status(exc: WarmupError) -> int:
    for cls, code in STATUS.items():
        if isinstance(exc, cls):
            return code
    return 500


class CatchAll:
    """ASGI middleware: an unexpected exception becomes a 500 ``{"error": ...}``, logged once with its traceback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:  # noqa: BLE001 - the last line of defence: one log line, one JSON answer
            logger.exception("internal error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            response = JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)
            await response(scope, receive, send)


class TokenAuth:
    """ASGI middleware: ``Authorization: Bearer <token>`` on every repository and model route, else 401.

    Health, server metadata and ``/metrics`` stay open. The comparison takes constant time.
    """

    PROTECTED = ("/v2/models", "/v2/repository")

    def __init__(self, app: ASGIApp, *, token: str, metrics: HostMetrics) -> None:
        self.app = app
        self._expected = token.encode()
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._protected(scope["path"]) and not self._authorized(scope):
            self._metrics.unauthorized.inc()
            response = JSONResponse(
                {"error": "this route needs the host's token: send 'Authorization: Bearer <PREWARM_HOST__TOKEN>'"},
                status_code=401, headers={"WWW-Authenticate": 'Bearer realm="prewarm"'},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _protected(self, path: str) -> bool:
        return any(path == prefix or path.startswith(prefix + "/") for prefix in self.PROTECTED)

    def _authorized(self, scope: Scope) -> bool:
        for key, value in scope["headers"]:
            if key == b"authorization":
                scheme, _, given = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self._expected)
        return False


class HostApp(FastAPI):
    """The host's FastAPI app: each HTTP response leaves in one TCP segment where it can (:mod:`warmers.corking`)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sock = tcp_socket(send) if scope["type"] == "http" else None
        if sock is None:
            await super().__call__(scope, receive, send)
            return
        corked = Corked(send, sock)
        try:
            await super().__call__(scope, receive, corked)
        finally:
            corked.uncork()


def create_app(
    *,
    fleet: str | Path | None = None,
    source: SpecSource | None = None,
    engine: Engine | None = None,
    load_on_startup: bool = True,
    token: str | None = None,
    loopback_warmup: int | None = None,
    self_url: str | None = None,
) -> FastAPI:
    """The host's FastAPI app.

    Specs come from ``source``, else the ``fleet`` file, else the registry (or the example fleet when the
    registry is empty). With ``load_on_startup`` every model is loaded and warmed in a background thread
    after start-up; ``/v2/health/ready`` answers 200 once that has finished and no model failed to load.
    ``token`` (default: ``PREWARM_HOST__TOKEN``) is required as a bearer token on the repository and model
    routes when set. After a load through the repository API, ``loopback_warmup`` requests (default:
    ``PREWARM_HOST__LOOPBACK_WARMUP``) go through the host's own listener before the load is answered
    (:mod:`warmers.loopback`). ``self_url``, the address the host listens on as seen from itself, gives the
    start-up loads the same pass before ``/v2/health/ready`` answers 200 (without it, they end with the
    in-process warm-up alone).
    """
    from prewarm.settings import get_settings

    settings = get_settings().host
    if token is None and settings.token is not None:
        token = settings.token.get_secret_value()
    metrics = HostMetrics()
    engine = engine or Engine(observer=metrics)
    if engine.observer is None:
        engine.observer = metrics
    metrics.watch(engine)
    specs = source or (fleet_source(fleet) if fleet is not None else default_source())
    plane = DataPlane(engine, ModelRepository(specs))
    loopback = LoopbackWarmer(
        requests=settings.loopback_warmup if loopback_warmup is None else loopback_warmup, token=token
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if load_on_startup:
            def startup() -> None:
                plane.load_all(then=lambda: _through_listener(plane, loopback, self_url))

            threading.Thread(target=startup, name="prewarm-startup-loads", daemon=True).start()
        else:
            await anyio.to_thread.run_sync(plane.repository.refresh)
            plane.started.set()
        yield

    app = HostApp(title="prewarm host", lifespan=lifespan, redirect_slashes=False)
    app.state.plane = plane
    app.state.metrics = metrics
    if token:
        app.add_middleware(TokenAuth, token=token, metrics=metrics)
    app.add_middleware(CatchAll)
    _error_handlers(app)
    _health_routes(app, plane)
    _model_routes(app, plane, metrics, loopback, cold_window_s=settings.cold_window_s,
                  body_limit=int(settings.max_body_mb * 2**20))
    _repository_routes(app, plane, loopback)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _through_listener(plane: DataPlane, loopback: LoopbackWarmer, url: str | None, *, wait_s: float = 30.0) -> None:
    """The start-up loads' loopback pass: every ready model, once the listener answers (at most ``wait_s``)."""
    if url is None or loopback.requests <= 0:
        return
    deadline = time.monotonic() + wait_s
    while True:
        try:
            if httpx.get(f"{url}/v2/health/live", timeout=1.0, trust_env=False).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            logger.warning("loopback warm-up after start-up skipped: %s did not answer within %.0f s", url, wait_s)
            return
        time.sleep(0.05)
    for item in plane.index(ready_only=True):
        spec = plane.spec(item.name, item.version)
        loopback.run(url, spec, [t.name for t in plane.outputs(spec)])


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(WarmupError)
    async def _warmup_error(_: Request, exc: WarmupError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=_status(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": f"malformed request: {exc.errors()[0].get('msg')}"}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        messages = {
            404: f"no route {request.url.path}; the host speaks the Open Inference Protocol V2 under /v2",
            405: f"{request.method} is not allowed on {request.url.path}",
        }
        return JSONResponse(
            {"error": messages.get(exc.status_code, str(exc.detail))}, status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )


def _health_routes(app: FastAPI, plane: DataPlane) -> None:
    @app.get("/v2/health/live")
    async def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready() -> JSONResponse:
        ok, reason = plane.ready()
        if ok:
            return JSONResponse({"ready": True})
        return JSONResponse({"ready": False, "reason": reason, "error": f"not ready: {reason}"}, status_code=503)

    @app.get("/v2")
    @app.get("/v2/")
    async def server_metadata() -> dict[str, Any]:
        return plane.server_metadata().model_dump()


def _model_routes(
    app: FastAPI, plane: DataPlane, metrics: HostMetrics, loopback: LoopbackWarmer, *, cold_window_s: float,
    body_limit: int,
) -> None:
    # Sync handlers run in the thread pool: a miss may read the repository's source (the registry).
    @app.get("/v2/models/stats")
    @app.get("/v2/models/{name}/stats")
    @app.get("/v2/models/{name}/versions/{version}/stats")
    def statistics(name: str | None = None, version: str | None = None) -> dict[str, Any]:
        return plane.statistics(name, version)

    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    def model_metadata(name: str, version: str | None = None) -> dict[str, Any]:
        return plane.model_metadata(name, version).model_dump(exclude_none=True)

    @app.get("/v2/models/{name}/config")
    @app.get("/v2/models/{name}/versions/{version}/config")
    def model_config(name: str, version: str | None = None) -> dict[str, Any]:
        return plane.model_config(name, version)

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    def model_ready(name: str, version: str | None = None) -> JSONResponse:
        ok, reason = plane.model_ready(name, version)
        if ok:
            return JSONResponse({"name": name, "ready": True})
        body = {"name": name, "ready": False, "reason": reason, "error": f"model {name!r} is not ready: {reason}"}
        return JSONResponse(body, status_code=400)

    @app.post("/v2/models/{name}/infer")
    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer(name: str, request: Request, version: str | None = None) -> Response:
        start = time.perf_counter()
        own = loopback.is_warmup(request.headers)  # the host's own warm-up: not a client's request
        try:
            if plane.is_registered(name, version):
                plane.check_servable(name, version)
            else:
                await anyio.to_thread.run_sync(plane.check_servable, name, version)
            body = await read_body(request, limit=body_limit, where=f"model {name!r}")
            result = await plane.infer(name, version, body, request.headers.get(HEADER_LENGTH), record=not own)
        except WarmupError as exc:
            if not own:
                await _count_refusal(plane, metrics, name, version, exc)
            raise
        if not own:
            metrics.request_finished(model=result.model, version=result.version, status=200,
                                     seconds=time.perf_counter() - start)
            if result.ready_at is not None and time.monotonic() - result.ready_at <= cold_window_s:
                metrics.cold_start(model=result.model, version=result.version, kind=AFTER_LOAD)
        encoded = result.response
        return Response(encoded.body, media_type=encoded.media_type, headers=encoded.headers())


async def _count_refusal(plane: DataPlane, metrics: HostMetrics, name: str, version: str | None, exc: WarmupError) -> None:
    """Count a refused request under its model version (or ``__unknown__``); a known model not ready is a cold start."""
    known = None
    if not isinstance(exc, ModelNotFoundError):  # resolving a name may read the registry: not on the event loop
        known = await anyio.to_thread.run_sync(plane.labels, name, version)
    model, model_version = known if known is not None else (None, None)
    metrics.request_finished(model=model, version=model_version, status=_status(exc), seconds=None)
    if known is not None and isinstance(exc, ModelNotReadyError):
        metrics.cold_start(model=known[0], version=known[1], kind=NOT_READY)


async def read_body(request: Request, *, limit: int, where: str) -> bytes:
    """The request body, refused with 413 past ``limit`` bytes: by Content-Length before reading, while
    streaming, and after gzip or deflate decompression (so a small compressed bomb is refused too)."""
    too_large = f"{where}: the request body is larger than the host's limit of {limit / 2**20:g} MiB " \
        "(PREWARM_HOST__MAX_BODY_MB)"
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLargeError(too_large)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLargeError(too_large)
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise UnsupportedEncodingError(f"{where}: Content-Encoding {encoding!r} is not supported; use gzip or deflate")
    if len(body) < 64 * 1024:
        return _decompress(body, encoding=encoding, limit=limit, where=where, too_large=too_large)
    return await anyio.to_thread.run_sync(
        lambda: _decompress(body, encoding=encoding, limit=limit, where=where, too_large=too_large)
    )


def _decompress(body: bytes, *, encoding: str, limit: int, where: str, too_large: str) -> bytes:
    """Inflate at most ``limit`` bytes; ``deflate`` is zlib-wrapped (RFC 9110), raw deflate is accepted too."""
    attempts = [31] if encoding == "gzip" else [15, -15]
    for wbits in attempts:
        inflater = zlib.decompressobj(wbits)
        try:
            data = inflater.decompress(body, limit + 1)
        except zlib.error:
            continue
        if len(data) > limit or inflater.unconsumed_tail:
            raise RequestTooLargeError(too_large + " once decompressed")
        if not inflater.eof:
            raise InferenceInputError(f"{where}: the {encoding} body ends early")
        return data
    raise InferenceInputError(f"{where}: the body is not valid {encoding} data")


def _repository_routes(app: FastAPI, plane: DataPlane, loopback: LoopbackWarmer) -> None:
    @app.post("/v2/repository/index")
    async def index(request: Request) -> list[dict[str, Any]]:
        body = await read_body(request, limit=REPOSITORY_BODY_LIMIT, where="repository index")
        try:
            options = RepositoryIndexRequest.model_validate_json(body or b"{}")
        except ValidationError as exc:
            raise InferenceInputError(f"repository index: {describe(exc, None)}") from None
        return [item.model_dump() for item in plane.index(ready_only=bool(options.ready))]

    @app.post("/v2/repository/models/{name}/load")
    async def load(name: str, request: Request) -> JSONResponse:
        await read_body(request, limit=REPOSITORY_BODY_LIMIT, where=f"load of {name!r}")
        report = await plane.load(name)
        if report.ready:
            spec = plane.spec(name, report.version)
            url = base_url(request.scope.get("server"), request.url.scheme)
            outputs = [t.name for t in plane.outputs(spec)]
            await anyio.to_thread.run_sync(loopback.run, url, spec, outputs)
            return JSONResponse({"name": name, "ready": True, "report": report.to_dict()})
        message = f"failed to load {name!r}: {report.reason}"
        return JSONResponse({"error": message, "report": report.to_dict()}, status_code=400)

    @app.post("/v2/repository/models/{name}/unload")
    async def unload(name: str, request: Request) -> dict[str, Any]:
        await read_body(request, limit=REPOSITORY_BODY_LIMIT, where=f"unload of {name!r}")
        freed = await plane.unload(name)
        return {"name": name, "freed_mb": freed}


@contextmanager
def serve_in_thread(app: FastAPI, *, port: int, host: str = "127.0.0.1", ready_timeout_s: float = 120.0) -> Iterator[str]:
    """Run ``app`` with uvicorn in a daemon thread; yields its base URL once its start-up loads have finished.

    (Whatever their outcome: a host with a model that failed to load answers ``/v2/health/ready`` with 503.)
    For tests and for flows that need a host on loopback; the server stops when the ``with`` block ends.
    """
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name=f"prewarm-host-{port}", daemon=True)
    thread.start()
    url = f"http://{host}:{port}"
    deadline = time.monotonic() + ready_timeout_s
    try:
        while True:
            if not thread.is_alive():
                raise RuntimeError(f"the host on port {port} stopped during start-up; is the port taken?")
            try:
                if httpx.get(f"{url}/v2/health/live", timeout=2.0).status_code == 200 and app.state.plane.started.is_set():
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the host on port {port} was not ready after {ready_timeout_s} s")
            time.sleep(0.05)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
