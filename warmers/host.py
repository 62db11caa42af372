"""The inference host: thin FastAPI routes for the Open Inference Protocol V2 over :class:`DataPlane`.

``create_app()`` builds the app; ``prewarm serve`` runs it with uvicorn, and tests run it on loopback in a
thread. Errors of the engine map to HTTP status codes here and only here.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from warmers.dataplane import DataPlane, ModelRepository
from warmers.engine import Engine
from warmers.errors import (
    CapacityError,
    InferenceInputError,
    ModelNotFoundError,
    ModelNotReadyError,
    WarmupError,
)
from warmers.metrics import AFTER_LOAD, NOT_READY, HostMetrics
from warmers.protocol import InferenceRequest, RepositoryIndexRequest
from warmers.sources import SpecSource, default_source, fleet_source

logger = logging.getLogger(__name__)

HEADER_LENGTH = "Inference-Header-Content-Length"
STATUS = {
    ModelNotFoundError: 404,
    InferenceInputError: 400,
    ModelNotReadyError: 503,
    CapacityError: 507,
}


def _status(exc: WarmupError) -> int:
    for cls, code in STATUS.items():
        if isinstance(exc, cls):
            return code
    return 500


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


def create_app(
    *,
    fleet: str | Path | None = None,
    source: SpecSource | None = None,
    engine: Engine | None = None,
    load_on_startup: bool = True,
    token: str | None = None,
) -> FastAPI:
    """The host's FastAPI app.

    Specs come from ``source``, else the ``fleet`` file, else the registry (or the example fleet when the
    registry is empty). With ``load_on_startup`` every model is loaded and warmed in a background thread
    after start-up; ``/v2/health/ready`` answers 200 once that has finished. ``token`` (default:
    ``PREWARM_HOST__TOKEN``) is required as a bearer token on the repository and model routes when set.
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

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if load_on_startup:
            threading.Thread(target=plane.load_all, name="prewarm-startup-loads", daemon=True).start()
        else:
            plane.repository.refresh()
            plane.started.set()
        yield

    app = FastAPI(title="prewarm host", lifespan=lifespan)
    app.state.plane = plane
    app.state.metrics = metrics
    if token:
        app.add_middleware(TokenAuth, token=token, metrics=metrics)

    @app.exception_handler(WarmupError)
    async def _warmup_error(_: Request, exc: WarmupError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=_status(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": f"malformed request: {exc.errors()[0].get('msg')}"}, status_code=400)

    _health_routes(app, plane)
    _model_routes(app, plane, metrics, cold_window_s=settings.cold_window_s)
    _repository_routes(app, plane)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _health_routes(app: FastAPI, plane: DataPlane) -> None:
    @app.get("/v2/health/live")
    async def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready() -> JSONResponse:
        ok = plane.ready()
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @app.get("/v2")
    async def server_metadata() -> dict[str, Any]:
        return plane.server_metadata().model_dump()


def _model_routes(app: FastAPI, plane: DataPlane, metrics: HostMetrics, *, cold_window_s: float) -> None:
    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    async def model_metadata(name: str, version: str | None = None) -> dict[str, Any]:
        return plane.model_metadata(name, version).model_dump()

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def model_ready(name: str, version: str | None = None) -> JSONResponse:
        ok, reason = plane.model_ready(name, version)
        body: dict[str, Any] = {"name": name, "ready": ok}
        if not ok and reason:
            body["reason"] = reason
        return JSONResponse(body, status_code=200 if ok else 400)

    @app.post("/v2/models/{name}/infer")
    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer(name: str, request: Request, version: str | None = None) -> Response:
        start = time.perf_counter()
        try:
            parsed, binary = _parse_infer(await request.body(), request.headers.get(HEADER_LENGTH), name)
            response, blobs, ready_at = await plane.infer(name, version, parsed, binary)
        except WarmupError as exc:
            await _count_refusal(plane, metrics, name, version, exc)
            raise
        metrics.request_finished(
            model=response.model_name, version=response.model_version, status=200, seconds=time.perf_counter() - start
        )
        if ready_at is not None and time.monotonic() - ready_at <= cold_window_s:
            metrics.cold_start(model=response.model_name, version=response.model_version or "", kind=AFTER_LOAD)
        header = response.model_dump_json(exclude_none=True).encode()
        if not blobs:
            return Response(header, media_type="application/json")
        return Response(
            header + b"".join(blobs), media_type="application/octet-stream", headers={HEADER_LENGTH: str(len(header))}
        )


async def _count_refusal(plane: DataPlane, metrics: HostMetrics, name: str, version: str | None, exc: WarmupError) -> None:
    """Count a refused request under its model version (or ``__unknown__``); a known model not ready is a cold start."""
    known = None
    if not isinstance(exc, ModelNotFoundError):  # resolving a name may read the registry: not on the event loop
        known = await anyio.to_thread.run_sync(plane.labels, name, version)
    model, model_version = known if known is not None else (None, None)
    metrics.request_finished(model=model, version=model_version, status=_status(exc), seconds=None)
    if known is not None and isinstance(exc, ModelNotReadyError):
        metrics.cold_start(model=known[0], version=known[1], kind=NOT_READY)


def _parse_infer(body: bytes, header_length: str | None, model: str) -> tuple[InferenceRequest, dict[str, bytes]]:
    """The JSON part of a request and, with the binary extension, each input's bytes."""
    where = f"model {model!r}"
    split = len(body)
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise InferenceInputError(f"{where}: {HEADER_LENGTH} {header_length!r} does not fit a {len(body)}-byte body")
        split = int(header_length)
    try:
        payload = json.loads(body[:split])
    except ValueError as exc:
        raise InferenceInputError(f"{where}: the request body is not valid JSON ({exc})") from None
    try:
        parsed = InferenceRequest.model_validate(payload)
    except ValidationError as exc:
        raise InferenceInputError(f"{where}: {_describe(exc, payload)}") from None
    binary: dict[str, bytes] = {}
    rest, offset = body[split:], 0
    for item in parsed.inputs:
        size = (item.parameters or {}).get("binary_data_size")
        if size is None:
            continue
        if not isinstance(size, int) or size < 0 or offset + size > len(rest):
            raise InferenceInputError(f"{where}: input {item.name!r}: binary_data_size {size!r} runs past the body")
        binary[item.name] = rest[offset : offset + size]
        offset += size
    if offset != len(rest):
        raise InferenceInputError(f"{where}: {len(rest) - offset} bytes of binary data belong to no input")
    return parsed, binary


def _describe(exc: ValidationError, payload: Any) -> str:
    """The first validation error, naming the input it is about when there is one."""
    error = exc.errors()[0]
    loc = error["loc"]
    if len(loc) >= 2 and loc[0] == "inputs" and isinstance(loc[1], int):
        try:
            name = payload["inputs"][loc[1]].get("name", f"#{loc[1]}")
        except (KeyError, IndexError, TypeError, AttributeError):
            name = f"#{loc[1]}"
        field = ".".join(str(p) for p in loc[2:]) or "(the input)"
        return f"input {name!r}: field {field}: {error['msg']}"
    return f"field {'.'.join(str(p) for p in loc) or '(body)'}: {error['msg']}"


def _repository_routes(app: FastAPI, plane: DataPlane) -> None:
    @app.post("/v2/repository/index")
    async def index(request: Request) -> list[dict[str, Any]]:
        body = await request.body()
        try:
            options = RepositoryIndexRequest.model_validate_json(body or b"{}")
        except ValidationError as exc:
            raise InferenceInputError(f"repository index: {_describe(exc, None)}") from None
        return [item.model_dump() for item in plane.index(ready_only=bool(options.ready))]

    @app.post("/v2/repository/models/{name}/load")
    async def load(name: str) -> JSONResponse:
        report = await plane.load(name)
        if report.ready:
            return JSONResponse({"name": name, "ready": True, "report": report.to_dict()})
        message = f"failed to load {name!r}: {report.reason}"
        return JSONResponse({"error": message, "report": report.to_dict()}, status_code=400)

    @app.post("/v2/repository/models/{name}/unload")
    async def unload(name: str) -> dict[str, Any]:
        freed = await plane.unload(name)
        return {"name": name, "freed_mb": freed}


@contextmanager
def serve_in_thread(app: FastAPI, *, port: int, host: str = "127.0.0.1", ready_timeout_s: float = 120.0) -> Iterator[str]:
    """Run ``app`` with uvicorn in a daemon thread; yields its base URL once ``/v2/health/ready`` answers 200.

    For tests and for flows that need a host on loopback; the server stops when the ``with`` block ends.
    """
    import httpx
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
                if httpx.get(f"{url}/v2/health/ready", timeout=2.0).status_code == 200:
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
