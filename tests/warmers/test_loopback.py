"""A load's last warm-up pass goes through the host's own HTTP listener and stays out of the client figures."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest

from tests.warmers import fault_zoo
from tests.conftest import free_port
from tests.warmers.conftest import HostFactory, make_engine, raw_entry, write_fleet
from tests.warmers.test_host import reranker_request
from tests.warmers.test_host_metrics import samples
from warmers import host as host_module
from warmers import loopback as loopback_module
from warmers.loopback import WARMUP_HEADER, LoopbackWarmer, base_url, loopback_requests

REQUESTS = "prewarm_inference_requests_total"


def recorded_host(start_host: HostFactory, tmp_path: Path, **kwargs: object) -> str:
    entry = raw_entry("reranker", name="recorded", factory="tests.warmers.fault_zoo:thread_recording_reranker")
    fleet = write_fleet(tmp_path / "fleet", [entry])
    return start_host(fleet=fleet, engine=make_engine(tmp_path / "engine"), load_on_startup=False, **kwargs)


def test_a_load_ends_with_requests_through_the_listener_on_the_serving_thread(
    start_host: HostFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, str | None, str | None]] = []
    read_body = host_module.read_body

    async def recording_read_body(request, *, limit, where):  # type: ignore[no-untyped-def]
        seen.append((request.url.path, request.headers.get(WARMUP_HEADER), request.headers.get("inference-header-content-length")))
        return await read_body(request, limit=limit, where=where)

    monkeypatch.setattr(host_module, "read_body", recording_read_body)
    url = recorded_host(start_host, tmp_path, loopback_warmup=4)
    fault_zoo.THREADS.clear()
    assert httpx.post(f"{url}/v2/repository/models/recorded/load", json={}).status_code == 200
    over_http = [s for s in seen if s[0].endswith("/infer")]
    assert [s[0] for s in over_http] == ["/v2/models/recorded/versions/1/infer"] * 4
    assert all(s[1] for s in over_http)  # marked as the host's own
    assert [s[2] is not None for s in over_http] == [True, False, True, False]  # binary and JSON alternate
    # they ran the model on its inference thread, the one clients' requests then use
    warm_threads = set(fault_zoo.THREADS)
    assert httpx.post(f"{url}/v2/models/recorded/infer", json=reranker_request()).status_code == 200
    assert len(warm_threads) == 1 and set(fault_zoo.THREADS) == warm_threads


def test_the_hosts_own_requests_are_not_in_statistics_or_request_metrics(start_host: HostFactory, tmp_path: Path) -> None:
    url = recorded_host(start_host, tmp_path, loopback_warmup=4)
    assert httpx.post(f"{url}/v2/repository/models/recorded/load", json={}).status_code == 200
    stats = httpx.get(f"{url}/v2/models/recorded/stats").json()["model_stats"][0]
    assert stats["inference_count"] == 0 and stats["inference_stats"]["success"]["count"] == 0
    assert sum(samples(url, REQUESTS).values()) == 0
    assert httpx.post(f"{url}/v2/models/recorded/infer", json=reranker_request()).status_code == 200
    stats = httpx.get(f"{url}/v2/models/recorded/stats").json()["model_stats"][0]
    assert stats["inference_stats"]["success"]["count"] == 1
    assert samples(url, REQUESTS) == {"model=recorded,version=1,outcome=200": 1.0}


def test_a_client_cannot_pass_its_requests_off_as_the_hosts(start_host: HostFactory, tmp_path: Path) -> None:
    url = recorded_host(start_host, tmp_path, loopback_warmup=2)
    assert httpx.post(f"{url}/v2/repository/models/recorded/load", json={}).status_code == 200
    forged = httpx.post(f"{url}/v2/models/recorded/infer", json=reranker_request(), headers={WARMUP_HEADER: "0" * 32})
    assert forged.status_code == 200
    assert httpx.get(f"{url}/v2/models/recorded/stats").json()["model_stats"][0]["inference_count"] == 1


def test_zero_loopback_requests_sends_none(start_host: HostFactory, tmp_path: Path) -> None:
    url = recorded_host(start_host, tmp_path, loopback_warmup=0)
    fault_zoo.THREADS.clear()
    assert httpx.post(f"{url}/v2/repository/models/recorded/load", json={}).status_code == 200
    with_none = len(fault_zoo.THREADS)
    url = recorded_host(start_host, tmp_path / "two", loopback_warmup=2)
    fault_zoo.THREADS.clear()
    assert httpx.post(f"{url}/v2/repository/models/recorded/load", json={}).status_code == 200
    assert len(fault_zoo.THREADS) == with_none + 2


def test_the_loopback_pass_ignores_proxies_from_the_environment(
    start_host: HostFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_pass_url = recorded_host(start_host, tmp_path, loopback_warmup=2)
    without_url = recorded_host(start_host, tmp_path / "none", loopback_warmup=0)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "")
    counts = []
    for url in (with_pass_url, without_url):
        fault_zoo.THREADS.clear()
        with httpx.Client(trust_env=False) as client:
            assert client.post(f"{url}/v2/repository/models/recorded/load", json={}).status_code == 200
        counts.append(len(fault_zoo.THREADS))
    assert counts[0] == counts[1] + 2  # both loopback requests reached the host, not the proxy


def test_the_loopback_pass_authenticates_on_a_guarded_host(start_host: HostFactory, tmp_path: Path) -> None:
    url = recorded_host(start_host, tmp_path, loopback_warmup=2, token="loopback-token")
    fault_zoo.THREADS.clear()
    auth = {"Authorization": "Bearer loopback-token"}
    assert httpx.post(f"{url}/v2/repository/models/recorded/load", json={}, headers=auth).status_code == 200
    without = len(fault_zoo.THREADS)
    assert httpx.post(f"{url}/v2/repository/models/recorded/unload", json={}, headers=auth).status_code == 200
    url_open = recorded_host(start_host, tmp_path / "open", loopback_warmup=0)
    fault_zoo.THREADS.clear()
    assert httpx.post(f"{url_open}/v2/repository/models/recorded/load", json={}).status_code == 200
    assert without == len(fault_zoo.THREADS) + 2  # both loopback requests got through the token check


def test_a_failed_loopback_pass_is_logged_and_leaves_the_model_ready(
    start_host: HostFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(loopback_module, "base_url", lambda server, scheme: "http://127.0.0.1:9")  # nothing listens
    monkeypatch.setattr(host_module, "base_url", loopback_module.base_url)
    url = recorded_host(start_host, tmp_path, loopback_warmup=2)
    with caplog.at_level("WARNING", logger="warmers.loopback"):
        load = httpx.post(f"{url}/v2/repository/models/recorded/load", json={})
    assert load.status_code == 200 and load.json()["ready"] is True
    assert "loopback warm-up of recorded:1 failed: ConnectError" in caplog.text
    assert httpx.get(f"{url}/v2/models/recorded/ready").status_code == 200


def test_loopback_requests_use_the_primary_bucket_in_both_forms(example_specs: dict) -> None:
    spec = example_specs["reranker"]
    requests = loopback_requests(spec, 3)
    assert [r.header_length is not None for r in requests] == [True, False, True]
    assert requests[0] == loopback_requests(spec, 1)[0]  # seeded
    header = orjson.loads(requests[0].body[: requests[0].header_length])
    assert [i["shape"] for i in header["inputs"]] == [[1, 64], [1, 64]]  # the primary bucket (batch 1)


def test_loopback_requests_name_outputs_as_tritonclient_does(example_specs: dict) -> None:
    spec = example_specs["reranker"]
    binary, text = loopback_requests(spec, 2, ["score"])
    header = orjson.loads(binary.body[: binary.header_length])
    assert header["outputs"] == [{"name": "score", "parameters": {"binary_data": True}}] and "parameters" not in header
    assert binary.body[binary.header_length:] == loopback_requests(spec, 1)[0].body[loopback_requests(spec, 1)[0].header_length:]
    assert orjson.loads(text.body)["outputs"] == [{"name": "score", "parameters": {"binary_data": False}}]
    assert text.header_length is None


@pytest.mark.parametrize(
    ("server", "scheme", "url"),
    [(("127.0.0.1", 8000), "http", "http://127.0.0.1:8000"), (("::1", 9000), "https", "https://[::1]:9000"),
     (None, "http", None), (("/tmp/host.sock", None), "http", None)],
)
def test_base_url_is_where_the_request_reached_the_host(server: object, scheme: str, url: str | None) -> None:
    assert base_url(server, scheme) == url  # type: ignore[arg-type]


def test_marks_differ_between_hosts_and_are_compared_exactly() -> None:
    one, two = LoopbackWarmer(requests=1), LoopbackWarmer(requests=1)
    mark = one._mark
    assert one.is_warmup({WARMUP_HEADER: mark}) and not two.is_warmup({WARMUP_HEADER: mark})
    assert not one.is_warmup({}) and not one.is_warmup({WARMUP_HEADER: mark[:-1]})


def test_start_up_loads_end_with_the_pass_before_the_host_reports_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`prewarm serve` preloads: the same requests through the listener, all answered before ready."""
    seen: list[str] = []
    read_body = host_module.read_body

    async def recording_read_body(request, *, limit, where):  # type: ignore[no-untyped-def]
        if request.headers.get(WARMUP_HEADER):
            seen.append(request.url.path)
        return await read_body(request, limit=limit, where=where)

    monkeypatch.setattr(host_module, "read_body", recording_read_body)
    entry = raw_entry("reranker", name="recorded", factory="tests.warmers.fault_zoo:thread_recording_reranker")
    fleet = write_fleet(tmp_path / "fleet", [entry])
    port = free_port()
    app = host_module.create_app(fleet=fleet, engine=make_engine(tmp_path / "engine"), load_on_startup=True,
                                 loopback_warmup=3, self_url=f"http://127.0.0.1:{port}")
    with host_module.serve_in_thread(app, port=port) as url:
        assert seen == ["/v2/models/recorded/versions/1/infer"] * 3  # before serve_in_thread saw it started
        assert httpx.get(f"{url}/v2/health/ready").status_code == 200
        assert httpx.get(f"{url}/v2/models/recorded/stats").json()["model_stats"][0]["inference_count"] == 0


def test_without_its_own_address_a_host_starts_without_the_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[str] = []
    monkeypatch.setattr(LoopbackWarmer, "run", lambda self, url, spec, outputs=(): sent.append(spec.name) or 0)
    entry = raw_entry("reranker", name="recorded", factory="tests.warmers.fault_zoo:thread_recording_reranker")
    app = host_module.create_app(fleet=write_fleet(tmp_path / "fleet", [entry]), engine=make_engine(tmp_path / "e"),
                                 load_on_startup=True, loopback_warmup=3)
    with host_module.serve_in_thread(app, port=free_port()) as url:
        assert httpx.get(f"{url}/v2/health/ready").status_code == 200
    assert sent == []


@pytest.mark.parametrize(
    ("host", "url"),
    [("0.0.0.0", "http://127.0.0.1:8000"), ("::", "http://[::1]:8000"), ("10.1.2.3", "http://10.1.2.3:8000"),
     ("::1", "http://[::1]:8000"), ("localhost", "http://localhost:8000")],
)
def test_serve_reaches_its_own_listener(host: str, url: str) -> None:
    from prewarm.cli.serve import self_url

    assert self_url(host, 8000) == url
