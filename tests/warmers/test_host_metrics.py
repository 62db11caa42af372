"""The host's request and cold-start counters, the bound on label values, and the repository's miss cache."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from prewarm.fleet import ModelSpec
from prewarm.settings import reset_settings
from tests.conftest import free_port
from tests.warmers.conftest import HostFactory, make_engine, raw_entry, write_fleet
from tests.warmers.test_host import reranker_request
from warmers.dataplane import ModelRepository
from warmers.errors import ModelNotFoundError
from warmers.host import create_app, serve_in_thread
from warmers.sources import fleet_source


def samples(url: str, name: str) -> dict[str, float]:
    """Every sample of metric ``name`` in the host's /metrics, keyed by ``k=v,k=v`` in label order model, version, ..."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for sample in family.samples:
            if sample.name == name:
                order = ["model", "version", "outcome", "kind"]
                keys = sorted(sample.labels, key=lambda k: order.index(k) if k in order else len(order))
                found[",".join(f"{k}={sample.labels[k]}" for k in keys)] = sample.value
    return found


class CountingSource:
    def __init__(self, path: Path) -> None:
        self.read = fleet_source(path)
        self.calls = 0

    def __call__(self) -> list[ModelSpec]:
        self.calls += 1
        return self.read()


@pytest.fixture(scope="module")
def counted_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, CountingSource]]:
    root = tmp_path_factory.mktemp("metrics-host")
    source = CountingSource(write_fleet(root / "fleet", [raw_entry("reranker"), raw_entry("embedder")]))
    app = create_app(source=source, engine=make_engine(root), load_on_startup=False)
    with serve_in_thread(app, port=free_port()) as url:
        assert httpx.post(f"{url}/v2/repository/models/reranker/load", json={}).status_code == 200
        yield url, source


def test_requests_are_counted_by_model_version_and_status(counted_host: tuple[str, CountingSource]) -> None:
    url, _ = counted_host
    for _ in range(3):
        assert httpx.post(f"{url}/v2/models/reranker/infer", json=reranker_request()).status_code == 200
    assert httpx.post(f"{url}/v2/models/reranker/versions/1/infer", json={"inputs": []}).status_code == 400
    counted = samples(url, "prewarm_inference_requests_total")
    assert counted['model=reranker,version=1,outcome=200'] >= 3
    assert counted['model=reranker,version=1,outcome=400'] == 1
    assert samples(url, "prewarm_inference_seconds_count")['model=reranker,version=1'] >= 3


def test_unknown_names_share_one_series_and_do_not_reread_the_registry(counted_host: tuple[str, CountingSource]) -> None:
    url, source = counted_host
    before = source.calls
    names = [f"probe-{uuid.uuid4().hex[:12]}" for _ in range(200)]
    with httpx.Client() as client:
        for name in names:
            assert client.post(f"{url}/v2/models/{name}/infer", json=reranker_request()).status_code == 404
        assert client.post(f"{url}/v2/models/reranker/versions/{names[0]}/infer", json=reranker_request()).status_code == 404
    text = httpx.get(f"{url}/metrics").text
    assert not any(name in text for name in names)
    assert samples(url, "prewarm_inference_requests_total")['model=__unknown__,version=,outcome=404'] >= 201
    # misses re-read the source at most once a second: 200 misses take far fewer than 200 reads
    assert source.calls - before < 20, source.calls - before


def test_cold_starts_count_refusals_and_requests_right_after_a_load(counted_host: tuple[str, CountingSource]) -> None:
    url, _ = counted_host
    refused = httpx.post(f"{url}/v2/models/embedder/infer", json=reranker_request())
    assert refused.status_code == 503
    cold = samples(url, "prewarm_cold_starts_total")
    assert cold['model=embedder,version=1,kind=not_ready'] == 1
    assert samples(url, "prewarm_inference_requests_total")['model=embedder,version=1,outcome=503'] == 1
    # reranker was loaded moments ago: inside the default 60 s window every served request counts
    served = samples(url, "prewarm_inference_requests_total")['model=reranker,version=1,outcome=200']
    assert cold['model=reranker,version=1,kind=after_load'] == served


def test_no_after_load_count_outside_the_window(start_host: HostFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREWARM_HOST__COLD_WINDOW_S", "0")
    reset_settings()
    url = start_host(fleet=write_fleet(tmp_path / "fleet", [raw_entry("reranker")]))
    assert httpx.post(f"{url}/v2/models/reranker/infer", json=reranker_request()).status_code == 200
    assert not any("after_load" in labels for labels in samples(url, "prewarm_cold_starts_total"))


def test_repository_misses_are_cached_and_refreshes_rate_limited(tmp_path: Path) -> None:
    now = [100.0]
    source = CountingSource(write_fleet(tmp_path / "fleet", [raw_entry("reranker")]))
    repo = ModelRepository(source, miss_ttl_s=5.0, refresh_interval_s=1.0, clock=lambda: now[0])
    assert repo.find("reranker").name == "reranker" and source.calls == 1  # first lookup reads the source
    for name in ("a", "b", "c"):
        with pytest.raises(ModelNotFoundError, match=rf"model '{name}' is not in this host's repository"):
            repo.find(name)
    assert source.calls == 1  # within a second of the last read: no re-read
    now[0] += 1.5
    with pytest.raises(ModelNotFoundError):
        repo.find("a")  # still remembered as a miss
    assert source.calls == 1
    with pytest.raises(ModelNotFoundError):
        repo.find("d")  # a new name after the interval: one read
    assert source.calls == 2
    now[0] += 10
    with pytest.raises(ModelNotFoundError):
        repo.find("a")  # the miss expired
    assert source.calls == 3
    repo.find("reranker", refresh=True)  # a load always re-reads
    assert source.calls == 4
