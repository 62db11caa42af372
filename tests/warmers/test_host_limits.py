"""A host that survives hostile and careless clients: body limits, compressed bombs, deep JSON, value ranges,
large bodies parsed off the event loop, unloads and version rolls under traffic, failures during warm-up."""

from __future__ import annotations

import gzip
import json
import threading
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from prewarm.settings import reset_settings
from tests.conftest import free_port
from tests.warmers import fault_zoo
from tests.warmers.conftest import HostFactory, make_engine, raw_entry, write_fleet
from tests.warmers.test_host import reranker_request
from warmers.engine import ModelState
from warmers.host import create_app, serve_in_thread


@pytest.fixture(scope="module")
def small_limit_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """reranker and chat-small behind a 1 MiB body limit."""
    root = tmp_path_factory.mktemp("limits-host")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PREWARM_HOST__MAX_BODY_MB", "1")
        reset_settings()
        app = create_app(fleet=write_fleet(root / "fleet", [raw_entry("reranker"), raw_entry("chat-small")]),
                         engine=make_engine(root))
    reset_settings()
    with serve_in_thread(app, port=free_port()) as url:
        yield url


def test_a_declared_length_over_the_limit_is_413_before_reading(small_limit_host: str) -> None:
    body = json.dumps(reranker_request()).encode() + b" " * (2 * 2**20)
    response = httpx.post(f"{small_limit_host}/v2/models/reranker/infer", content=body)
    assert response.status_code == 413
    assert "larger than the host's limit of 1 MiB (PREWARM_HOST__MAX_BODY_MB)" in response.json()["error"]


def test_a_streamed_body_over_the_limit_is_413(small_limit_host: str) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        for _ in range(40):
            yield b" " * 65536

    response = httpx.post(f"{small_limit_host}/v2/models/reranker/infer", content=chunks())
    assert response.status_code == 413 and "larger than the host's limit" in response.json()["error"]


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_bodies_are_accepted_and_bombs_refused(small_limit_host: str, encoding: str) -> None:
    compress = gzip.compress if encoding == "gzip" else zlib.compress
    url = f"{small_limit_host}/v2/models/reranker/infer"
    plain = httpx.post(url, json=reranker_request()).json()
    packed = httpx.post(url, content=compress(json.dumps(reranker_request()).encode()),
                        headers={"Content-Encoding": encoding})
    assert packed.status_code == 200, packed.text
    assert packed.json()["outputs"] == plain["outputs"]
    bomb = compress(b"[" + b" " * (8 * 2**20) + b"]")  # 8 MiB of whitespace packs into a few KiB
    assert len(bomb) < 2**20
    refused = httpx.post(url, content=bomb, headers={"Content-Encoding": encoding})
    assert refused.status_code == 413 and "once decompressed" in refused.json()["error"]
    broken = httpx.post(url, content=b"not compressed at all", headers={"Content-Encoding": encoding})
    assert broken.status_code == 400 and f"not valid {encoding} data" in broken.json()["error"]
    unknown = httpx.post(url, content=b"{}", headers={"Content-Encoding": "br"})
    assert unknown.status_code == 415 and "Content-Encoding 'br' is not supported" in unknown.json()["error"]


def test_deeply_nested_json_is_400(small_limit_host: str) -> None:
    deep = b"[" * 200_000 + b"]" * 200_000
    response = httpx.post(f"{small_limit_host}/v2/models/reranker/infer", content=deep)
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]
    assert "depth" in response.json()["error"]
    nested_data = reranker_request(batch=1)
    nested_data["inputs"][0]["data"] = [[[[0.5]]]] * 64
    response = httpx.post(f"{small_limit_host}/v2/models/reranker/infer", json=nested_data)
    assert response.status_code == 400 and "data nests 4 levels" in response.json()["error"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([600] + [1] * 15, r"value 600 at flat index 0 is outside \[0, 512\), the range the model declares"),
        ([1] * 15 + [-1], r"value -1 at flat index 15 is outside \[0, 512\)"),
        ([1] * 15 + [2**40], r"value 1099511627776 at flat index 15 is outside"),
    ],
)
def test_token_ids_outside_the_declared_range_are_400(small_limit_host: str, data: list[int], message: str) -> None:
    import re

    tokens = {"name": "tokens", "shape": [1, 16], "datatype": "INT64", "data": data}
    response = httpx.post(f"{small_limit_host}/v2/models/chat-small/infer", json={"inputs": [tokens]})
    assert response.status_code == 400
    assert re.search(rf"model 'chat-small': input 'tokens': {message}", response.json()["error"]), response.json()
    binary = np.array(data, dtype=np.int64)
    header = json.dumps({"inputs": [{"name": "tokens", "shape": [1, 16], "datatype": "INT64",
                                     "parameters": {"binary_data_size": binary.nbytes}}]}).encode()
    raw = httpx.post(f"{small_limit_host}/v2/models/chat-small/infer", content=header + binary.tobytes(),
                     headers={"Inference-Header-Content-Length": str(len(header))})
    assert raw.status_code == 400 and re.search(message, raw.json()["error"])


