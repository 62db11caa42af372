"""The ``cost`` policy as a plan: what ``prewarm plan --policy cost`` prints, with the simulator's arithmetic.

One planning moment of :class:`~scheduling.cost_policy.CostPolicy`: each model's level from the
backtests in its history (:func:`~scheduling.cost_policy.choose_model_levels`), one base-level forecast
with each model's bound moved to its level, and the sparse rule's warm intervals over the horizon,
decided as if no request came in it (a re-plan folds in the requests that do come). The sparse
intervals join the forecast as the demand of the rule's replicas, so windows, lead times and placement are
:func:`~scheduling.planner.plan_windows`'s, exactly as for any forecast.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from prewarm import columns as C
from scheduling.cadence import default_replan
from scheduling.cost import DEFAULT_COLD_WEIGHT, model_prices
from scheduling.cost_policy import choose_model_levels
from scheduling.errors import PlanningError
from scheduling.forecast_policy import ForecastFn, history_frame
from scheduling.leads import LeadTimes
from scheduling.levels import BASE_LEVEL, LevelChoice, apply_levels
from scheduling.placement import Host, Placed
from scheduling.planner import PlanModel, PlannerConfig, PlanResult, plan_windows
from scheduling.policies import PolicyContext
from scheduling.simulator import ready_from_provisioned
from scheduling.sparse import SparseRule
from scheduling.subinterval import SubInterval


@dataclass(frozen=True, slots=True)
class CostPlan:
    """The plan, each model's level (and why), and the intervals the sparse rule warms per model."""

    result: PlanResult
    choice: LevelChoice
    sparse_intervals: Mapping[str, int]


