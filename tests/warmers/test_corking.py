"""A response leaves in one TCP segment, so a client that reads only its headers keeps its connection."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import geventhttpclient.connectionpool as pool_module
import numpy as np
import pytest
import tritonclient.http as triton

from tests.warmers.conftest import HostFactory, make_engine, raw_entry, write_fleet
from warmers.corking import TCP_CORK, Corked, tcp_socket

pytestmark = pytest.mark.skipif(TCP_CORK is None, reason="TCP_CORK is Linux's")


class RecordingSocket:
    family, type = socket.AF_INET, socket.SOCK_STREAM

    def __init__(self) -> None:
        self.cork: list[int] = []

    def setsockopt(self, level: int, option: int, value: int) -> None:
        assert (level, option) == (socket.IPPROTO_TCP, TCP_CORK)
        self.cork.append(value)


def run_messages(messages: list[dict], *, fail_after: int | None = None) -> tuple[RecordingSocket, list[str]]:
    sock, sent = RecordingSocket(), []

    async def send(message: dict) -> None:
        sent.append(f"{message['type']}:{sock.cork[-1] if sock.cork else '-'}")

    corked = Corked(send, sock)

    async def respond() -> None:
        try:
            for index, message in enumerate(messages):
                if fail_after is not None and index == fail_after:
                    raise RuntimeError("the app failed half-way")
                await corked(message)
        finally:
            corked.uncork()

    with pytest.raises(RuntimeError) if fail_after is not None else _nothing():
        asyncio.run(respond())
    return sock, sent


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: object) -> None:
        return None


START = {"type": "http.response.start", "status": 200, "headers": []}


def test_the_headers_wait_for_the_body_and_leave_with_it() -> None:
    sock, sent = run_messages([START, {"type": "http.response.body", "body": b"{}"}])
    assert sent == ["http.response.start:1", "http.response.body:1"]  # both written while corked
    assert sock.cork == [1, 0]  # uncorked once the body is complete


def test_a_streamed_body_is_uncorked_at_its_last_chunk_only() -> None:
    chunks = [{"type": "http.response.body", "body": b"a", "more_body": True},
              {"type": "http.response.body", "body": b"b", "more_body": True},
              {"type": "http.response.body", "body": b""}]
    sock, _ = run_messages([START, *chunks])
    assert sock.cork == [1, 0]


def test_a_response_that_fails_half_way_is_uncorked() -> None:
    sock, sent = run_messages([START, {"type": "http.response.body", "body": b"{}"}], fail_after=1)
    assert sent == ["http.response.start:1"] and sock.cork == [1, 0]


def test_no_socket_to_reach_means_responses_go_out_as_before() -> None:
    async def plain_send(message: dict) -> None:
        return None

    assert tcp_socket(plain_send) is None


def test_a_whole_response_arrives_in_one_read(start_host: HostFactory, tmp_path: Path) -> None:
    url = start_host(fleet=write_fleet(tmp_path / "fleet", [raw_entry("reranker")]), load_on_startup=False)
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as conn:
        for _ in range(20):
            conn.sendall(b"GET /v2/models/reranker/config HTTP/1.1\r\nHost: x\r\n\r\n")
            data = conn.recv(1 << 16)
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
            assert len(body) == length > 0


def test_tritonclient_keeps_its_connection_across_loads(
    start_host: HostFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = start_host(fleet=write_fleet(tmp_path / "fleet", [raw_entry("reranker")]),
                     engine=make_engine(tmp_path / "engine"), load_on_startup=False, loopback_warmup=0)
    opened: list[int] = []
    create = pool_module.ConnectionPool._create_socket

    def counting_create(self):  # type: ignore[no-untyped-def]
        opened.append(1)
        return create(self)

    monkeypatch.setattr(pool_module.ConnectionPool, "_create_socket", counting_create)
    client = triton.InferenceServerClient(url=url.removeprefix("http://"))
    inputs = []
    for name in ("query", "document"):
        item = triton.InferInput(name, [1, 64], "FP32")
        item.set_data_from_numpy(np.zeros((1, 64), dtype=np.float32))
        inputs.append(item)
    client.load_model("reranker")
    client.infer("reranker", inputs)
    for _ in range(8):
        client.unload_model("reranker")
        client.load_model("reranker")  # tritonclient leaves the body of a 200 unread
        client.infer("reranker", inputs)
    client.close()
    assert len(opened) == 1
