"""``forecast_and_plan``: forecast every registered model, store the plans, schedule the warm runs.

The forecast fans out per model, in batches of ``models_per_task`` (one Prefect task each; a task per single
model would spend more on orchestration than on forecasting). Batches run in parallel in local processes, or
on a Dask cluster through prefect-dask when ``dask_address`` is given. Each plan window becomes a flow run of
the ``warm-model`` deployment, scheduled at the window start minus the lead time under the plan's
idempotency key, and a ``cool-down`` run at the window end plus keep-alive. Re-planning updates plans in
place; windows that vanished are superseded and their scheduled runs cancelled.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import datetime, timedelta
from typing import Annotated, Any

import pandas as pd
from prefect import flow, get_run_logger, runtime, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner
from pydantic import Field

from db.base import utcnow
from db.forecasts import store_forecast_run
from db.models import PlanStatus
from db.registry import latest_models, spec_of
from db.session import session_scope
from db.telemetry import load_telemetry
from db.warm import (
    PlanWindow,
    list_plans,
    set_plan_status,
    supersede_vanished,
    time_to_ready_runs,
    upsert_plan,
)
from flows.common import (
    COOL_DOWN_DEPLOYMENT,
    WARM_DEPLOYMENT,
    ModelName,
    Target,
    artifact_key,
    history_engine,
    retry_unless,
)
from forecasting import ForecastReport, ForecastResult, forecast
from prewarm import columns as C
from prewarm.fleet import ModelSpec
from prewarm.settings import get_settings

TERMINAL_CANCELLED = ("CANCELLED", "CANCELLING")


class DeploymentMissingError(LookupError):
    """The deployment that carries out the plans does not exist on the Prefect server."""


@task(cache_policy=NO_CACHE)
def registered_specs(models: list[str] | None) -> list[ModelSpec]:
    """The newest registered version of every model (or of ``models``)."""
    with session_scope(history_engine()) as session:
        rows = latest_models(session)
    specs = [spec_of(row) for row in rows if models is None or row.name in models]
    if models is not None:
        unknown = sorted(set(models) - {s.name for s in specs})
        if unknown:
            raise LookupError(
                f"models {', '.join(unknown)} are not registered: import them with `prewarm models import`"
            )
    return specs


@task(cache_policy=NO_CACHE)
def load_history(models: list[str], models_per_task: int) -> list[pd.DataFrame]:
    """The telemetry of ``models`` from the history database, in batches of ``models_per_task`` models."""
    with session_scope(history_engine()) as session:
        frame = load_telemetry(session, models=models)
    names = sorted(frame[C.MODEL].unique())
    groups = [names[i : i + models_per_task] for i in range(0, len(names), models_per_task)]
    return [frame[frame[C.MODEL].isin(group)] for group in groups]


@task(cache_policy=NO_CACHE)
def forecast_batch(history: pd.DataFrame, horizon: int, level: float, freq: str) -> ForecastResult:
    """Forecast one batch of models (runs in a worker process or on a Dask worker)."""
    return forecast(history, horizon=horizon, level=level, freq=freq, n_jobs=1)


def build_task_runner(dask_address: str | None, local_workers: int | None, batches: int) -> TaskRunner[Any]:
    """A Dask task runner on ``dask_address`` when given, else a local process pool.

    A single batch (or a single worker) runs in a thread: starting worker processes costs seconds each
    (they import pandas, statsmodels and prefect), more than a small forecast takes.
    """
    if dask_address:
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError as exc:
            raise ImportError("dask_address needs prefect-dask: pip install 'prewarm[dask]'") from exc
        return DaskTaskRunner(address=dask_address)
    workers = min(local_workers or os.cpu_count() or 1, batches)
    if workers <= 1:
        return ThreadPoolTaskRunner(max_workers=1)
    return ProcessPoolTaskRunner(max_workers=workers)


def merge_forecasts(
    results: list[ForecastResult], *, horizon: int, level: float, seconds: float
) -> ForecastResult:
    """One forecast result out of the batches' results."""
    frames = [r.frame for r in results if not r.frame.empty]
    frame = pd.concat(frames, ignore_index=True) if frames else results[0].frame
    series = tuple(s for r in results for s in r.report.series)
    warnings = tuple(w for r in results for w in r.report.warnings)
    freq = results[0].report.freq
    report = ForecastReport(
        series=series, freq=freq, horizon=horizon, level=level, wall_seconds=seconds, warnings=warnings
    )
    return ForecastResult(frame=frame, report=report)