def _grid(history: pd.DataFrame, models: Sequence[str], *, interval: pd.Timedelta, now: pd.Timestamp) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray]:
    """Demand per model on the regular grid from the first bucket to ``now`` (exclusive), and each model's first bucket."""
    stamps = history[C.TIMESTAMP].dt.tz_convert("UTC")
    start = stamps.min().floor(interval)
    n = max(1, int(math.ceil((now - start) / interval)))
    grid = pd.date_range(start, periods=n, freq=interval)
    position = {m: i for i, m in enumerate(models)}
    rows = history[C.MODEL].astype(str).map(position)
    steps = ((stamps - start) // interval).to_numpy()
    ok = rows.notna().to_numpy() & (steps >= 0) & (steps < n)
    demand = np.zeros((len(models), n))
    np.add.at(demand, (rows[ok].astype(int).to_numpy(), steps[ok]), history[C.REQUESTS].to_numpy(dtype=float)[ok])
    first = np.full(len(models), n, dtype=int)
    np.minimum.at(first, rows[ok].astype(int).to_numpy(), steps[ok])
    return grid, demand, first


@dataclass(frozen=True, slots=True)
class CostForecast:
    """The forecast the planner gets under the cost policy: leveled bounds plus the sparse rule's replicas."""

    frame: pd.DataFrame
    choice: LevelChoice
    sparse_intervals: Mapping[str, int]


def cost_forecast(
    history: pd.DataFrame,
    fleet: Mapping[str, PlanModel],
    *,
    forecast_fn: ForecastFn,
    horizon: int,
    interval: pd.Timedelta,
    now: pd.Timestamp,
    lead_s: float,
    demand_threshold: float = 1.0,
    cold_weight: float = DEFAULT_COLD_WEIGHT,
    target_cold_fraction: float | None = None,
    replan: int | None = None,
    origins: int | None = None,
    forecast_frame: pd.DataFrame | None = None,
) -> CostForecast:
    """Each model's level from backtests, the base-level forecast moved to those levels, the sparse rule's replicas.

    ``forecast_fn`` forecasts at the base level (80 %); ``forecast_frame``, when given, is that forecast from
    ``history`` already made (the flow's), so only the backtests forecast again. ``replan`` None: the
    deployment's cadence (:func:`scheduling.cadence.default_replan`), as in the simulator, so the backtests
    judge each level on forecasts as fresh as the deployment's re-plans. Raises :class:`PlanningError`
    when the history is empty.
    """
    if history.empty:
        raise PlanningError("telemetry is empty: the cost policy plans from each model's history")
    models = tuple(sorted(fleet))
    specs = [fleet[m] for m in models]
    grid, demand, first = _grid(history, models, interval=interval, now=now)
    lead = max(1, SubInterval(interval.total_seconds(), lead_s).steps)  # boundaries ahead a warm-up is requested
    stamps = pd.date_range(grid[0], periods=len(grid) + horizon + lead, freq=interval)
    capacity = np.array([s.replica_capacity for s in specs], dtype=float)
    context = PolicyContext(models, stamps, capacity, interval, lead, len(grid), first)
    prices = model_prices(specs, interval_hours=context.interval_hours, cold_weight=cold_weight)
    t0 = len(grid)
    replan = default_replan(interval) if replan is None else replan
    choice = choose_model_levels(
        context, demand, forecast_fn, prices, replan=replan, origins=origins, target_cold_fraction=target_cold_fraction
    )
    frame = forecast_frame if forecast_frame is not None else forecast_fn(history_frame(context, demand), horizon + lead, interval)
    frame = apply_levels(frame, choice.level_of(), base=BASE_LEVEL)
    frame = frame[frame[C.TIMESTAMP] >= grid[-1] + interval]
    rule = SparseRule(context, prices.scaled(choice.factor))
    future = np.concatenate([demand, np.zeros((len(models), horizon + lead))], axis=1)
    warm = np.stack([rule.decide(t, future[:, :t]) for t in range(t0, t0 + horizon)], axis=1)
    served = ready_from_provisioned(np.concatenate([np.zeros((len(models), lead), dtype=np.int64), warm], axis=1), lead)
    served = served[:, lead:]
    frame = _with_sparse(frame, models, stamps[t0 : t0 + horizon], served, capacity=capacity, threshold=demand_threshold)
    return CostForecast(frame, choice, {m: int((served[i] > 0).sum()) for i, m in enumerate(models)})


def plan_with_costs(
    history: pd.DataFrame,
    fleet: Mapping[str, PlanModel],
    *,
    forecast_fn: ForecastFn,
    horizon: int,
    interval: pd.Timedelta,
    now: pd.Timestamp,
    lead_times: LeadTimes | None = None,
    config: PlannerConfig | None = None,
    hosts: Sequence[Host] | None = None,
    previous: Mapping[str, Sequence[Placed]] | None = None,
    cold_weight: float = DEFAULT_COLD_WEIGHT,
    target_cold_fraction: float | None = None,
    replan: int | None = None,
    origins: int | None = None,
) -> CostPlan:
    """Plan the fleet's models with the ``cost`` policy from their telemetry ``history`` (before ``now``).

    :func:`cost_forecast`, then :func:`~scheduling.planner.plan_windows`. Raises :class:`PlanningError` when
    the history is empty.
    """
    lead_times = lead_times or LeadTimes()
    config = config or PlannerConfig()
    if history.empty:
        raise PlanningError("telemetry is empty: the cost policy plans from each model's history")
    lead_s = max(lead_times.lead(s.name, s.device_class) for s in fleet.values())
    made = cost_forecast(
        history, fleet, forecast_fn=forecast_fn, horizon=horizon, interval=interval, now=now, lead_s=lead_s,
        demand_threshold=config.demand_threshold, cold_weight=cold_weight, target_cold_fraction=target_cold_fraction,
        replan=replan, origins=origins,
    )
    result = plan_windows(
        made.frame, fleet, hosts=hosts, lead_times=lead_times,
        config=PlannerConfig(
            demand_threshold=config.demand_threshold, keep_alive_s=config.keep_alive_s, reload_cost_s=config.reload_cost_s,
            max_concurrent_warmups_per_pool=config.max_concurrent_warmups_per_pool, interval=interval,
        ),
        now=now, previous=previous,
    )
    return CostPlan(result, made.choice, made.sparse_intervals)


def _with_sparse(
    frame: pd.DataFrame, models: Sequence[str], stamps: pd.DatetimeIndex, served: np.ndarray, *,
    capacity: np.ndarray, threshold: float,
) -> pd.DataFrame:
    """The forecast frame with the demand of the sparse rule's k replicas (an upper bound of k × capacity, so the
    planner's ``ceil(hi / capacity)`` gives k) where it warms."""
    rows, steps = np.nonzero(served)
    if len(rows) == 0:
        return frame
    extra = pd.DataFrame(
        {
            C.MODEL: np.asarray(models, dtype=object)[rows],
            C.TIMESTAMP: stamps[steps],
            C.YHAT: threshold,
            C.LO: 0.0,
            C.HI: np.maximum(served[rows, steps] * capacity[rows], threshold),
        }
    )
    # the planner takes the larger of duplicate (model, timestamp) rows, so the forecast's own demand stays
    return pd.concat([frame, extra], ignore_index=True)
