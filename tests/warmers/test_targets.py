"""Warm targets: V2Target and V2Client against the host over loopback HTTP, and the in-process engine through warm().

MLServer and KServe are in tests/interop/.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from prewarm.fleet import ModelSpec
from prewarm.settings import reset_settings
from tests.conftest import free_port
from tests.warmers.conftest import HostFactory, raw_entry, write_fleet
from warmers import Baseline, V2Target, warm
from warmers.errors import TargetError
from warmers.targets import TensorMetadata, V2Client, body_excerpt, input_mismatches


@pytest.fixture
def host(start_host: HostFactory, tmp_path: Path) -> str:
    fleet = write_fleet(tmp_path / "fleet", [
        raw_entry("reranker"), raw_entry("embedder"), raw_entry("embedder", name="broken", factory="warmers.zoo.no_such_pkg:f"),
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
    # Against a prewarm host both first requests are the host's serving-path times (the warm one read from its
    # statistics around the client's first request), so the client's own figure for it includes HTTP on top.
    assert report.client_first_request_ms is not None and report.client_first_request_ms > report.warm_first_request_ms
    assert report.first_after_idle_ms is not None and report.steady_spread_ms is not None
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
    assert "load of 'broken' failed (HTTP 400)" in (report.error or "") and "no_such_pkg" in (report.error or "")
    unknown = example_specs["embedder"].model_copy(update={"name": "unknown"})
    missing = V2Target(host).warm(unknown)
    assert missing.error_type == "ModelNotFoundError" and "not in the server's repository" in (missing.error or "")


def test_v2_target_reports_an_unreachable_server(example_specs: dict[str, ModelSpec]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    report = V2Target(url, timeout_s=2.0).warm(example_specs["reranker"])
    assert not report.ready and report.error_type == "TargetError" and url in (report.error or "")


def test_v2_client_index_ready_and_unload_on_the_host(host: str, example_specs: dict[str, ModelSpec]) -> None:
    with V2Target(host) as target:
        assert {(m.name, m.version, m.state) for m in target.index()} >= {("reranker", "1", "UNAVAILABLE")}
        assert not target.ready("reranker", "1") and target.index(ready_only=True) == []
        assert target.warm(example_specs["reranker"], baseline=Baseline(p50_ms=10_000.0)).ready
        assert target.model_path("reranker", "1") == "/v2/models/reranker/versions/1"
        assert target.ready("reranker", "1") and target.ready("reranker")
        assert [(m.name, m.version) for m in target.index(ready_only=True)] == [("reranker", "1")]
        assert target.metadata("reranker", "1").inputs[0].shape == (-1, 64)
        assert target.unload("reranker", "2") is False  # not a version it holds: nothing is unloaded
        assert target.ready("reranker", "1")
        assert target.unload("reranker", "1") is True
        assert not target.ready("reranker", "1")


def test_v2_target_checks_the_warm_up_inputs_against_the_hosts_metadata(
    host: str, example_specs: dict[str, ModelSpec]
) -> None:
    data = example_specs["reranker"].model_dump()
    data["warmup"]["inputs"][1]["shape"] = ["batch", 63]
    report = V2Target(host).warm(ModelSpec.model_validate(data))
    assert not report.ready and report.error_type == "MetadataMismatchError"
    assert (
        "model 'reranker' version '1': the warm-up inputs do not fit the server's metadata: input 'document': "
        "shape [batch, 63] does not fit the server's [-1, 64] at dimension 1 (63, the server fixes 64). "
        "Fix warmup.inputs of the fleet entry."
    ) in (report.error or "")


def test_v2_target_names_the_versions_a_server_holds(host: str, example_specs: dict[str, ModelSpec]) -> None:
    report = V2Target(host).warm(example_specs["reranker"].model_copy(update={"version": "9"}))
    assert not report.ready and report.error_type == "TargetError"
    assert "model 'reranker' has version(s) 1 there, not '9'" in (report.error or "")
    told = V2Target(host, versioned_routes=False)
    assert told.warm(example_specs["reranker"], baseline=Baseline(p50_ms=10_000.0)).ready
    assert told.model_path("reranker", "1") == "/v2/models/reranker"


def test_input_mismatches_follow_buckets_and_wildcards(example_specs: dict[str, ModelSpec]) -> None:
    warmup = example_specs["reranker"].warmup  # query, document: FP32 [batch, 64], batch in its buckets
    fits = (TensorMetadata(name="query", datatype="FP32", shape=(-1, 64)),
            TensorMetadata(name="document", datatype="fp32", shape=(-1, -1)))
    assert input_mismatches(warmup, fits) == []
    fixed_batch = (TensorMetadata(name="query", datatype="FP32", shape=(1, 64)), fits[1])
    [problem] = input_mismatches(warmup, fixed_batch)
    assert problem.startswith("input 'query': shape [batch, 64] does not fit the server's [1, 64] at dimension 0 (batch = [")
    assert input_mismatches(warmup, (fits[0],)) == [
        "input 'document' is not one of the server's inputs ['query']"
    ]


def test_body_excerpt_keeps_the_head_and_the_last_line_of_long_bodies() -> None:
    traceback = "Traceback (most recent call last):\n" + "  File x.py, line 1, in f\n" * 200 + "ValueError: bad shape"
    excerpt = body_excerpt(httpx.Response(500, text=traceback))
    assert excerpt.startswith("Traceback (most recent call last): File x.py") and excerpt.endswith("ValueError: bad shape")
    assert len(excerpt) <= 440 and "characters ...]" in excerpt
    assert body_excerpt(httpx.Response(404, json={"error": "Model nope\nnot found"})) == "Model nope not found"
    assert body_excerpt(httpx.Response(405, json={"detail": "Method Not Allowed"})) == "Method Not Allowed"
    assert body_excerpt(httpx.Response(502)) == "(empty body)"


def test_v2_target_sends_the_hosts_token_from_the_settings_or_its_argument(
    start_host: HostFactory, tmp_path: Path, example_specs: dict[str, ModelSpec], monkeypatch: pytest.MonkeyPatch
) -> None:
    guarded = start_host(fleet=write_fleet(tmp_path / "fleet", [raw_entry("reranker")]), token="host-token",
                         load_on_startup=False)
    refused = V2Target(guarded).warm(example_specs["reranker"])
    assert not refused.ready and refused.error_type == "TargetError"
    assert "load of 'reranker' failed (HTTP 401): this route needs the host's token" in (refused.error or "")
    with pytest.raises(TargetError, match=r"repository index failed \(HTTP 401\)") as caught:
        V2Client(guarded, token="another").index()
    assert caught.value.status_code == 401 and "PREWARM_HOST__TOKEN" in (caught.value.body or "")
    monkeypatch.setenv("PREWARM_HOST__TOKEN", "host-token")
    reset_settings()
    with V2Target(guarded) as target:
        assert target.warm(example_specs["reranker"], baseline=Baseline(p50_ms=10_000.0)).ready
        assert target.ready("reranker", "1") and target.unload("reranker", "1")
