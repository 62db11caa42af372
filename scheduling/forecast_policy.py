"""The ``forecast`` policy: this project's forecaster and planner, re-planning every ``replan`` intervals.

At a re-planning moment t the policy forecasts every model from the demand before t, plans windows
with :func:`~scheduling.planner.plan_windows` and provisions what the plan's rows cover until the
next re-plan. With ``reactive_floor`` it also never provisions fewer replicas than the reactive
policy would (the planner beside an autoscaler); by default it provisions the plan alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from prewarm import columns as C
from scheduling.leads import LeadTimes
from scheduling.planner import PlanModel, PlannerConfig, plan_windows, provisioned_matrix
from scheduling.policies import PolicyContext, reactive_target

log = logging.getLogger(__name__)

ForecastFn = Callable[[pd.DataFrame, int, pd.Timedelta], pd.DataFrame]
"""``(history frame, horizon, interval) -> forecast frame (model, timestamp, yhat, lo, hi)``."""


def engine_forecast(level: float = 80.0, *, n_jobs: int = 1, fast: bool = False, **options: object) -> ForecastFn:
    """A :data:`ForecastFn` backed by :func:`forecasting.forecast` at ``level`` % intervals."""

    def run(history: pd.DataFrame, horizon: int, interval: pd.Timedelta) -> pd.DataFrame:
        import forecasting

        freq = pd.tseries.frequencies.to_offset(interval).freqstr
        result = forecasting.forecast(history, horizon=horizon, level=level, freq=freq, n_jobs=n_jobs, fast=fast, **options)
        return result.frame

    return run


def cached_forecast(fn: ForecastFn) -> ForecastFn:
    """``fn`` remembering its answers by (history's last timestamp, rows, horizon, interval).

    Policies of one simulation that forecast the same history at the same moment (a sweep over prices,
    the backtests of the ``cost`` policy beside the ``forecast`` policy) then pay for one forecast.
    """
    memo: dict[tuple[object, ...], pd.DataFrame] = {}

    def run(history: pd.DataFrame, horizon: int, interval: pd.Timedelta) -> pd.DataFrame:
        key = (history[C.TIMESTAMP].max() if not history.empty else None, len(history), horizon, interval)
        if key not in memo:
            memo[key] = fn(history, horizon, interval)
        return memo[key].copy()

    return run


def history_frame(context: PolicyContext, observed: np.ndarray) -> pd.DataFrame:
    """The long telemetry frame of ``observed`` (models × the intervals before t), from each model's first row."""
    end = observed.shape[1]
    n = len(context.models)
    keep = np.tile(np.arange(end), n) >= np.repeat(context.first, end)
    frame = pd.DataFrame(
        {
            C.TIMESTAMP: np.tile(context.timestamps[:end], n),
            C.MODEL: np.repeat(np.asarray(context.models, dtype=object), end),
            C.REQUESTS: observed.reshape(-1),
        }
    )
    return frame[keep].reset_index(drop=True)


@dataclass(slots=True)
class ForecastPolicy:
    """Forecast, plan, provision the plan; re-plan every ``replan`` intervals."""

    context: PolicyContext
    forecast_fn: ForecastFn
    replan: int = 24
    config: PlannerConfig = field(default_factory=PlannerConfig)
    reactive_floor: bool = False
    name: str = "forecast"
    forecast_seconds: float = 0.0
    plans: int = 0
    _plan: np.ndarray | None = None
    _plan_t: int = 0

    def _replan(self, t: int, observed: np.ndarray) -> None:
        ctx = self.context
        horizon = self.replan + ctx.lead
        started = time.perf_counter()
        history = history_frame(ctx, observed)
        frame = self.forecast_fn(history, horizon, ctx.interval) if not history.empty else history
        self.forecast_seconds += time.perf_counter() - started
        fleet = {m: PlanModel(name=m, replica_capacity=float(c)) for m, c in zip(ctx.models, ctx.capacity, strict=True)}
        leads = LeadTimes(default_s=ctx.lead_seconds, margin_s=0.0)
        config = PlannerConfig(
            demand_threshold=self.config.demand_threshold,
            keep_alive_s=self.config.keep_alive_s,
            reload_cost_s=self.config.reload_cost_s,
            interval=ctx.interval,
        )
        if frame.empty:
            self._plan = np.zeros((len(ctx.models), self.replan), dtype=np.int64)
        else:
            frame = frame[frame[C.TIMESTAMP] >= ctx.timestamps[t]]
            result = plan_windows(frame, fleet, lead_times=leads, config=config, now=ctx.timestamps[t])
            stamps = pd.date_range(ctx.timestamps[t], periods=self.replan, freq=ctx.interval)
            self._plan = provisioned_matrix(result, ctx.models, stamps)
        self._plan_t = t
        self.plans += 1
        log.info("re-planned at interval %d: %d replicas planned", t, int(self._plan.sum()))

    def decide(self, t: int, observed: np.ndarray) -> np.ndarray:
        if self._plan is None or t - self._plan_t >= self.replan:
            self._replan(t, observed)
        assert self._plan is not None
        planned = self._plan[:, t - self._plan_t]
        if not self.reactive_floor:
            return planned
        return np.maximum(planned, reactive_target(self.context, t, observed))
