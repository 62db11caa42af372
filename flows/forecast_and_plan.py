"""``forecast_and_plan``: forecast every registered model, place the windows on a pool's hosts, store the plans.

The forecast fans out per model, in batches of ``models_per_task`` (one Prefect task each; a task per single
model would spend more on orchestration than on forecasting). Batches run in parallel in local processes, or
on a Dask cluster through prefect-dask when ``dask_address`` is given. The windows are then placed on the
pool's up hosts, each replica on its own host, sticky across re-plans (``controller.planning.plan_pool``, the
function ``prewarm plan --pool P --store`` calls too). The ``reconcile-fleet`` controller carries the plans
out: no flow run per window. Re-planning updates plans in place; open windows that vanished are superseded.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import pandas as pd
from prefect import flow, get_run_logger, runtime, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner
from pydantic import Field

from controller.planning import PoolPlan, history_until, plan_pool
from db.base import utcnow
from db.forecasts import store_forecast_run
from db.registry import latest_models, spec_of
from db.session import session_scope
from flows.common import ModelName, PoolName, artifact_key, history_engine
from forecasting import ForecastReport, ForecastResult, forecast
from prewarm import columns as C
from prewarm.fleet import ModelSpec
from prewarm.settings import get_settings
from scheduling.cost_plan import CostForecast, cost_forecast
from scheduling.forecast_policy import engine_forecast
from scheduling.levels import BASE_LEVEL
from scheduling.planner import plan_models_from_fleet

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
def load_history(models: list[str], models_per_task: int, as_of: datetime | None = None) -> list[pd.DataFrame]:
    """The telemetry of ``models`` (begun before ``as_of``), in batches of ``models_per_task`` models."""
    with session_scope(history_engine()) as session:
        frame = history_until(session, models, as_of=as_of)
    names = sorted(frame[C.MODEL].unique())
    groups = [names[i : i + models_per_task] for i in range(0, len(names), models_per_task)]
    return [frame[frame[C.MODEL].isin(group)] for group in groups]


@task(cache_policy=NO_CACHE)
def forecast_batch(
    history: pd.DataFrame, horizon: int, level: float, freq: str, fast: bool = False
) -> ForecastResult:
    """Forecast one batch of models (runs in a worker process or on a Dask worker)."""
    return forecast(history, horizon=horizon, level=level, freq=freq, n_jobs=1, fast=fast)


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
def apply_cost_policy(
    batches: list[pd.DataFrame], specs: list[ModelSpec], frame: pd.DataFrame, *, horizon: int, now: datetime,
    interval: timedelta,
) -> CostForecast | None:
    """The cost policy's forecast (``scheduling.cost_plan.cost_forecast``): a level per model from backtests in
    its history, the sparse rule's replicas; None without any history."""
    history = pd.concat(batches, ignore_index=True) if batches else pd.DataFrame()
    if history.empty:
        return None
    step = pd.Timedelta(interval)
    return cost_forecast(
        history, plan_models_from_fleet(specs), forecast_fn=engine_forecast(BASE_LEVEL), horizon=horizon,
        interval=step, now=pd.Timestamp(now), lead_s=step.total_seconds(), forecast_frame=frame,
    )


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
def plan_and_store(
    frame: pd.DataFrame,
    specs: list[ModelSpec],
    *,
    pool: str,
    now: datetime,
    keep_alive_seconds: float,
    forecast_run_id: int,
) -> PoolPlan:
    """Place the forecast's windows on the pool's up hosts and store the plans (``controller.planning.plan_pool``)."""
    settings = get_settings()
    with session_scope(history_engine()) as session:
        return plan_pool(
            session,
            frame,
            specs,
            pool=pool,
            now=now,
            keep_alive_s=keep_alive_seconds,
            interval=settings.forecast_interval,
            max_warmups_per_pool=settings.controller.max_warmups_per_pool,
            default_heartbeat_s=settings.host.heartbeat_s,
            tick_s=settings.controller.tick_s,
            forecast_run_id=forecast_run_id,
        )


