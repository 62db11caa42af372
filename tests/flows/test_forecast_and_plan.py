"""forecast-and-plan on the example telemetry and fleet: stored forecasts, plans placed on the pool's hosts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from db.hosts import upsert_host
from db.models import ForecastPoint, ForecastRun, PlanStatus, WarmPlan
from db.registry import upsert_models
from db.session import session_scope
from db.warm import list_plans
from flows.forecast_and_plan import forecast_and_plan
from prewarm.cli.main import app
from prewarm.fleet import load_fleet
from prewarm.ingest import ingest_sources

EXAMPLES = Path(__file__).parents[2] / "examples"
# The example telemetry ends on 2026-11-22 23:00 UTC: plan the next day as if it were then.
AS_OF = datetime(2026, 11, 23, tzinfo=UTC)


@pytest.fixture
def fleet_history(history_db: Engine) -> Engine:
    with session_scope(history_db) as session:
        upsert_models(session, load_fleet(EXAMPLES / "fleet.yaml").models)
        for name in ("h1", "h2"):
            upsert_host(session, name=name, url=f"http://{name}:8000", pool="default", memory_mb=1000)
    ingest_sources([str(EXAMPLES / "telemetry.csv")], engine=history_db)
    return history_db


def test_plans_are_stored_and_placed_one_replica_per_host(fleet_history: Engine) -> None:
    summary = forecast_and_plan(horizon=24, as_of=AS_OF, models_per_task=2, local_workers=2)
    assert summary["models"] == 4 and summary["batches"] == 2
    assert summary["windows"] > 0 and summary["hosts"] == ["h1", "h2"] and summary["shortfall"] == []
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
        assert all(p.pool == "default" and p.host in ("h1", "h2") and p.replicas == 1 for p in plans)
        assert {"chat-small", "embedder"} <= {p.model for p in plans}
        for a in plans:  # two replicas of a model at the same time are on two hosts
            for b in plans:
                if a.id < b.id and a.model == b.model and a.window_start < b.window_end and b.window_start < a.window_end:
                    assert a.host != b.host
    with get_client(sync_client=True) as client:
        artifact = next(a for a in client.read_latest_artifacts() if a.key == "warm-plan-default")
    assert "2 up hosts" in (artifact.description or "")


def test_replanning_is_idempotent_and_sticky(fleet_history: Engine) -> None:
    first = forecast_and_plan(as_of=AS_OF)
    with session_scope(fleet_history) as session:  # a bigger host joins: nothing moves to it
        upsert_host(session, name="h0", url="http://h0:8000", pool="default", memory_mb=100_000)
    again = forecast_and_plan(as_of=AS_OF)
    assert again["plan_ids"] == first["plan_ids"] and again["superseded"] == 0 and again["created"] == 0
    with session_scope(fleet_history) as session:
        assert session.scalar(select(func.count()).select_from(WarmPlan)) == first["windows"]


def test_a_pool_without_up_hosts_reports_everything_as_shortfall(fleet_history: Engine) -> None:
    summary = forecast_and_plan(as_of=AS_OF, pool="empty", models=["embedder"])
    assert summary["windows"] == 0 and summary["shortfall"]
    assert all("no up host in pool 'empty'" in line for line in summary["shortfall"])
    with get_client(sync_client=True) as client:
        artifact = next(a for a in client.read_latest_artifacts() if a.key == "warm-plan-empty")
    assert "shortfall" in (artifact.description or "")


def test_unknown_models_are_named(fleet_history: Engine) -> None:
    with pytest.raises(LookupError, match="models ghost are not registered"):
        forecast_and_plan(models=["ghost", "embedder"], as_of=AS_OF)


def test_the_plan_command_runs_the_same_steps_without_prefect(fleet_history: Engine) -> None:
    runner = CliRunner()
    args = ["plan", "--pool", "default", "--as-of", "2026-11-23T00:00:00", "--json"]
    dry = runner.invoke(app, args, catch_exceptions=False)
    assert dry.exit_code == 0, dry.output
    document = json.loads(dry.stdout)
    assert document["stored"] is False and document["hosts"] == ["h1", "h2"] and document["windows"]
    with session_scope(fleet_history) as session:
        assert session.scalar(select(func.count()).select_from(WarmPlan)) == 0  # a dry run stores nothing
    stored = json.loads(runner.invoke(app, [*args, "--store"], catch_exceptions=False).stdout)
    flow = forecast_and_plan(as_of=AS_OF)  # the flow finds exactly the plans the command stored
    assert sorted(flow["plan_ids"]) == sorted(stored["plan_ids"]) and flow["created"] == 0
    keys = sorted(w["idempotency_key"] for w in document["windows"])
    assert keys == sorted(w["idempotency_key"] for w in stored["windows"])
    bad = runner.invoke(app, ["plan", "--pool", "default", "--as-of", "yesterday"])
    assert bad.exit_code == 2 and "--as-of 'yesterday': expected an ISO-8601 time" in bad.stderr
    both = runner.invoke(app, ["plan"])
    assert both.exit_code == 2 and "pass either --input FILE" in both.stderr


def test_batches_run_on_a_dask_cluster_when_one_is_given(fleet_history: Engine) -> None:
    distributed = pytest.importorskip("distributed")
    local = forecast_and_plan(as_of=AS_OF)
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    ) as cluster:
        on_dask = forecast_and_plan(as_of=AS_OF, models_per_task=2, dask_address=cluster.scheduler_address)
    assert on_dask["batches"] == 2
    assert on_dask["plan_ids"] == local["plan_ids"]  # same windows, same idempotency keys


def test_the_cost_policy_plans_with_a_level_per_model(fleet_history: Engine) -> None:
    args = ["plan", "--pool", "default", "--as-of", "2026-11-23T00:00:00", "--json", "--policy", "cost", "--store"]
    stored = json.loads(CliRunner().invoke(app, args, catch_exceptions=False).stdout)
    assert stored["policy"] == "cost" and len(stored["levels"]) == 4
    summary = forecast_and_plan(horizon=24, as_of=AS_OF, policy="cost")
    assert summary["policy"] == "cost" and sum(summary["levels"].values()) == 4
    # the flow finds exactly the plans the command stored: the same levels, sparse replicas and windows
    assert sorted(summary["plan_ids"]) == sorted(stored["plan_ids"]) and summary["created"] == 0
    with session_scope(fleet_history) as session:
        run = session.get(ForecastRun, summary["forecast_run_id"])
        assert run is not None and run.level == 80.0  # the cost policy forecasts at the base level
        plans = list_plans(session)
        assert all(AS_OF <= p.window_start < p.window_end and p.host in ("h1", "h2") for p in plans)
