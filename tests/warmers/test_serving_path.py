"""Warm-up and validation take the serving path: the codec, JSON and binary, and the thread clients use."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from tests.warmers import fault_zoo
from tests.warmers.conftest import HostFactory, make_engine, raw_entry, write_fleet
from tests.warmers.test_host import reranker_request
from warmers import pipeline


def test_warm_up_runs_on_the_thread_that_serves_clients(
    start_host: HostFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forms: list[str] = []
    parse = pipeline.parse_request

    def recording_parse(model, body, header_length):  # type: ignore[no-untyped-def]
        forms.append("json" if header_length is None else "binary")
        return parse(model, body, header_length)

    monkeypatch.setattr(pipeline, "parse_request", recording_parse)
    fault_zoo.THREADS.clear()
    entry = raw_entry("reranker", name="recorded", factory="tests.warmers.fault_zoo:thread_recording_reranker")
    engine = make_engine(tmp_path / "engine")
    url = start_host(fleet=write_fleet(tmp_path / "fleet", [entry]), engine=engine, load_on_startup=False,
                     loopback_warmup=3)
    load = httpx.post(f"{url}/v2/repository/models/recorded/load", json={})
    assert load.status_code == 200, load.text
    warm_threads = set(fault_zoo.THREADS)
    runs = len(fault_zoo.THREADS)
    spec = engine.get("recorded").spec
    # cold request, 3 buckets + the primary again x 3 iterations, 1 + 20 probes, 5 idle probes, 3 over HTTP
    assert runs == 1 + 4 * spec.warmup.iterations + spec.warmup.probes + 1 + pipeline.IDLE_PROBES + 3
    assert {"json", "binary"} <= set(forms) and len(forms) == runs
    for _ in range(3):
        assert httpx.post(f"{url}/v2/models/recorded/infer", json=reranker_request(batch=1)).status_code == 200
    assert set(fault_zoo.THREADS) == warm_threads and len(warm_threads) == 1
    assert threading.get_ident() not in warm_threads
    thread = next(t for t in threading.enumerate() if t.ident in warm_threads)
    assert thread.name.startswith("prewarm-infer-recorded:1")
    report = load.json()["report"]
    assert report["first_after_idle_ms"] > 0 and report["warm_first_request_ms"] > 0 and report["cold_first_request_ms"] > 0