@task(cache_policy=NO_CACHE)
def publish_plan(planned: PoolPlan) -> None:
    """A table artifact of the plan (first 500 windows), with the hosts and the shortfall in its description."""
    rows = [
        {
            "model": w.model,
            "version": w.version,
            "host": w.host,
            "warm_from": (w.window_start - timedelta(seconds=w.lead_seconds)).isoformat(),
            "start": w.window_start.isoformat(),
            "end": w.window_end.isoformat(),
            "lead_s": round(w.lead_seconds, 1),
            "expected_demand": None if w.expected_demand is None else round(w.expected_demand, 1),
            "reason": w.reason,
        }
        for w in planned.windows[:500]
    ]
    description = (
        f"pool {planned.pool}: {len(planned.windows)} replica windows on {len(planned.hosts)} up hosts"
        + (f"; shortfall ({len(planned.shortfall)}): {'; '.join(planned.shortfall[:20])}" if planned.shortfall else "")
    )
    create_table_artifact(
        table=rows or [{"model": "-", "reason": "nothing to warm" if not planned.shortfall else "all shortfall"}],
        key=artifact_key("warm-plan", planned.pool),
        description=description,
    )


@flow(name="forecast-and-plan")
def forecast_and_plan(
    horizon: Annotated[int, Field(ge=1, le=24 * 14, description="Intervals to forecast.")] = 24,
    level: Annotated[float, Field(gt=0, lt=100, description="Prediction interval level, percent.")] = 95.0,
    models: list[ModelName] | None = None,
    pool: PoolName = "default",
    models_per_task: Annotated[int, Field(ge=1, le=100_000)] = 100,
    local_workers: Annotated[int | None, Field(ge=1, le=256)] = None,
    dask_address: str | None = None,
    keep_alive_seconds: Annotated[float, Field(ge=0)] = 600.0,
    as_of: datetime | None = None,
    fast: bool = False,
    policy: Literal["forecast", "cost"] = "forecast",
) -> dict[str, Any]:
    """Forecast every registered model (or ``models``), place the windows on ``pool``'s up hosts, store the plans.

    The ``reconcile-fleet`` controller carries the plans out. ``as_of`` plans as if it were that time (a
    replay, or the demo's compressed day): only telemetry of buckets begun by then is used. ``fast`` skips the
    per-series backtests (cheaper, less accurate). ``policy="cost"`` plans as ``prewarm simulate``'s cost
    policy: the forecast at the base level (80 %, ``level`` is not used), each model's level from backtests in
    its history, and the sparse rule's replicas.
    """
    logger = get_run_logger()
    now = as_of or utcnow()
    interval = get_settings().forecast_interval
    specs = registered_specs(models)
    names = [s.name for s in specs]
    freq = f"{int(interval.total_seconds())}s"
    if policy == "cost":
        level = BASE_LEVEL
    batches = load_history(names, models_per_task, as_of)
    started = time.perf_counter()
    with build_task_runner(dask_address, local_workers, len(batches)) as runner:
        futures = [
            runner.submit(
                forecast_batch, parameters={"history": b, "horizon": horizon, "level": level, "freq": freq, "fast": fast}
            )
            for b in batches
        ]
        results = [f.result() for f in futures]
    forecast_seconds = time.perf_counter() - started
    result = merge_forecasts(results, horizon=horizon, level=level, seconds=forecast_seconds)
    forecast_run_id = store_forecast(result, horizon, level, int(interval.total_seconds()))
    frame = result.frame
    levels: dict[str, int] = {}
    if policy == "cost":
        made = apply_cost_policy(batches, specs, frame, horizon=horizon, now=now, interval=interval)
        if made is not None:
            frame = made.frame
            for value in made.choice.level_of().values():
                key = "off" if value == 0 else f"{value:g}"
                levels[key] = levels.get(key, 0) + 1
    planned = plan_and_store(
        frame, specs, pool=pool, now=now, keep_alive_seconds=keep_alive_seconds, forecast_run_id=forecast_run_id
    )
    publish_plan(planned)
    for line in planned.shortfall[:20]:
        logger.warning("shortfall: %s", line)
    summary = {
        "forecast_run_id": forecast_run_id,
        "pool": pool,
        "hosts": list(planned.hosts),
        "models": len(specs),
        "batches": len(batches),
        "windows": len(planned.windows),
        "plan_ids": list(planned.plan_ids),
        "created": planned.created,
        "superseded": planned.superseded,
        "shortfall": list(planned.shortfall),
        "forecast_seconds": round(forecast_seconds, 3),
        "policy": policy,
        "levels": levels,
    }
    logger.info(
        "forecast %d models in %d batches in %.1f s: %d replica windows on %d hosts of pool %s, %d new, %d superseded,"
        " %d short",
        len(specs),
        len(batches),
        forecast_seconds,
        len(planned.windows),
        len(planned.hosts),
        pool,
        planned.created,
        planned.superseded,
        len(planned.shortfall),
    )
    return summary
