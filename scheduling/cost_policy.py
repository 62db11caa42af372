"""The ``cost`` policy: the forecast planner at a level per model, and the sparse rule for the first replica.

At its first decision the policy runs the rolling-origin backtests of :mod:`scheduling.levels` on the
history it has observed and fixes each model's level (or ``off``). From then on it re-plans every
``replan`` intervals like the ``forecast`` policy, from one base-level forecast whose upper bounds are
moved to each model's level, and provisions the larger of that plan and the sparse rule's replica
(:mod:`scheduling.sparse`). With a target cold fraction, the cold prices of both are scaled by the
factor the backtests found.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scheduling.cost import Prices
from scheduling.forecast_policy import ForecastFn, ForecastPolicy
from scheduling.levels import (
    BASE_LEVEL,
    LEVELS,
    LevelChoice,
    apply_levels,
    backtest_scores,
    choose_levels,
    forecast_matrix,
)
from scheduling.planner import PlannerConfig
from scheduling.policies import PolicyContext
from scheduling.sparse import SparseRule

log = logging.getLogger(__name__)

BACKTEST_INTERVALS = 72
MAX_ORIGINS = 24
DAY = pd.Timedelta(days=1)


def backtest_stride(replan: int, origins: int, interval: pd.Timedelta) -> int:
    """Intervals between backtest origins: ``replan`` (back-to-back blocks) when ``origins`` blocks cover
    :data:`BACKTEST_INTERVALS`, else spread wider so they do, by a step that shares no factor with a day's
    intervals, so the origins fall at different times of day (every hour of the day, at hourly re-planning).

    Each block still scores ``replan`` intervals from its own origin: the backtests judge each level on
    forecasts as fresh as the policy's re-plans make them, and a short cadence costs ``origins`` forecasts,
    not one per interval covered.
    """
    if replan * origins >= BACKTEST_INTERVALS:
        return replan
    per_day = max(1, int(DAY // interval))
    step = max(replan, math.ceil(BACKTEST_INTERVALS / origins))
    while math.gcd(step, per_day) != 1:
        step += 1
    return step



def leveled(fn: ForecastFn, levels: dict[str, float], *, base: float = BASE_LEVEL) -> ForecastFn:
    """``fn`` (a base-level forecast) with each model's upper bound moved to its level, ``off`` models dropped."""

    def run(history: pd.DataFrame, horizon: int, interval: pd.Timedelta) -> pd.DataFrame:
        return apply_levels(fn(history, horizon, interval), levels, base=base)

    return run


def choose_model_levels(
    context: PolicyContext, observed: np.ndarray, forecast_fn: ForecastFn, prices: Prices, *, replan: int,
    origins: int | None = None, candidates: tuple[float, ...] = LEVELS, base: float = BASE_LEVEL,
    target_cold_fraction: float | None = None,
) -> LevelChoice:
    """Each model's level from backtests on ``observed`` (the demand before now), the sparse rule's replicas included.

    ``origins`` None: as many blocks of ``replan`` intervals as cover :data:`BACKTEST_INTERVALS` (at most
    :data:`MAX_ORIGINS`), spread by :func:`backtest_stride` when fewer cover it, so a short re-planning
    period does not shrink the backtests to a few noisy, neighbouring intervals.
    """
    if origins is None:
        origins = min(MAX_ORIGINS, math.ceil(BACKTEST_INTERVALS / replan))
    stride = backtest_stride(replan, origins, context.interval)
    t = observed.shape[1]
    start = max(0, t - origins * stride - context.lead)
    probe = SparseRule(context, prices)
    sparse = np.zeros(observed.shape, dtype=np.int64)
    for u in range(start, t):
        sparse[:, u] = probe.decide(u, observed[:, :u])
    cold, hours, requests = backtest_scores(
        context, observed, forecast_matrix(context, forecast_fn), candidates=candidates, replan=replan,
        origins=origins, base=base, sparse=sparse, stride=stride,
    )
    return choose_levels(
        context.models, cold, hours, requests, prices, candidates=candidates, target_cold_fraction=target_cold_fraction
    )


@dataclass(slots=True)
class CostPolicy:
    """Forecast plan at per-model levels chosen by backtests, plus the sparse rule; both at the same prices."""

    context: PolicyContext
    forecast_fn: ForecastFn
    prices: Prices
    replan: int = 24
    origins: int | None = None
    candidates: tuple[float, ...] = LEVELS
    base_level: float = BASE_LEVEL
    target_cold_fraction: float | None = None
    config: PlannerConfig = field(default_factory=PlannerConfig)
    name: str = "cost"
    choice: LevelChoice | None = None
    _plan: ForecastPolicy | None = None
    _sparse: SparseRule | None = None

    def _choose(self, t: int, observed: np.ndarray) -> None:
        self.choice = choose_model_levels(
            self.context, observed, self.forecast_fn, self.prices, replan=self.replan, origins=self.origins,
            candidates=self.candidates, base=self.base_level, target_cold_fraction=self.target_cold_fraction,
        )
        prices = self.prices.scaled(self.choice.factor)
        fn = leveled(self.forecast_fn, self.choice.level_of(), base=self.base_level)
        self._plan = ForecastPolicy(self.context, fn, replan=self.replan, config=self.config, name=self.name)
        self._sparse = SparseRule(self.context, prices)

    def decide(self, t: int, observed: np.ndarray) -> np.ndarray:
        if self._plan is None:
            self._choose(t, observed)
        assert self._plan is not None and self._sparse is not None
        return np.maximum(self._plan.decide(t, observed), self._sparse.decide(t, observed))
