"""Recorded Prometheus API answers, served again on loopback, and the proxy that records them.

A recording maps each API call (method, path, its parameters in order) to the status and body Prometheus
answered. :class:`ReplayServer` serves a recording over real HTTP; a call it has no answer for gets a 404
API error naming the call, so a test fails loudly when prewarm asks something new.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx


def call_key(method: str, path: str, query: str, body: bytes) -> str:
    """One API call as a string: method, path, then the parameters sorted."""
    params = parse_qsl(query, keep_blank_values=True) + parse_qsl(body.decode(), keep_blank_values=True)
    return f"{method} {path} " + "&".join(f"{k}={v}" for k, v in sorted(params))


def _handler(answer: Any) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            parts = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, payload = answer(self, call_key(self.command, parts.path, parts.query, body), body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _serve  # noqa: N815

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@contextmanager
def _serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"prometheus+http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def replay(calls: dict[str, dict[str, Any]], *, token: str | None = None) -> Iterator[str]:
    """Serve ``calls``; with ``token``, every call must carry ``Authorization: Bearer <token>`` (403 otherwise)."""

    def answer(request: BaseHTTPRequestHandler, key: str, body: bytes) -> tuple[int, bytes]:
        if token is not None and request.headers.get("Authorization") != f"Bearer {token}":
            return 403, b"forbidden\n"
        if key not in calls:
            error = {"status": "error", "errorType": "not_found", "error": f"no recorded answer for {key}"}
            return 404, json.dumps(error).encode()
        return calls[key]["status"], calls[key]["body"].encode()

    with _serving(_handler(answer)) as url:
        yield url


@contextmanager
def recording(upstream: str, calls: dict[str, dict[str, Any]]) -> Iterator[str]:
    """A proxy to ``upstream`` (an http:// base URL) that records every call into ``calls``."""

    def answer(request: BaseHTTPRequestHandler, key: str, body: bytes) -> tuple[int, bytes]:
        response = httpx.request(
            request.command,
            upstream + request.path,
            content=body,
            headers={
                "Content-Type": request.headers.get("Content-Type", "application/x-www-form-urlencoded")
            },
        )
        calls[key] = {"status": response.status_code, "body": response.text}
        return response.status_code, response.content

    with _serving(_handler(answer)) as url:
        yield url
