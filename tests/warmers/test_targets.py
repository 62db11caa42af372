"""Warm targets: V2Target against the host over loopback HTTP, and the in-process engine through warm()."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from prewarm.fleet import ModelSpec
from tests.conftest import free_port
from tests.warmers.conftest import HostFactory, raw_entry, write_fleet
from warmers import Baseline, V2Target, warm


@pytest.fixture
def host(start_host: HostFactory, tmp_path: Path) -> str:
    fleet = write_fleet(tmp_path / "fleet", [
        raw_entry("reranker"), raw_entry("embedder"), raw_entry("embedder", name="broken", factory="no_such_pkg:f"),
    ])
    return start_host(fleet=fleet, load_on_startup=False)


def test_v2_target_loads_warms_and_probes(host: str, example_specs: dict[str, ModelSpec]) -> None:
    spec = example_specs["embedder"]
    report = warm(spec, target=V2Target(host), baseline=Baseline(p50_ms=10_000.0))
    assert report.ready, report.reason
    assert report.target == host and report.device_class.startswith("cpu:")
    assert {"load", "cold_first_request", "warmup", "validate"} <= set(report.stage_seconds)
    assert {"server_fetch", "server_load", "server_warmup"} <= set(report.stage_seconds)
    assert report.cold_first_request_ms and report.warm_first_request_ms and report.steady_p50_ms
    assert report.baseline_p50_ms == 10_000.0 and report.latency_delta_ms < 0
    assert report.memory_mb >= 8 and report.cache_hits["artifact"] is False
    assert httpx.get(f"{host}/v2/models/embedder/ready").status_code == 200


def test_v2_target_judges_against_the_baseline_client_side(host: str, example_specs: dict[str, ModelSpec]) -> None:
    report = V2Target(host).warm(example_specs["reranker"], baseline=Baseline(p50_ms=1e-6, tolerance=1.0, slack_ms=0))
    assert not report.ready and report.error is None and "steady p50" in (report.reason or "")


def test_v2_target_reports_load_failures(host: str, example_specs: dict[str, ModelSpec]) -> None:
    broken = example_specs["embedder"].model_copy(update={"name": "broken"})
    report = V2Target(host).warm(broken)
    assert not report.ready and report.error_type == "ModelLoadError"
    assert "load of 'broken' failed (400)" in (report.error or "") and "no_such_pkg" in (report.error or "")
    unknown = example_specs["embedder"].model_copy(update={"name": "unknown"})
    missing = V2Target(host).warm(unknown)
    assert missing.error_type == "ModelNotFoundError" and "not in the server's repository" in (missing.error or "")


def test_v2_target_reports_an_unreachable_server(example_specs: dict[str, ModelSpec]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    report = V2Target(url, timeout_s=2.0).warm(example_specs["reranker"])
    assert not report.ready and report.error_type == "TargetError" and url in (report.error or "")
