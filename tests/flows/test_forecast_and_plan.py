"""forecast-and-plan on the example telemetry and fleet: stored forecasts and plans, idempotent scheduling."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, FlowRunFilter
from sqlalchemy import Engine, func, select

from db.models import ForecastPoint, ForecastRun, PlanStatus, WarmPlan
from db.registry import upsert_models
from db.session import session_scope
from db.warm import list_plans
from flows.forecast_and_plan import DeploymentMissingError, forecast_and_plan
from flows.warm import cool_down, warm_model
from prewarm.fleet import load_fleet
from prewarm.ingest import ingest_sources

EXAMPLES = Path(__file__).parents[2] / "examples"
# The example telemetry ends on 2026-11-22 23:00 UTC: plan the next day as if it were then.
AS_OF = datetime(2026, 11, 23, tzinfo=UTC)


@pytest.fixture
def fleet_history(history_db: Engine) -> Engine:
    with session_scope(history_db) as session:
        upsert_models(session, load_fleet(EXAMPLES / "fleet.yaml").models)
    ingest_sources([str(EXAMPLES / "telemetry.csv")], engine=history_db)
    return history_db


def test_dry_run_stores_the_forecast_and_plans_without_scheduling(fleet_history: Engine) -> None:
    summary = forecast_and_plan(
        horizon=24, schedule_runs=False, as_of=AS_OF, models_per_task=2, local_workers=2
    )
    assert summary["models"] == 4 and summary["batches"] == 2
    assert summary["windows"] > 0 and summary["scheduled"] == 0
    with session_scope(fleet_history) as session:
        run = session.get(ForecastRun, summary["forecast_run_id"])
        assert run is not None and run.models_count == 4 and run.orchestrator_run_id
        points = session.scalar(
            select(func.count()).select_from(ForecastPoint).where(ForecastPoint.run_id == run.id)
        )
        assert points == 4 * 24
        plans = list_plans(session)
        assert {p.id for p in plans} == set(summary["plan_ids"])
        assert all(p.status is PlanStatus.PLANNED and p.forecast_run_id == run.id for p in plans)
        assert all(AS_OF <= p.window_start < p.window_end for p in plans)
        assert {"chat-small", "embedder"} <= {p.model for p in plans}


def test_replanning_is_idempotent(fleet_history: Engine) -> None:
    first = forecast_and_plan(schedule_runs=False, as_of=AS_OF)
    again = forecast_and_plan(schedule_runs=False, as_of=AS_OF)
    assert again["plan_ids"] == first["plan_ids"] and again["superseded"] == 0
    with session_scope(fleet_history) as session:
        assert session.scalar(select(func.count()).select_from(WarmPlan)) == first["windows"]


def test_unknown_models_are_named(fleet_history: Engine) -> None:
    with pytest.raises(LookupError, match="models ghost are not registered"):
        forecast_and_plan(models=["ghost", "embedder"], schedule_runs=False, as_of=AS_OF)


def test_scheduling_without_deployments_says_how_to_fix_it(fleet_history: Engine) -> None:
    with pytest.raises(DeploymentMissingError, match="prefect deploy --all"):
        forecast_and_plan(as_of=AS_OF, models=["embedder"], warm_deployment="missing/missing")


def _runs_of(deployment_id: object) -> list[object]:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            flow_run_filter=FlowRunFilter(),
        )


def test_scheduled_runs_are_not_duplicated_and_vanished_windows_are_cancelled(fleet_history: Engine) -> None:
    warm_id = warm_model.to_deployment(name="warm-model").apply()
    cool_id = cool_down.to_deployment(name="cool-down").apply()
    first = forecast_and_plan(as_of=AS_OF, models=["embedder"], keep_alive_seconds=0)
    assert first["scheduled"] == first["windows"] > 0
    runs = _runs_of(warm_id)
    assert len(runs) == first["windows"] and len(_runs_of(cool_id)) == first["windows"]
    with session_scope(fleet_history) as session:
        plans = {p.id: p for p in list_plans(session)}
    for run in runs:
        plan = plans[run.parameters["plan_id"]]
        assert plan.status is PlanStatus.SCHEDULED and plan.orchestrator_run_id == str(run.id)
        assert run.state.is_scheduled()
        assert run.parameters["trigger"] == "scheduled" and run.parameters["model"] == "embedder"
        assert run.idempotency_key == plan.idempotency_key

    again = forecast_and_plan(as_of=AS_OF, models=["embedder"], keep_alive_seconds=0)
    assert again["scheduled"] == 0 and len(_runs_of(warm_id)) == len(runs)

    # A longer keep-alive changes every window's end: the old windows vanish and are replaced.
    moved = forecast_and_plan(as_of=AS_OF, models=["embedder"], keep_alive_seconds=3 * 3600)
    assert moved["superseded"] == first["windows"] and moved["cancelled"] == first["windows"]
    by_id = {str(r.id): r for r in _runs_of(warm_id)}
    for run in runs:
        assert by_id[str(run.id)].state.is_cancelled()
    with session_scope(fleet_history) as session:
        statuses = [p.status for p in list_plans(session) if p.id in plans]
        assert set(statuses) == {PlanStatus.SUPERSEDED}
    live = [r for r in by_id.values() if r.state.is_scheduled()]
    assert len(live) == moved["windows"]
    assert all(
        r.expected_start_time <= datetime.now(UTC) + timedelta(seconds=5) for r in live
    )  # past starts run now


def test_batches_run_on_a_dask_cluster_when_one_is_given(fleet_history: Engine) -> None:
    distributed = pytest.importorskip("distributed")
    local = forecast_and_plan(schedule_runs=False, as_of=AS_OF)
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    ) as cluster:
        on_dask = forecast_and_plan(
            schedule_runs=False, as_of=AS_OF, models_per_task=2, dask_address=cluster.scheduler_address
        )
    assert on_dask["batches"] == 2
    assert on_dask["plan_ids"] == local["plan_ids"]  # same windows, same idempotency keys
