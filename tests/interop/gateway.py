"""A bearer-token gateway on loopback: how MLServer and KServe, which have no authentication of their own, are
put behind a token. It follows the host's contract: ``/v2/repository/*`` and ``/v2/models/*`` need
``Authorization: Bearer <token>`` (401 with ``{"error": ...}`` otherwise); everything else passes.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.conftest import free_port

_PROTECTED = ("/v2/repository/", "/v2/models/")


def gateway_app(upstream: str, *, token: str) -> Starlette:
    """An ASGI app that checks the token, then forwards the request to ``upstream`` as it came."""
    client = httpx.AsyncClient(base_url=upstream, timeout=60)
    expected = f"Bearer {token}".encode()

    async def forward(request: Request) -> Response:
        path = request.url.path
        given = request.headers.get("authorization", "").encode()
        if path.startswith(_PROTECTED) and not hmac.compare_digest(given, expected):
            return JSONResponse({"error": "missing or wrong bearer token"}, status_code=401)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "authorization")}
        answer = await client.request(request.method, path, content=await request.body(), headers=headers)
        kept = {k: v for k, v in answer.headers.items() if k.lower() not in ("content-length", "content-encoding",
                                                                                "transfer-encoding", "connection")}
        return Response(answer.content, status_code=answer.status_code, headers=kept)

    return Starlette(routes=[Route("/{path:path}", forward, methods=["GET", "POST"])])


@contextmanager
def gateway(upstream: str, *, token: str) -> Iterator[str]:
    """Run the gateway in front of ``upstream`` on a free loopback port; yields its URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(gateway_app(upstream, token=token), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the token gateway did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
