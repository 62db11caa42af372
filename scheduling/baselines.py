"""Baselines users compare against, each tuned on the history before the evaluation window only.

* ``histogram-tuned``: the hybrid histogram policy at its best keep-alive (the histogram's range, which
  is also its fixed keep-alive) among :data:`KEEP_ALIVE_MINUTES`;
* ``topk``: one warm replica for the k models with the most requests in the last ``window`` intervals,
  the reactive autoscaler above it (and for every other model); k among :data:`TOPK_SHARES` of the fleet.

Tuning runs the simulator on the last ``tune_intervals`` of the history the policy has observed at its
first decision and keeps the candidate of least expected cost, so no demand of the evaluation window
(nor any demand at or after the first decision) is used.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from scheduling.cost import Prices, cost_of
from scheduling.histogram import HistogramConfig, HistogramPolicy
from scheduling.policies import Policy, PolicyContext, reactive_target
from scheduling.simulator import ready_from_provisioned, run_policy, timing_for
from scheduling.trace import Trace

log = logging.getLogger(__name__)

KEEP_ALIVE_MINUTES = (60.0, 120.0, 240.0, 480.0, 960.0, 1440.0)
TOPK_SHARES = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)


def history_cost(
    context: PolicyContext, observed: np.ndarray, build: Callable[[PolicyContext], Policy], prices: Prices,
    *, tune_intervals: int,
) -> float:
    """Expected cost of the policy ``build`` makes, simulated on the last ``tune_intervals`` of ``observed``."""
    end = observed.shape[1]
    tune = min(tune_intervals, max(end // 3, 1))
    trace = Trace(context.models, context.timestamps[:end], np.array(observed), end - tune, context.interval, context.first)
    sub = replace(context, eval_start=end - tune)
    provisioned = run_policy(trace, build(sub), lead=context.lead)
    ready = ready_from_provisioned(provisioned, context.lead)[:, context.lead :]
    timing = timing_for(context.interval, lead=context.lead, lead_s=context.lead_s)
    charged = timing.charged(provisioned)[:, context.lead :]
    demand = trace.demand[:, trace.eval_start :]
    cold, loaded = timing.on_demand(np.maximum(0.0, demand - context.capacity[:, None] * ready), context.capacity)
    return float(cost_of(cold, charged + loaded, prices, interval_hours=context.interval_hours).sum())


def tune(
    context: PolicyContext, observed: np.ndarray, candidates: Sequence[float],
    build: Callable[[PolicyContext, float], Policy], prices: Prices, *, tune_intervals: int,
) -> tuple[float, dict[float, float]]:
    """The candidate of least expected cost on the history, and every candidate's cost (ties: the first)."""
    costs = {
        c: history_cost(context, observed, lambda ctx, c=c: build(ctx, c), prices, tune_intervals=tune_intervals)
        for c in candidates
    }
    best = min(costs, key=lambda c: costs[c])
    return best, costs


@dataclass(slots=True)
class TunedHistogramPolicy:
    """The hybrid histogram policy at the keep-alive of least expected cost on the history."""

    context: PolicyContext
    prices: Prices
    candidates: tuple[float, ...] = KEEP_ALIVE_MINUTES
    tune_intervals: int = 96
    name: str = "histogram-tuned"
    keep_alive_minutes: float | None = None
    costs: dict[float, float] = field(default_factory=dict)
    _inner: HistogramPolicy | None = None

    def decide(self, t: int, observed: np.ndarray) -> np.ndarray:
        if self._inner is None:
            def build(ctx: PolicyContext, minutes: float) -> Policy:
                return HistogramPolicy(ctx, config=HistogramConfig(range_minutes=minutes))

            self.keep_alive_minutes, self.costs = tune(
                self.context, observed, self.candidates, build, self.prices, tune_intervals=self.tune_intervals
            )
            log.info("histogram-tuned: keep-alive %.0f min (history costs %s)", self.keep_alive_minutes, self.costs)
            self._inner = build(self.context, self.keep_alive_minutes)
        return self._inner.decide(t, observed)


@dataclass(slots=True)
class TopKPolicy:
    """One warm replica for the ``k`` models with the most recent requests; the reactive autoscaler for the rest."""

    context: PolicyContext
    k: int
    window: int = 24
    name: str = "topk"

    def decide(self, t: int, observed: np.ndarray) -> np.ndarray:
        floor = reactive_target(self.context, t, observed)
        if self.k <= 0:
            return floor
        recent = observed[:, max(0, t - self.window) : t].sum(axis=1)
        top = np.argsort(-recent, kind="stable")[: self.k]
        warm = np.zeros(len(self.context.models), dtype=np.int64)
        warm[top] = 1
        return np.maximum(warm, floor)


@dataclass(slots=True)
class TunedTopKPolicy:
    """:class:`TopKPolicy` at the k of least expected cost on the history (k among shares of the fleet)."""

    context: PolicyContext
    prices: Prices
    shares: tuple[float, ...] = TOPK_SHARES
    tune_intervals: int = 96
    name: str = "topk"
    k: int | None = None
    costs: dict[float, float] = field(default_factory=dict)
    _inner: TopKPolicy | None = None

    def decide(self, t: int, observed: np.ndarray) -> np.ndarray:
        if self._inner is None:
            n = len(self.context.models)
            ks = sorted({int(round(share * n)) for share in self.shares})

            def build(ctx: PolicyContext, k: float) -> Policy:
                return TopKPolicy(ctx, k=int(k))

            best, self.costs = tune(self.context, observed, ks, build, self.prices, tune_intervals=self.tune_intervals)
            self.k = int(best)
            log.info("topk: k = %d of %d models", self.k, n)
            self._inner = TopKPolicy(self.context, k=self.k)
        return self._inner.decide(t, observed)