def test_a_large_body_is_parsed_off_the_event_loop(start_host: HostFactory, tmp_path: Path) -> None:
    """While a ~50 MB body is parsed, the liveness probe is answered (the request is still being worked on)."""
    url = start_host(fleet=write_fleet(tmp_path / "fleet", [raw_entry("reranker")]))
    values = np.random.default_rng(0).uniform(-1, 1, 6_000_000).round(6).tolist()
    body = json.dumps({"inputs": [
        {"name": "query", "shape": [64, 64], "datatype": "FP32", "data": values},
        {"name": "document", "shape": [64, 64], "datatype": "FP32", "data": [0.0] * 4096},
    ]}).encode()
    assert 40 * 2**20 < len(body) < 64 * 2**20
    uploaded = threading.Event()

    def upload() -> Iterator[bytes]:
        for start in range(0, len(body), 2**20):
            yield body[start : start + 2**20]
        uploaded.set()

    with ThreadPoolExecutor(1) as pool:
        big = pool.submit(httpx.post, f"{url}/v2/models/reranker/infer", content=upload(),
                          headers={"Content-Length": str(len(body))}, timeout=120)
        assert uploaded.wait(timeout=120)
        live = httpx.get(f"{url}/v2/health/live", timeout=120)
        assert live.status_code == 200
        assert not big.done(), "the big request finished before the probe was answered: nothing was shown"
        answer = big.result()
    assert answer.status_code == 400 and "shape [64, 64] needs 4096 values" in answer.json()["error"]


@pytest.fixture
def gated(tmp_path: Path) -> Iterator[None]:
    fault_zoo.GATE.clear()
    fault_zoo.ENTERED.clear()
    yield
    fault_zoo.GATE.set()


def gated_request() -> dict:
    request = reranker_request(batch=1)
    request["inputs"][0]["data"] = [fault_zoo.GATE_VALUE] + [0.0] * 63
    return request


def gated_entry(**changes: object) -> dict:
    return raw_entry("reranker", name="gated", factory="tests.warmers.fault_zoo:gated_reranker", **changes)


