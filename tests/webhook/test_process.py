"""A real ``prewarm webhook`` process on loopback, probed with raw sockets: slow and vanishing clients."""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.e2e.processes import REPO, Background, http_ok, wait_until

TIMEOUT_S = 1.0


@pytest.fixture
def webhook(tmp_path: Path) -> Iterator[tuple[int, Background]]:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PREWARM_HOME": str(tmp_path / "home"),
        "PREWARM_DATABASE_URL": f"sqlite:///{tmp_path / 'history.db'}",
        "PREWARM_WEBHOOK_SECRET": "process-test-secret",
        "PREWARM_WEBHOOK_READ_TIMEOUT_S": str(TIMEOUT_S),
    }
    args = [sys.executable, "-c", "from prewarm.cli.main import app; app()", "webhook", "--port", str(port)]
    process = Background("webhook", args, env=env, log_dir=tmp_path)
    try:
        wait_until(
            http_ok(f"http://127.0.0.1:{port}/healthz"), timeout=60, what="the webhook", on_timeout=process.log_tail
        )
        yield port, process
    finally:
        process.stop()


def _seconds_until_closed(sock: socket.socket, *, limit: float) -> tuple[float, bytes]:
    """Read until the server closes the connection; returns how long that took and what it sent."""
    sock.settimeout(limit)
    started = time.monotonic()
    received = b""
    while chunk := sock.recv(4096):
        received += chunk
    return time.monotonic() - started, received


@pytest.mark.parametrize(
    "sent",
    [b"", b"POST /hooks/model-deployed HTTP/1.1\r\nHost: 127.0.0.1\r\n", b"P"],
    ids=["nothing", "headers-unfinished", "one-byte"],
)
def test_a_client_that_never_finishes_its_headers_is_closed(webhook: tuple[int, Background], sent: bytes) -> None:
    port, _ = webhook
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(sent)
        elapsed, received = _seconds_until_closed(sock, limit=10 * TIMEOUT_S + 5)
    assert received == b""
    assert elapsed < 5 * TIMEOUT_S + 2


def test_headers_after_a_finished_request_must_also_arrive_in_time(webhook: tuple[int, Background]) -> None:
    port, _ = webhook
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        time.sleep(0.3)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost")  # keeps uvicorn's keep-alive timer cancelled
        elapsed, received = _seconds_until_closed(sock, limit=30)
    assert received.startswith(b"HTTP/1.1 200")
    assert elapsed < 5 * TIMEOUT_S + 2


def test_a_body_that_stops_arriving_is_408_and_closed(webhook: tuple[int, Background]) -> None:
    port, process = webhook
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            b"POST /hooks/model-deployed HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{\"model\": "
        )
        elapsed, received = _seconds_until_closed(sock, limit=10 * TIMEOUT_S + 5)
    assert received.startswith(b"HTTP/1.1 408"), received
    assert b'"error"' in received
    assert elapsed < 5 * TIMEOUT_S + 2
    assert "Traceback" not in process.log_tail(200)


def test_a_client_disconnect_logs_one_line(webhook: tuple[int, Background]) -> None:
    port, process = webhook
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(
                b"POST /hooks/model-deployed HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n{\"mo"
            )
    # The server is still healthy, and each disconnect is one line.
    assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
    wait_until(lambda: process.log_tail(200).count("disconnected") >= 3, timeout=10, what="three log lines")
    log = process.log_tail(200)
    assert "Traceback" not in log
    lines = [line for line in log.splitlines() if line.strip() and not line.startswith("Listening on")]
    assert len(lines) == 3 and all("disconnected before sending its whole body" in line for line in lines), log
