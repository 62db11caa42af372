"""A provisioning level per model, chosen by rolling-origin backtests inside the model's own history.

The forecast gives a point ``yhat`` and the upper bound ``hi`` of one interval level (the base, 80 %).
A model provisioned at level L plans for ``yhat + z(L) / z(base) × (hi − yhat)``: the intervals are
treated as normal-shaped around the point, so one forecast serves every level. The candidate ``off``
provisions nothing from the forecast (the sparse rule alone decides the model's first replica).

At the first planning moment t0, ``origins`` blocks of ``replan`` intervals before t0 are forecast
from the demand before each block's start (by default as many blocks as cover 72 intervals, at most
24: 3 back-to-back blocks at a re-planning period of 24, 12 at 6; at a shorter period 24 blocks spread
over 72 intervals or more, see :func:`scheduling.cost_policy.backtest_stride`), and each candidate
level is scored by the expected cost it would have had on the block (cold requests × cold price +
replica-hours × their price, with the replicas the sparse rule provisioned then added). Each model
gets the level of least cost; a tie goes to the cheaper level. The evaluation window (and anything
at or after t0) is never used.

With a fleet-wide target cold fraction instead, every cold price is scaled by one factor, found by
bisection, so that the chosen levels' backtest cold fraction meets the target at the least cost.

Sub-interval arithmetic: the backtest counts a replica from ``lead`` intervals before the interval it
serves (the simulator's rule) and takes the requests of an interval to arrive spread over it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from prewarm import columns as C
from scheduling.cost import Prices
from scheduling.errors import SchedulingError
from scheduling.policies import PolicyContext, window_max
from scheduling.simulator import ready_from_provisioned

log = logging.getLogger(__name__)

OFF = 0.0
"""The candidate that provisions nothing from the forecast."""
LEVELS = (OFF, 50.0, 65.0, 80.0, 90.0, 95.0, 99.0)
BASE_LEVEL = 80.0


def z_score(level: float) -> float:
    """Two-sided normal quantile of a ``level`` % interval."""
    from scipy.stats import norm

    return float(norm.ppf(0.5 + level / 200.0))


def level_scale(level: float, base: float = BASE_LEVEL) -> float:
    """How far above ``yhat`` level ``level``'s bound lies, in units of the base level's ``hi − yhat``."""
    return z_score(level) / z_score(base)


def apply_levels(frame: pd.DataFrame, levels: Mapping[str, float], *, base: float = BASE_LEVEL) -> pd.DataFrame:
    """The forecast frame with each model's ``hi`` moved to its level; models at ``off`` (or unknown) dropped."""
    if frame.empty:
        return frame
    level = frame[C.MODEL].astype(str).map(levels).fillna(OFF).to_numpy(dtype=float)
    keep = level > OFF
    out = frame.loc[keep].copy()
    scale = np.array([level_scale(v, base) for v in level[keep]])
    yhat = out[C.YHAT].to_numpy(dtype=float)
    spread = np.maximum(out[C.HI].fillna(out[C.YHAT]).to_numpy(dtype=float) - yhat, 0.0)
    out[C.HI] = yhat + scale * spread
    return out.reset_index(drop=True)


def need_matrix(yhat: np.ndarray, hi: np.ndarray, capacity: np.ndarray, threshold: float = 1.0) -> np.ndarray:
    """Replicas per model and interval: the planner's rule (``ceil(hi / c)`` where ``hi`` reaches the threshold,
    at least one where ``yhat`` does), for whole matrices."""
    cap = capacity[:, None]
    need = np.where(hi >= threshold, np.ceil(hi / cap - 1e-9), 0.0)
    return np.where(yhat >= threshold, np.maximum(need, 1.0), need).astype(np.int64)


@dataclass(frozen=True, slots=True)
class LevelChoice:
    """Each model's level, the backtest cost of every candidate, and the cold-price factor used."""

    models: tuple[str, ...]
    candidates: tuple[float, ...]
    levels: np.ndarray
    costs: np.ndarray
    """models × candidates: backtest expected cost."""
    cold: np.ndarray
    hours: np.ndarray
    requests: np.ndarray
    factor: float = 1.0

    def level_of(self) -> dict[str, float]:
        """Model name to level (``OFF`` = 0: no forecast provisioning)."""
        return {m: float(v) for m, v in zip(self.models, self.levels, strict=True)}

    def reasons(self) -> dict[str, str]:
        """Why each model got its level: the backtest costs of its level and the runner-up."""
        out = {}
        for i, model in enumerate(self.models):
            order = np.argsort(self.costs[i], kind="stable")
            best, second = order[0], order[1] if len(order) > 1 else order[0]
            name = _label(self.candidates[best])
            out[model] = (
                f"level {name}: backtest cost {self.costs[i, best]:.2f} vs {self.costs[i, second]:.2f} at "
                f"{_label(self.candidates[second])} ({self.cold[i, best]:.0f} cold of {self.requests[i]:.0f} requests, "
                f"{self.hours[i, best]:.1f} replica-hours)"
            )
        return out


def _label(level: float) -> str:
    return "off" if level == OFF else f"{level:g}"


ForecastMatrix = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]
"""``(observed before the origin, horizon) -> (yhat, hi)`` as models × horizon matrices at the base level."""


