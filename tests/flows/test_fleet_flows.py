"""reconcile-fleet, warm-model on an inventory host and the post-deploy roll-out, against a real V2 host on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from sqlalchemy import Engine, select

from controller.reconcile import ControllerConfig, reconcile
from db.hosts import upsert_host
from db.models import FleetHold, Model, PlanStatus, WarmRun, WarmTrigger
from db.registry import upsert_models
from db.session import session_scope
from db.warm import PlanWindow, get_plan, record_warm_run, upsert_plan
from flows.post_deploy import ValidationFailedError, post_deploy_warm
from flows.reconcile import reconcile_fleet
from flows.warm import warm_model
from prewarm.fleet import ModelSpec, load_fleet
from tests.conftest import free_port
from tests.flows.test_warm_flows import _wait_for_event
from tests.warmers.conftest import make_engine
from warmers.host import create_app, serve_in_thread
from warmers.loading import device_class, resolve_device

FLEET = Path(__file__).parents[2] / "examples" / "fleet.yaml"
POOL = "p"


def _spec(name: str, **changes: object) -> ModelSpec:
    spec = next(m for m in load_fleet(FLEET).models if m.name == name)
    return spec.model_copy(update={"sla_p99_ms": None, **changes})


@pytest.fixture
def host(history_db: Engine, tmp_path: Path) -> Iterator[str]:
    """A prewarm host on loopback serving the registry (reranker and embedder), added to pool ``p`` as ``h1``."""
    with session_scope(history_db) as session:
        upsert_models(session, [_spec("reranker"), _spec("embedder")])
    app = create_app(engine=make_engine(tmp_path / "host"), load_on_startup=False)
    with serve_in_thread(app, port=free_port()) as url:
        with session_scope(history_db) as session:
            upsert_host(session, name="h1", url=url, pool=POOL, memory_mb=1000,
                        device_class=device_class(resolve_device("cpu")))
        yield url


def _ready(url: str) -> dict[str, str]:
    body = httpx.post(f"{url}/v2/repository/index", json={}, timeout=10).json()
    return {e["name"]: e["version"] for e in body if e["state"] == "READY"}


def test_reconcile_fleet_acts_as_task_runs_and_publishes_desired_vs_actual(history_db: Engine, host: str) -> None:
    t0 = datetime(2026, 11, 23, 10, tzinfo=UTC)
    with session_scope(history_db) as session:
        plan_id = upsert_plan(session, PlanWindow(
            model="reranker", version="1", window_start=t0, window_end=t0 + timedelta(hours=1), replicas=1,
            lead_seconds=60, idempotency_key="k1", host="h1", pool=POOL,
        ))[0].id
    result = reconcile_fleet(pool=POOL, as_of=t0)
    assert result["status"] == "done" and result["counts"]["warms"] == 1
    assert _ready(host) == {"reranker": "1"}
    with session_scope(history_db) as session:
        assert get_plan(session, plan_id).status is PlanStatus.DONE
    with get_client(sync_client=True) as client:
        artifact = next(a for a in client.read_latest_artifacts() if a.key == "fleet-p")
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[artifact.flow_run_id])))
    assert "warm-reranker-on-h1" in {r.name for r in runs}
    assert artifact.data and "reranker" in str(artifact.data) and "1/1 desired replicas ready" in (artifact.description or "")
    after = reconcile_fleet(pool=POOL, as_of=t0 + timedelta(hours=2))
    assert [(a["kind"], a["model"]) for a in after["actions"]] == [("unload", "reranker")]
    assert _ready(host) == {}


def test_warm_model_on_an_inventory_host_keeps_it_there(history_db: Engine, host: str) -> None:
    result = warm_model("embedder", host="h1", keep_seconds=900)
    assert result["ready"] is True and result["host"] == "h1" and result["held_until"]
    assert _ready(host) == {"embedder": "1"}
    with session_scope(history_db) as session:
        run = session.get(WarmRun, result["warm_run_id"])
        assert run is not None and run.trigger is WarmTrigger.MANUAL and run.target == host
        assert session.scalars(select(FleetHold)).one().model == "embedder"
    config = ControllerConfig(observe_timeout_s=5, heartbeat_s=15)
    tick = reconcile(POOL, engine=history_db, config=config)  # no plan wants it, the hold does: it stays
    assert tick.actions == [] and _ready(host) == {"embedder": "1"}
    later = reconcile(POOL, datetime.now(UTC) + timedelta(seconds=901), engine=history_db, config=config)
    assert [(a["kind"], a["model"]) for a in later.actions] == [("unload", "embedder")]


def _baseline(history_db: Engine, version: str) -> None:
    """Earlier successful runs of ``version`` with generous latencies: the verdict must not hang on machine load."""
    here = device_class(resolve_device("cpu"))
    with session_scope(history_db) as session:
        for _ in range(3):
            record_warm_run(
                session,
                {"model": "reranker", "version": version, "device_class": here, "ready": True,
                 "steady_p50_ms": 1000.0, "warm_first_request_ms": 1000.0, "time_to_ready_s": 1.0},
                trigger=WarmTrigger.SCHEDULED, target="earlier",
            )


def test_a_new_version_replaces_the_old_one_only_after_passing_else_rolls_back(history_db: Engine, host: str) -> None:
    assert warm_model("reranker", host="h1")["ready"] is True
    _baseline(history_db, "1")
    with session_scope(history_db) as session:
        upsert_models(session, [_spec("reranker", version="2")])
    passed = post_deploy_warm("reranker", "2", pool=POOL)
    assert passed["validation"]["passed"] is True and passed["validation"]["hosts"] == ["h1"]
    assert _ready(host) == {"reranker": "2"}  # the old version went once the new one passed
    event = _wait_for_event("prewarm.model.validation.passed", passed["event_id"])
    assert event["payload"]["rolled_back"] is False and event["payload"]["rollout"]["hosts"][0]["host"] == "h1"

    # Version 3 misses its SLA on the host: it never becomes ready there, version 2 keeps serving.
    with session_scope(history_db) as session:
        upsert_models(session, [_spec("reranker", version="3", sla_p99_ms=0.0001)])
    with pytest.raises(ValidationFailedError, match="rolled back: the old version keeps serving"):
        post_deploy_warm("reranker", "3", pool=POOL)
    assert _ready(host) == {"reranker": "2"}
    with session_scope(history_db) as session:
        rows = {m.version: m for m in session.scalars(select(Model).where(Model.name == "reranker"))}
        assert rows["3"].rolled_back_at is not None and "failed validation on h1" in (rows["3"].rolled_back_reason or "")
        assert rows["2"].rolled_back_at is None
    failed = _event_with("prewarm.model.validation.failed", version="3")
    assert failed["payload"]["rolled_back"] is True and failed["payload"]["passed"] is False
    assert failed["payload"]["rollout"]["hosts"][0]["old_serving"] is True
    tick = reconcile(POOL, engine=history_db, config=ControllerConfig(observe_timeout_s=5))
    assert tick.actions == [] and _ready(host) == {"reranker": "2"}  # the controller keeps the old version


def _event_with(name: str, *, version: str) -> dict:  # type: ignore[type-arg]
    """The newest event ``name`` about ``version``, as the Prefect API stores it (delivered asynchronously)."""
    import time

    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = httpx.post(
            f"{_api()}/events/filter",
            json={"filter": {"event": {"name": [name]}, "occurred": {"since": "2000-01-01T00:00:00Z"}}, "limit": 50},
        ).json()
        for event in found.get("events", []):
            if event["payload"].get("version") == version:
                return event
        time.sleep(0.5)
    raise AssertionError(f"no event {name} for version {version} reached the API")


def _api() -> str:
    from prefect.settings import PREFECT_API_URL

    return str(PREFECT_API_URL.value())