def wait_for(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_unload_waits_for_the_request_in_flight(tmp_path: Path, gated: None) -> None:
    engine = make_engine(tmp_path)
    app = create_app(fleet=write_fleet(tmp_path / "fleet", [gated_entry()]), engine=engine)
    with serve_in_thread(app, port=free_port()) as url, ThreadPoolExecutor(2) as pool:
        in_flight = pool.submit(httpx.post, f"{url}/v2/models/gated/infer", json=gated_request(), timeout=60)
        assert fault_zoo.ENTERED.wait(timeout=60)
        unload = pool.submit(httpx.post, f"{url}/v2/repository/models/gated/unload", json={}, timeout=60)
        wait_for(lambda: engine.get("gated").state is ModelState.UNLOADING, "the unload to start draining")
        refused = httpx.post(f"{url}/v2/models/gated/infer", json=reranker_request(batch=1))
        assert refused.status_code == 503 and "is not ready: it is unloading" in refused.json()["error"]
        assert not unload.done()
        fault_zoo.GATE.set()
        answer = in_flight.result()
        assert answer.status_code == 200, answer.text
        assert answer.json()["outputs"][0]["shape"] == [1]
        assert unload.result().status_code == 200 and unload.result().json()["freed_mb"] > 0
    assert engine.get("gated").state is ModelState.UNAVAILABLE and engine.memory_used_mb == 0


def test_a_request_outliving_the_drain_time_gets_a_clean_503(tmp_path: Path, gated: None) -> None:
    engine = make_engine(tmp_path, drain_s=0.2)
    app = create_app(fleet=write_fleet(tmp_path / "fleet", [gated_entry()]), engine=engine)
    with serve_in_thread(app, port=free_port()) as url, ThreadPoolExecutor(1) as pool:
        late = pool.submit(httpx.post, f"{url}/v2/models/gated/infer", json=gated_request(), timeout=60)
        assert fault_zoo.ENTERED.wait(timeout=60)
        unload = httpx.post(f"{url}/v2/repository/models/gated/unload", json={}, timeout=60)
        assert unload.status_code == 200  # freed after 0.2 s although the request still runs
        fault_zoo.GATE.set()
        answer = late.result()
        assert answer.status_code == 503
        assert answer.json() == {"error": "model 'gated' version '1' was unloaded while this request ran; load it again"}
        assert httpx.get(f"{url}/v2/health/live").status_code == 200


def test_a_version_roll_under_traffic_serves_every_request(tmp_path: Path, gated: None) -> None:
    fleet = write_fleet(tmp_path / "fleet", [gated_entry()])
    engine = make_engine(tmp_path)
    app = create_app(fleet=fleet, engine=engine)
    with serve_in_thread(app, port=free_port()) as url, ThreadPoolExecutor(2) as pool:
        pinned = pool.submit(httpx.post, f"{url}/v2/models/gated/versions/1/infer", json=gated_request(), timeout=60)
        assert fault_zoo.ENTERED.wait(timeout=60)
        write_fleet(tmp_path / "fleet", [gated_entry(version="2")])
        roll = pool.submit(httpx.post, f"{url}/v2/repository/models/gated/load", json={}, timeout=120)
        wait_for(lambda: engine.get("gated", "1").state is ModelState.UNLOADING, "version 1 to drain")
        unpinned = httpx.post(f"{url}/v2/models/gated/infer", json=reranker_request(batch=1))
        assert unpinned.status_code == 200 and unpinned.json()["model_version"] == "2"
        fault_zoo.GATE.set()
        assert pinned.result().status_code == 200 and pinned.result().json()["model_version"] == "1"
        assert roll.result().status_code == 200
        assert httpx.get(f"{url}/v2/models/gated").json()["versions"] == ["2"]
        old = httpx.post(f"{url}/v2/models/gated/versions/1/infer", json=reranker_request(batch=1))
        assert old.status_code == 503 and "replaced by version 2" in old.json()["error"]


def test_an_index_error_in_warm_up_becomes_a_report_and_leaks_nothing(tmp_path: Path) -> None:
    entry = raw_entry("reranker", name="indexing", factory="tests.warmers.fault_zoo:indexing_reranker")
    engine = make_engine(tmp_path)
    app = create_app(fleet=write_fleet(tmp_path / "fleet", [entry, raw_entry("embedder")]), engine=engine)
    with serve_in_thread(app, port=free_port()) as url:
        used = engine.memory_used_mb
        for _ in range(3):
            load = httpx.post(f"{url}/v2/repository/models/indexing/load", json={})
            assert load.status_code == 400
            report = load.json()["report"]
            assert report["error_type"] == "WarmupError" and not report["ready"]
            assert "warm-up request failed: IndexError: index 8 is out of bounds" in report["error"]
            assert engine.get("indexing").state is ModelState.UNAVAILABLE
            assert engine.memory_used_mb == used  # the reservation was released every time
        ready = httpx.get(f"{url}/v2/health/ready")
        assert ready.status_code == 503
        assert ready.json()["reason"].startswith("model 'indexing' version '1' failed to load: ")
        index = {i["name"]: i for i in httpx.post(f"{url}/v2/repository/index", json={}).json()}
        assert index["indexing"]["state"] == "UNAVAILABLE" and "IndexError" in index["indexing"]["reason"]
        assert index["embedder"]["state"] == "READY"
        model_ready = httpx.get(f"{url}/v2/models/indexing/ready")
        assert model_ready.status_code == 400 and "IndexError" in model_ready.json()["reason"]
        assert httpx.post(f"{url}/v2/repository/models/indexing/unload", json={}).status_code == 200
        assert httpx.get(f"{url}/v2/health/ready").json() == {"ready": True}  # an unloaded failure no longer counts