@task(cache_policy=NO_CACHE)
def store_forecast(result: ForecastResult, horizon: int, level: float, interval_seconds: int) -> int:
    """Store the forecast run and its points; returns the run id."""
    run_id = str(runtime.flow_run.id) if runtime.flow_run.id else None
    with session_scope(history_engine()) as session:
        run = store_forecast_run(
            session,
            result,
            horizon=horizon,
            level=level,
            interval_seconds=interval_seconds,
            orchestrator_run_id=run_id,
        )
        return run.id


@task(cache_policy=NO_CACHE)
def make_plan(
    frame: pd.DataFrame, specs: list[ModelSpec], now: datetime, keep_alive_seconds: float
) -> tuple[list[PlanWindow], list[str]]:
    """Plan windows from the forecast and the fleet, with lead times from each model's time-to-ready history."""
    from scheduling.leads import lead_times_from_runs
    from scheduling.planner import PlannerConfig, plan_models_from_fleet, plan_windows

    with session_scope(history_engine()) as session:
        runs = time_to_ready_runs(session, models=[s.name for s in specs])
    plan = plan_windows(
        frame,
        plan_models_from_fleet(specs),
        lead_times=lead_times_from_runs(runs),
        config=PlannerConfig(
            keep_alive_s=keep_alive_seconds, interval=pd.Timedelta(get_settings().forecast_interval)
        ),
        now=pd.Timestamp(now),
    )
    windows = [
        PlanWindow(
            model=row.model,
            version=row.version,
            window_start=row.window_start.to_pydatetime(),
            window_end=row.end.to_pydatetime(),
            replicas=row.replicas,
            lead_seconds=row.lead_seconds,
            idempotency_key=row.idempotency_key,
            reason=row.reason,
            expected_demand=row.expected_demand,
        )
        for row in plan.rows
    ]
    shortfall = [
        f"{s.model} {s.version} {s.window_start.isoformat()}: {s.placed}/{s.wanted} replicas ({s.reason})"
        for s in plan.shortfalls
    ]
    return windows, shortfall


@task(cache_policy=NO_CACHE)
def store_plans(
    windows: list[PlanWindow], forecast_run_id: int, models: list[str]
) -> tuple[list[int], list[dict[str, Any]]]:
    """Upsert the plans and supersede vanished windows; returns plan ids and the superseded plans' runs."""
    with session_scope(history_engine()) as session:
        ids = [upsert_plan(session, w, forecast_run_id=forecast_run_id)[0].id for w in windows]
        vanished = supersede_vanished(session, models=models, keep_keys=[w.idempotency_key for w in windows])
        return ids, [{"plan_id": p.id, "flow_run_id": p.orchestrator_run_id} for p in vanished]


@task(
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=retry_unless(DeploymentMissingError),
)
def schedule_plan_runs(
    plan_ids: list[int],
    *,
    target: str,
    warm_deployment: str,
    cool_down_deployment: str | None,
    keep_alive_seconds: float,
    api_concurrency: int = 16,
) -> int:
    """Create a ``warm-model`` run per unscheduled plan at start minus lead (idempotent), and its cool-down run.

    Runs are created ``api_concurrency`` at a time; the plans are marked scheduled in one transaction.
    """
    from prefect.utilities.asyncutils import run_coro_as_sync

    return run_coro_as_sync(
        _schedule(
            plan_ids,
            target=target,
            warm_deployment=warm_deployment,
            cool_down_deployment=cool_down_deployment,
            keep_alive_seconds=keep_alive_seconds,
            api_concurrency=api_concurrency,
        )
    )