def backtest_scores(
    context: PolicyContext, observed: np.ndarray, forecast: ForecastMatrix, *, candidates: Sequence[float],
    replan: int, origins: int, base: float, sparse: np.ndarray | None = None, stride: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cold requests, replica-hours (models × candidates) and requests per model over the backtest blocks.

    Block j (1 .. ``origins``) starts ``j × stride`` intervals before the end of ``observed`` (``stride``
    defaults to ``replan``: back-to-back blocks) and scores the ``replan`` intervals a plan made at its
    start would serve. ``sparse`` (models × the intervals of ``observed``, or None) holds the replicas
    the sparse rule provisioned.
    """
    stride = replan if stride is None else stride
    if stride < replan:
        raise SchedulingError(f"backtest blocks would overlap: stride {stride} < re-planning period {replan}")
    t0 = observed.shape[1]
    n, k = len(context.models), len(candidates)
    cold, hours, requests = np.zeros((n, k)), np.zeros((n, k)), np.zeros(n)
    lead = context.lead
    scales = [level_scale(c, base) if c > OFF else None for c in candidates]
    for j in range(origins, 0, -1):
        origin = t0 - j * stride
        if origin - int(np.min(context.first)) < 2 * replan:
            continue
        yhat, hi = forecast(observed[:, :origin], replan + lead)
        actual = observed[:, origin : origin + replan]
        requests += actual.sum(axis=1)
        extra = np.zeros((n, replan + lead), dtype=np.int64)
        if sparse is not None:
            extra[:, : min(replan + lead, t0 - origin)] = sparse[:, origin : origin + replan + lead]
        for c, scale in enumerate(scales):
            need = np.zeros_like(extra) if scale is None else need_matrix(yhat, yhat + scale * np.maximum(hi - yhat, 0), context.capacity)
            provisioned = np.maximum(window_max(need, 0, lead), extra)
            ready = np.maximum(need, ready_from_provisioned(extra, lead))[:, :replan]
            cold[:, c] += np.maximum(0.0, actual - context.capacity[:, None] * ready).sum(axis=1)
            hours[:, c] += provisioned[:, :replan].sum(axis=1) * context.interval_hours
    return cold, hours, requests


def choose_levels(
    models: tuple[str, ...], cold: np.ndarray, hours: np.ndarray, requests: np.ndarray, prices: Prices, *,
    candidates: Sequence[float], target_cold_fraction: float | None = None,
) -> LevelChoice:
    """Each model's candidate of least backtest cost; with a target, the cold-price factor that meets it."""

    def pick(factor: float) -> tuple[np.ndarray, np.ndarray]:
        costs = cold * (prices.cold[:, None] * factor) + hours * prices.replica_hour[:, None]
        return np.argmin(costs + 1e-9 * np.arange(len(candidates)), axis=1), costs

    factor = 1.0
    if target_cold_fraction is not None:
        factor = _factor_for_target(pick, cold, requests, target_cold_fraction)
    best, costs = pick(factor)
    levels = np.asarray(candidates, dtype=float)[best]
    log.info("levels chosen (factor %.3g): %s", factor, {_label(c): int((levels == c).sum()) for c in candidates})
    return LevelChoice(models, tuple(candidates), levels, costs, cold, hours, requests, factor)


def _factor_for_target(pick: Callable, cold: np.ndarray, requests: np.ndarray, target: float) -> float:  # type: ignore[type-arg]
    """The least cold-price factor whose choice meets ``target`` in the backtests (bisection in log space)."""
    if not 0 <= target < 1:
        raise SchedulingError(f"--target-cold-fraction must be in [0, 1), got {target}")
    total = float(requests.sum())
    rows = np.arange(cold.shape[0])

    def fraction(factor: float) -> float:
        best, _ = pick(factor)
        return float(cold[rows, best].sum() / total) if total > 0 else 0.0

    lo, hi = math.log(1e-4), math.log(1e6)
    if fraction(math.exp(hi)) > target:
        log.warning("no level meets a cold fraction of %.4f in the backtests; using the highest levels", target)
        return math.exp(hi)
    if fraction(math.exp(lo)) <= target:
        return math.exp(lo)
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if fraction(math.exp(mid)) <= target else (mid, hi)
    return math.exp(hi)


def forecast_matrix(
    context: PolicyContext, fn: Callable[[pd.DataFrame, int, pd.Timedelta], pd.DataFrame]
) -> ForecastMatrix:
    """A :data:`ForecastMatrix` from a frame forecast function (missing models and intervals: zero)."""
    from scheduling.forecast_policy import history_frame

    position = {m: i for i, m in enumerate(context.models)}

    def run(observed: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray]:
        n = len(context.models)
        yhat, hi = np.zeros((n, horizon)), np.zeros((n, horizon))
        history = history_frame(context, observed)
        if history.empty:
            return yhat, hi
        frame = fn(history, horizon, context.interval)
        origin = context.timestamps[0] + observed.shape[1] * context.interval
        steps = ((frame[C.TIMESTAMP] - origin) / context.interval).round().astype(int).to_numpy()
        rows = frame[C.MODEL].astype(str).map(position).to_numpy()
        ok = (steps >= 0) & (steps < horizon) & ~pd.isna(rows)
        r, s = rows[ok].astype(int), steps[ok]
        yhat[r, s] = np.maximum(frame[C.YHAT].to_numpy(dtype=float)[ok], 0.0)
        hi[r, s] = frame[C.HI].fillna(frame[C.YHAT]).to_numpy(dtype=float)[ok]
        return yhat, np.maximum(hi, yhat)

    return run


__all__ = [
    "BASE_LEVEL",
    "LEVELS",
    "OFF",
    "LevelChoice",
    "apply_levels",
    "backtest_scores",
    "choose_levels",
    "forecast_matrix",
    "level_scale",
    "need_matrix",
]
