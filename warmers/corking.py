"""A response's status line, headers and body leave in one TCP segment (``TCP_CORK`` around each response).

uvicorn writes the headers and the body of a response in two ``send`` calls, so they travel in two segments,
and a client that reads only the headers of a response it does not need (``tritonclient``'s ``load_model``
and ``unload_model`` never read the body of a 200) finds the body still unread when it discards the response,
closes the connection, and opens a new one for its next request. That was the first request after a load in
about a third to a half of the reloads measured (the body arrived after the client had parsed the headers),
and a new connection made that request about 2x the following ones instead of about 1.35x. Corked, the
kernel holds the headers until the body joins them; the socket is uncorked when the response is complete,
and in any case when the request ends.

The socket comes from uvicorn's per-request ``send`` (its transport); with any other server, or a socket that
is not TCP, or a platform without ``TCP_CORK``, responses go out as before.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from starlette.types import Message, Send

logger = logging.getLogger(__name__)

TCP_CORK = getattr(socket, "TCP_CORK", None)


def tcp_socket(send: Send) -> Any | None:
    """The TCP socket behind uvicorn's ``send`` of one request, None when there is none to reach."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    get_extra_info = getattr(transport, "get_extra_info", None)
    if TCP_CORK is None or get_extra_info is None:
        return None
    sock = get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
        return None
    return sock


class Corked:
    """Wraps one request's ``send``: cork at ``http.response.start``, uncork once the body is complete."""

    def __init__(self, send: Send, sock: Any) -> None:
        self._send = send
        self._sock = sock
        self.corked = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self._set(True)
        try:
            await self._send(message)
        finally:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self.uncork()

    def uncork(self) -> None:
        """Let whatever the kernel holds go (also when the app failed between the headers and the body)."""
        if self.corked:
            self._set(False)

    def _set(self, on: bool) -> None:
        try:
            self._sock.setsockopt(socket.IPPROTO_TCP, TCP_CORK, 1 if on else 0)
        except OSError as exc:  # the client went away: nothing is held for it any more
            logger.debug("TCP_CORK %s: %s", on, exc)
            return
        self.corked = on