async def _schedule(
    plan_ids: list[int],
    *,
    target: str,
    warm_deployment: str,
    cool_down_deployment: str | None,
    keep_alive_seconds: float,
    api_concurrency: int,
) -> int:
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    now = utcnow()
    wanted = set(plan_ids)
    with session_scope(history_engine()) as session:
        plans = [p for p in list_plans(session, statuses=[PlanStatus.PLANNED]) if p.id in wanted]
    if not plans:
        return 0
    gate = asyncio.Semaphore(api_concurrency)
    async with get_client() as client:
        try:
            warm = await client.read_deployment_by_name(warm_deployment)
            cool = (
                await client.read_deployment_by_name(cool_down_deployment) if cool_down_deployment else None
            )
        except ObjectNotFound as exc:
            raise DeploymentMissingError(
                f"deployment {warm_deployment!r} or {cool_down_deployment!r} is missing: run `prefect deploy --all`"
                " from the repository root, or pass schedule_runs=false to plan without scheduling"
            ) from exc

        async def schedule(plan: Any) -> tuple[int, str]:
            parameters = {
                "model": plan.model,
                "version": plan.version,
                "replicas": plan.replicas,
                "target": target,
                "trigger": "scheduled",
                "plan_id": plan.id,
            }
            start = max(now, plan.window_start - timedelta(seconds=plan.lead_seconds))
            async with gate:
                run = await _create_once(client, warm.id, parameters, start, plan.idempotency_key)
                if cool is not None:
                    # The plan's end already includes the keep-alive; cool-down skips the unload if a window follows.
                    cool_parameters = {
                        "model": plan.model,
                        "version": plan.version,
                        "target": target,
                        "plan_id": plan.id,
                        "keep_alive_seconds": keep_alive_seconds,
                    }
                    await _create_once(
                        client, cool.id, cool_parameters, plan.window_end, f"cool:{plan.idempotency_key}"
                    )
            return plan.id, str(run.id)

        created = await asyncio.gather(*(schedule(plan) for plan in plans))
    with session_scope(history_engine()) as session:
        for plan_id, run_id in created:
            set_plan_status(session, plan_id, PlanStatus.SCHEDULED, orchestrator_run_id=run_id)
    return len(created)


async def _create_once(
    client: Any, deployment_id: Any, parameters: dict[str, Any], when: datetime, key: str
) -> Any:
    """A run under idempotency ``key``; a key whose run was cancelled gets a numbered successor."""
    from prefect.states import Scheduled

    for attempt in range(20):
        run = await _with_backoff(
            lambda attempt=attempt: client.create_flow_run_from_deployment(
                deployment_id,
                parameters=parameters,
                state=Scheduled(scheduled_time=when),
                idempotency_key=key if attempt == 0 else f"{key}:{attempt}",
            )
        )
        if run.state is None or run.state.type.value not in TERMINAL_CANCELLED:
            return run
    raise RuntimeError(f"idempotency key {key!r} was cancelled 20 times; clean up its flow runs")


async def _with_backoff(call: Any, attempts: int = 6) -> Any:
    """Await ``call()``, retrying while the API answers 429 or 503 (an overloaded server, e.g. on SQLite).

    Creating runs is idempotent (keys), so a retry never duplicates one.
    """
    from prefect.exceptions import PrefectHTTPStatusError

    for attempt in range(attempts):
        try:
            return await call()
        except PrefectHTTPStatusError as exc:
            if exc.response.status_code not in (429, 503) or attempt == attempts - 1:
                raise
            await asyncio.sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def cancel_runs(vanished: list[dict[str, Any]], api_concurrency: int = 16) -> int:
    """Cancel the scheduled runs of superseded plans; returns how many were cancelled."""
    from prefect.utilities.asyncutils import run_coro_as_sync

    return run_coro_as_sync(_cancel(vanished, api_concurrency))


async def _cancel(vanished: list[dict[str, Any]], api_concurrency: int) -> int:
    from prefect import get_client
    from prefect.states import Cancelled

    gate = asyncio.Semaphore(api_concurrency)
    async with get_client() as client:

        async def cancel(item: dict[str, Any]) -> bool:
            async with gate:
                run = await client.read_flow_run(item["flow_run_id"])
                if run.state is None or not run.state.is_scheduled():
                    return False
                message = f"plan {item['plan_id']} superseded by a newer forecast"
                await client.set_flow_run_state(run.id, Cancelled(message=message), force=True)
                return True

        done = await asyncio.gather(*(cancel(item) for item in vanished if item["flow_run_id"]))
    return sum(done)


