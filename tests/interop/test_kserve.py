"""V2Target, V2Client and ``prewarm warm`` against a real KServe 0.16 ``ModelServer`` on loopback.

KServe answers every versioned route with 501 and has no repository index (404): V2Target detects the first
and uses the version-less routes, V2Client.index asks each model's ready route instead. Its repository
extension loads through ``ModelRepository.load()``, which KServe's own class leaves empty.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine

from db.models import WarmStatus
from db.session import session_scope
from db.warm import warm_runs_for
from prewarm.settings import reset_settings
from tests.interop.conftest import Server, foreign_fleet, foreign_spec, prewarm_cli
from tests.interop.gateway import gateway
from warmers import V2Target
from warmers.errors import MetadataMismatchError, TargetError
from warmers.targets import V2Client

pytestmark = pytest.mark.slow

CLIENT_STAGES = {"load", "metadata", "cold_first_request", "warmup", "validate"}


def test_kserve_warms_on_version_less_routes(kserve: Server) -> None:
    with V2Target(kserve.url) as target:
        report = target.warm(foreign_spec("doubler"))
        assert report.ready, report.reason
        assert CLIENT_STAGES <= set(report.stage_seconds)
        assert report.cold_first_request_ms and report.warm_first_request_ms and report.steady_p99_ms
        assert target.versioned_routes is False  # detected from KServe's 501
        assert target.model_path("doubler", "1") == "/v2/models/doubler"
    told = V2Target(kserve.url, versioned_routes=False)
    assert told.warm(foreign_spec("doubler", version="7")).ready


def test_kserve_index_falls_back_to_ready_routes(kserve: Server) -> None:
    with V2Client(kserve.url) as client:
        client.unload("tripler")
        index = {m.name: m for m in client.index(names=["tripler"])}
        assert index["doubler"].ready and index["doubler"].version is None
        assert index["tripler"].state == "UNAVAILABLE"
        assert [m.name for m in client.index(names=["tripler"], ready_only=True)] == ["doubler"]


def test_kserve_loads_unloads_and_loads_again_with_a_building_repository(kserve: Server) -> None:
    with V2Target(kserve.url) as target:
        assert target.warm(foreign_spec("tripler")).ready
        assert target.ready("tripler", "1") and "tripler" in [m.name for m in target.index(ready_only=True)]
        assert target.unload("tripler", "1") is True
        assert not target.ready("tripler")
        assert target.unload("tripler") is False  # KServe answers 404 for a model it does not hold
        assert target.warm(foreign_spec("tripler")).ready


def test_kserve_default_repository_cannot_load_an_unloaded_model_back(kserve_default_repository: Server) -> None:
    with V2Client(kserve_default_repository.url) as client:
        client.load("doubler")  # registered at start: the load is a no-op that answers 200
        assert client.unload("doubler") is True
        with pytest.raises(TargetError, match=r"load of 'doubler' failed \(HTTP 503\): Model with name doubler"):
            client.load("doubler")


def test_kserve_warm_up_inputs_are_checked_against_its_metadata(kserve: Server) -> None:
    spec = foreign_spec("doubler").model_dump()
    spec["warmup"]["inputs"][0]["datatype"] = "FP64"
    with pytest.raises(MetadataMismatchError, match=r"input 'x': datatype FP64 but the server expects FP32"):
        V2Target(kserve.url).check_inputs(type(foreign_spec("doubler")).model_validate(spec))
    report = V2Target(kserve.url).warm(foreign_spec("doubler", shape=["batch", 4, 1]))
    assert report.error_type == "MetadataMismatchError"
    assert "input 'x': shape [batch, 4, 1] has 3 dimensions, the server's [-1, 4] has 2" in (report.error or "")


def test_kserve_a_model_that_declares_no_inputs_is_warmed_unchecked(
    kserve: Server, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="warmers.targets"):
        assert V2Target(kserve.url).warm(foreign_spec("halver")).ready
    assert "declares no inputs of 'halver': warm-up inputs not checked" in caplog.text
    wrong = V2Target(kserve.url).warm(foreign_spec("halver", shape=["batch", 3]))
    assert wrong.error_type == "TargetError"  # caught by the model itself, at the cold first request
    assert "inference on 'halver' failed (HTTP 500): ValueError : x must have shape [-1, 4]" in (wrong.error or "")
    assert "metadata" in wrong.stage_seconds and "warmup" not in wrong.stage_seconds


def test_kserve_errors_carry_its_status_and_body(kserve: Server) -> None:
    report = V2Target(kserve.url).warm(foreign_spec("nope"))  # KServe answers an unknown model's load with 503
    assert report.error_type == "TargetError"
    assert "load of 'nope' failed (HTTP 503): Model with name nope is not ready." in (report.error or "")
    assert "no model 'nope' in this repository" in (report.error or "")
    body = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}
    expected = r"inference on 'doubler' failed \(HTTP 500\): ValueError : x must have shape \[-1, 4\], got \[1, 3"
    with pytest.raises(TargetError, match=expected):
        V2Client(kserve.url).infer("doubler", None, body)


def test_prewarm_warm_on_kserve_behind_a_token_gateway_records_the_run(
    kserve: Server, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = prewarm_cli
    warmup = {"inputs": [{"name": "x", "datatype": "FP32", "shape": ["batch", 4]}], "buckets": {"batch": [1, 2]},
              "iterations": 2, "probes": 5}
    assert cli("models", "import", foreign_fleet(tmp_path, [{"name": "doubler", "warmup": warmup}])).exit_code == 0
    with gateway(kserve.url, token="kserve-token") as url:
        refused = cli("warm", "doubler", "--target", url)
        assert refused.exit_code == 1 and "HTTP 401" in refused.stderr
        monkeypatch.setenv("PREWARM_HOST__TOKEN", "kserve-token")
        reset_settings()
        result = cli("warm", "doubler", "--target", url, "--json", "--no-versioned-routes")
        assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["ready"] and CLIENT_STAGES <= set(document["stage_seconds"])
    with session_scope(engine) as session:
        runs = warm_runs_for(session, model="doubler")
        assert [run.status for run in runs] == [WarmStatus.READY, WarmStatus.FAILED]
        assert runs[0].id == document["warm_run_id"] and runs[0].target == url
        assert runs[0].cold_first_request_ms and runs[0].steady_p99_ms
        assert CLIENT_STAGES <= set(runs[0].stage_seconds)
        assert "missing or wrong bearer token" in (runs[1].error or "")
