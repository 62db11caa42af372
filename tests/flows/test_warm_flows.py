"""warm-model and post-deploy-warm in this process (target local) with the example fleet's smallest model."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from prefect.client.orchestration import get_client
from sqlalchemy import Engine, select

from db.models import WarmRun, WarmStatus, WarmTrigger
from db.registry import upsert_models
from db.session import session_scope
from db.warm import record_warm_run
from flows.post_deploy import ValidationFailedError, post_deploy_warm
from flows.warm import ModelNotRegisteredError, warm_model
from prewarm.fleet import ModelSpec, load_fleet

FLEET = Path(__file__).parents[2] / "examples" / "fleet.yaml"


def _spec(name: str = "reranker") -> ModelSpec:
    """An example model without an SLA: readiness must not hang on how busy the test machine is."""
    spec = next(m for m in load_fleet(FLEET).models if m.name == name)
    return spec.model_copy(update={"sla_p99_ms": None})


@pytest.fixture
def registered(history_db: Engine) -> ModelSpec:
    spec = _spec()
    with session_scope(history_db) as session:
        upsert_models(session, [spec])
    return spec


def test_warm_model_records_the_run_and_publishes_an_artifact(history_db: Engine, registered: ModelSpec) -> None:
    result = warm_model(registered.name)  # target local: this process
    assert result["ready"] is True
    with session_scope(history_db) as session:
        run = session.get(WarmRun, result["warm_run_id"])
        assert run is not None
        assert run.trigger is WarmTrigger.MANUAL and run.status is WarmStatus.READY and run.target == "local"
        assert run.cold_first_request_ms is not None and run.warm_first_request_ms is not None
        assert {"load", "warmup", "validate"} <= set(run.stage_seconds)
        assert run.orchestrator_run_id
    with get_client(sync_client=True) as client:
        keys = {a.key for a in client.read_latest_artifacts()}
    assert "warm-reranker" in keys


def test_warm_model_names_an_unregistered_model(history_db: Engine) -> None:
    with pytest.raises(ModelNotRegisteredError, match="model 'nope' has any version registered"):
        warm_model("nope")


def test_post_deploy_passes_against_the_previous_version_and_records_the_verdict(
    history_db: Engine, registered: ModelSpec
) -> None:
    # Version 1's history: generous latencies, so the verdict does not depend on this machine's load.
    from warmers.loading import device_class, resolve_device

    here = device_class(resolve_device("auto"))
    with session_scope(history_db) as session:
        for _ in range(3):
            record_warm_run(
                session,
                {
                    "model": registered.name,
                    "version": "1",
                    "device_class": here,
                    "ready": True,
                    "steady_p50_ms": 1000.0,
                    "warm_first_request_ms": 1000.0,
                    "time_to_ready_s": 1.0,
                },
                trigger=WarmTrigger.SCHEDULED,
                target="local",
            )
        upsert_models(session, [registered.model_copy(update={"version": "2", "sla_p99_ms": None})])
    result = post_deploy_warm(registered.name, "2")
    assert result["validation"] == {"passed": True, "baseline_version": "1", "reason": None}
    assert result["baseline_p50_ms"] == 1000.0
    with session_scope(history_db) as session:
        run = session.get(WarmRun, result["warm_run_id"])
        assert run is not None and run.trigger is WarmTrigger.POST_DEPLOY and run.version == "2"
        assert run.report["validation"]["passed"] is True
    event = _wait_for_event("prewarm.model.validation.passed", result["event_id"])
    assert event["resource"]["prefect.resource.id"] == "prewarm.model.reranker"
    assert event["payload"]["passed"] is True and event["payload"]["warm_run_id"] == result["warm_run_id"]


def _wait_for_event(name: str, event_id: str) -> dict:
    """The event ``event_id`` as the Prefect API stores it (events are delivered asynchronously)."""
    from prefect.events.worker import EventsWorker
    from prefect.settings import PREFECT_API_URL

    EventsWorker.drain_all()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = httpx.post(
            f"{PREFECT_API_URL.value()}/events/filter",
            json={
                "filter": {"event": {"name": [name]}, "occurred": {"since": "2000-01-01T00:00:00Z"}},
                "limit": 50,
            },
        ).json()
        for event in found.get("events", []):
            if event["id"] == event_id:
                return event
        time.sleep(0.5)
    raise AssertionError(f"event {name} {event_id} never reached the API")


def test_post_deploy_registers_nothing_from_outside_the_artifact_sources(
    history_db: Engine, registered: ModelSpec
) -> None:
    from prewarm.webhook import ArtifactSourceError  # registration checks as the webhook does

    with pytest.raises(ArtifactSourceError, match=r"'/etc/hostname' is outside the allowed artifact sources"):
        post_deploy_warm(registered.name, "9", artifact_uri="/etc/hostname", sha256="0" * 64)
    with session_scope(history_db) as session:
        from db.registry import get_model

        assert get_model(session, registered.name, "9") is None


def test_post_deploy_fails_the_run_when_the_new_version_misses_its_sla(
    history_db: Engine, registered: ModelSpec
) -> None:
    slow = registered.model_copy(update={"version": "3", "sla_p99_ms": 0.0001})
    with session_scope(history_db) as session:
        upsert_models(session, [slow])
    with pytest.raises(ValidationFailedError, match="reranker 3 failed validation .* exceeds the SLA"):
        post_deploy_warm(registered.name, "3")
    with session_scope(history_db) as session:
        run = session.scalars(select(WarmRun).where(WarmRun.version == "3")).one()
        assert run.report["validation"]["passed"] is False and not run.ready


def test_post_deploy_registers_an_unknown_version_from_the_previous_one(
    history_db: Engine, registered: ModelSpec
) -> None:
    result = post_deploy_warm(registered.name, "7")  # as a Prefect Cloud webhook's trigger would start it
    assert result["ready"] is True and result["version"] == "7"
    with session_scope(history_db) as session:
        from db.registry import get_model

        row = get_model(session, registered.name, "7")
        assert row is not None and row.sha256 == registered.sha256