@task(cache_policy=NO_CACHE)
def publish_plan(windows: list[PlanWindow], shortfall: list[str]) -> None:
    """A table artifact of the plan (first 500 windows), with the shortfall in its description."""
    rows = [
        {
            "model": w.model,
            "version": w.version,
            "start": w.window_start.isoformat(),
            "end": w.window_end.isoformat(),
            "replicas": w.replicas,
            "lead_s": round(w.lead_seconds, 1),
            "expected_demand": None if w.expected_demand is None else round(w.expected_demand, 1),
            "reason": w.reason,
        }
        for w in windows[:500]
    ]
    description = f"{len(windows)} warm windows" + (
        f"; shortfall: {'; '.join(shortfall[:20])}" if shortfall else ""
    )
    create_table_artifact(
        table=rows or [{"model": "-", "reason": "nothing to warm"}],
        key=artifact_key("warm-plan"),
        description=description,
    )


@flow(name="forecast-and-plan")
def forecast_and_plan(
    horizon: Annotated[int, Field(ge=1, le=24 * 14, description="Intervals to forecast.")] = 24,
    level: Annotated[float, Field(gt=0, lt=100, description="Prediction interval level, percent.")] = 95.0,
    models: list[ModelName] | None = None,
    schedule_runs: bool = True,
    target: Target = "local",
    models_per_task: Annotated[int, Field(ge=1, le=100_000)] = 100,
    local_workers: Annotated[int | None, Field(ge=1, le=256)] = None,
    dask_address: str | None = None,
    warm_deployment: str = WARM_DEPLOYMENT,
    cool_down_deployment: str | None = COOL_DOWN_DEPLOYMENT,
    keep_alive_seconds: Annotated[float, Field(ge=0)] = 600.0,
    as_of: datetime | None = None,
) -> dict[str, Any]:
    """Forecast, plan and schedule warm runs for every registered model (or ``models``).

    ``as_of`` plans as if it were that time (a replay, or the demo's compressed day); runs whose start has
    passed are scheduled immediately.
    """
    logger = get_run_logger()
    now = as_of or utcnow()
    interval = get_settings().forecast_interval
    specs = registered_specs(models)
    names = [s.name for s in specs]
    freq = f"{int(interval.total_seconds())}s"
    batches = load_history(names, models_per_task)
    started = time.perf_counter()
    with build_task_runner(dask_address, local_workers, len(batches)) as runner:
        futures = [
            runner.submit(
                forecast_batch, parameters={"history": b, "horizon": horizon, "level": level, "freq": freq}
            )
            for b in batches
        ]
        results = [f.result() for f in futures]
    forecast_seconds = time.perf_counter() - started
    result = merge_forecasts(results, horizon=horizon, level=level, seconds=forecast_seconds)
    forecast_run_id = store_forecast(result, horizon, level, int(interval.total_seconds()))
    windows, shortfall = make_plan(result.frame, specs, now, keep_alive_seconds)
    plan_ids, vanished = store_plans(windows, forecast_run_id, names)
    scheduled = cancelled = 0
    if schedule_runs:
        scheduled = schedule_plan_runs(
            plan_ids,
            target=target,
            warm_deployment=warm_deployment,
            cool_down_deployment=cool_down_deployment,
            keep_alive_seconds=keep_alive_seconds,
        )
        cancelled = cancel_runs(vanished)
    publish_plan(windows, shortfall)
    summary = {
        "forecast_run_id": forecast_run_id,
        "models": len(specs),
        "batches": len(batches),
        "windows": len(windows),
        "plan_ids": plan_ids,
        "scheduled": scheduled,
        "superseded": len(vanished),
        "cancelled": cancelled,
        "shortfall": shortfall,
        "forecast_seconds": round(forecast_seconds, 3),
    }
    logger.info(
        "forecast %d models in %d batches in %.1f s (pool start included): %d windows, %d scheduled, %d superseded",
        len(specs),
        len(batches),
        forecast_seconds,
        len(windows),
        scheduled,
        len(vanished),
    )
    return summary
