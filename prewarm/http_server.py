"""Serving an ASGI app with uvicorn, with a deadline for a request's headers.

uvicorn closes idle keep-alive connections, but a client that opens a connection and sends nothing, or part
of its headers and then nothing (slowloris), is kept forever: its data cancels the keep-alive timer and no
request ever starts. :class:`HeaderTimeoutProtocol` gives every request ``header_timeout_s`` seconds, from
the connection's opening or the previous response's end, to finish its headers; then the connection is
closed. Body read timeouts belong to the app, which reads the body.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger(__name__)

MAX_HEADER_BYTES = 16 * 1024


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose next request's headers do not arrive in time."""

    header_timeout_s: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        if self.transport.is_closing():
            return
        waiting_after = self.cycle  # a request that starts replaces the cycle
        self._header_timer: asyncio.TimerHandle | None = self.loop.call_later(
            self.header_timeout_s, self._header_deadline, waiting_after
        )

    def _disarm_header_timer(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def _header_deadline(self, waiting_after: Any) -> None:
        self._header_timer = None
        if self.cycle is not waiting_after or self.transport.is_closing():
            return  # a request started in time
        client = "%s:%d" % self.client if self.client else "?"
        logger.warning("closed the connection from %s: no request headers within %.0f s", client, self.header_timeout_s)
        self.transport.close()


def protocol_with_header_timeout(header_timeout_s: float) -> type[HeaderTimeoutProtocol]:
    """A :class:`HeaderTimeoutProtocol` subclass with its own deadline (uvicorn takes a class, not an instance)."""
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout_s": header_timeout_s})


def serve(app: Any, *, host: str, port: int, header_timeout_s: float) -> None:
    """Run ``app`` until interrupted: h11 with header deadlines, bounded headers, quiet access log."""
    import uvicorn

    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        http=protocol_with_header_timeout(header_timeout_s),
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        timeout_keep_alive=5,
    )
