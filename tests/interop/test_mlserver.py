"""V2Target, V2Client and ``prewarm warm`` against a real MLServer 1.7 (scikit-learn runtime) on loopback.

MLServer has versioned routes, but a model without a version answers 404 on them: V2Target falls back to the
version-less routes for it, and keeps the versioned ones for ``classifier-v`` (version 2).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine

from db.models import WarmStatus, WarmTrigger
from db.session import session_scope
from db.warm import warm_runs_for
from tests.interop.conftest import Server, foreign_fleet, foreign_spec, prewarm_cli
from tests.interop.gateway import gateway
from warmers import V2Target
from warmers.errors import MetadataMismatchError, TargetError
from warmers.targets import V2Client

pytestmark = pytest.mark.slow

CLIENT_STAGES = {"load", "metadata", "cold_first_request", "warmup", "validate"}


def test_mlserver_warms_a_model_without_a_version(mlserver: Server) -> None:
    with V2Target(mlserver.url) as target:
        report = target.warm(foreign_spec("classifier"))
        assert report.ready, report.reason
        assert CLIENT_STAGES <= set(report.stage_seconds)
        assert report.cold_first_request_ms and report.warm_first_request_ms and report.steady_p99_ms
        assert report.device_class == f"v2:{mlserver.url}" and report.error is None
        # MLServer answers 404 on the versioned routes of a model without a version: version-less it is.
        assert target.model_path("classifier", "1") == "/v2/models/classifier"
        assert target.ready("classifier", "1") and target.ready("classifier")


def test_mlserver_warms_a_versioned_model_on_its_versioned_routes(mlserver: Server) -> None:
    with V2Target(mlserver.url) as target:
        report = target.warm(foreign_spec("classifier-v", version="2"))
        assert report.ready, report.reason
        assert report.version == "2"
        assert target.model_path("classifier-v", "2") == "/v2/models/classifier-v/versions/2"


def test_mlserver_a_version_it_does_not_hold_is_named_with_the_ones_it_has(mlserver: Server) -> None:
    report = V2Target(mlserver.url).warm(foreign_spec("classifier-v", version="1"))
    assert not report.ready and report.error_type == "TargetError"
    assert "model 'classifier-v' has version(s) 2 there, not '1'" in (report.error or "")
    assert "HTTP 404: Model classifier-v with version 1 not found" in (report.error or "")


def test_mlserver_warm_up_inputs_are_checked_against_its_metadata(mlserver: Server) -> None:
    target = V2Target(mlserver.url)
    report = target.warm(foreign_spec("classifier", shape=["batch", 3]))
    assert not report.ready and report.error_type == "MetadataMismatchError"
    assert "input 'x': shape [batch, 3] does not fit the server's [-1, 4] at dimension 1" in (report.error or "")
    assert "cold_first_request" not in report.stage_seconds  # nothing was sent to the model
    renamed = foreign_spec("classifier").model_dump()
    renamed["warmup"]["inputs"][0].update(name="features", datatype="FP64")
    spec = type(foreign_spec("classifier")).model_validate(renamed)
    with pytest.raises(MetadataMismatchError, match=r"input 'features' is not one of the server's inputs \['x'\]; "
                       r"the server's input 'x' is missing from warmup.inputs"):
        target.check_inputs(spec)


def test_mlserver_errors_carry_its_status_and_body(mlserver: Server) -> None:
    client = V2Client(mlserver.url)
    client.load("classifier")
    body = {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}]}
    with pytest.raises(TargetError, match=r"inference on 'classifier' failed \(HTTP 500\): ") as caught:
        client.infer("classifier", None, body)
    # With its inference workers (parallel_workers >= 1, the default) MLServer wraps a model's exception in
    # {"error": ...}; in-process (parallel_workers 0) it answers a plain-text traceback, cut by body_excerpt.
    assert caught.value.status_code == 500
    assert caught.value.body == (
        "builtins.ValueError: X has 3 features, but LogisticRegression is expecting 4 features as input."
    )
    missing = V2Target(mlserver.url).warm(foreign_spec("nope"))
    assert missing.error_type == "ModelNotFoundError"
    assert "model 'nope' is not in the server's repository (HTTP 404: Model nope not found)" in str(missing.error)


def test_mlserver_index_ready_and_unload(mlserver: Server) -> None:
    with V2Client(mlserver.url) as client:
        client.load("classifier")
        client.load("classifier-v")
        index = {(m.name, m.version): m for m in client.index()}
        assert index[("classifier", None)].ready and index[("classifier-v", "2")].ready
        assert [m.name for m in client.index(ready_only=True)] == [m.name for m in index.values()]
        assert client.unload("classifier-v", "1") is False  # not the version it serves: left alone
        assert client.ready("classifier-v", "2")
        assert client.unload("classifier", "1") is True
        assert not client.ready("classifier")
        assert {m.name: m.state for m in client.index()}["classifier"] == "UNAVAILABLE"
        assert client.unload("classifier") is False  # already unloaded: MLServer answers 404
        client.load("classifier")
        assert client.ready("classifier")


def test_mlserver_behind_a_token_gateway(mlserver: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    with gateway(mlserver.url, token="s3cret") as url:
        refused = V2Target(url).warm(foreign_spec("classifier"))
        assert refused.error_type == "TargetError"
        assert "load of 'classifier' failed (HTTP 401): missing or wrong bearer token" in (refused.error or "")
        monkeypatch.setenv("PREWARM_HOST__TOKEN", "s3cret")
        from prewarm.settings import reset_settings

        reset_settings()
        assert V2Target(url).warm(foreign_spec("classifier")).ready
        with pytest.raises(TargetError, match=r"ready check of 'classifier' failed \(HTTP 401\)"):
            V2Client(url, token="wrong").ready("classifier")  # a refused call is an error, not "not ready"
        with pytest.raises(TargetError, match=r"repository index failed \(HTTP 401\)"):
            V2Client(url, token="wrong").index()


def test_prewarm_warm_on_mlserver_records_the_run(mlserver: Server, engine: Engine, tmp_path: Path) -> None:
    cli = prewarm_cli
    warmup = {"inputs": [{"name": "x", "datatype": "FP32", "shape": ["batch", 4]}], "buckets": {"batch": [1, 4]},
              "iterations": 2, "probes": 5}
    fleet = foreign_fleet(tmp_path, [
        {"name": "classifier", "warmup": warmup},
        {"name": "classifier-v", "version": "2", "warmup": warmup, "sla_p99_ms": 10_000},
        {"name": "classifier-v", "version": "1", "warmup": warmup},
    ])
    assert cli("models", "import", fleet).exit_code == 0

    result = cli("warm", "classifier-v:2", "--target", mlserver.url, "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["ready"] and document["version"] == "2" and CLIENT_STAGES <= set(document["stage_seconds"])

    table = cli("warm", "classifier", "--target", mlserver.url + "/")
    assert table.exit_code == 0, table.output
    assert "classifier:1 on" in table.stdout and "ready" in table.stdout and "stage metadata" in table.stdout

    failed = cli("warm", "classifier-v:1", "--target", mlserver.url)
    assert failed.exit_code == 1
    assert "classifier-v:1 is not ready on" in failed.stderr
    assert "has version(s) 2 there" in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1

    unknown = cli("warm", "classifier:9", "--target", mlserver.url)
    assert unknown.exit_code == 2
    assert "version '9' of model 'classifier' is not registered" in unknown.stderr

    with session_scope(engine) as session:
        runs = {(run.model, run.version): run for run in warm_runs_for(session)}
        assert set(runs) == {("classifier-v", "2"), ("classifier", "1"), ("classifier-v", "1")}
        good = runs[("classifier-v", "2")]
        assert good.status is WarmStatus.READY and good.trigger is WarmTrigger.MANUAL
        assert good.target == mlserver.url
        assert good.id == document["warm_run_id"] and CLIENT_STAGES <= set(good.stage_seconds)
        assert good.cold_first_request_ms and good.warm_first_request_ms
        assert good.steady_p50_ms and good.steady_p99_ms
        assert good.device_class == f"v2:{mlserver.url}" and good.time_to_ready_s
        bad = runs[("classifier-v", "1")]
        assert bad.status is WarmStatus.FAILED and "has version(s) 2 there" in (bad.error or "")
