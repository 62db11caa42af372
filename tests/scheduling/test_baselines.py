"""The tuned baselines: top-k by recent traffic, and the hybrid histogram at its best keep-alive on history."""

from __future__ import annotations

import numpy as np
import pandas as pd

from scheduling.baselines import KEEP_ALIVE_MINUTES, TopKPolicy, TunedHistogramPolicy, TunedTopKPolicy
from scheduling.cost import Prices
from scheduling.simulator import context_for, run_policy
from scheduling.trace import Trace


def _trace(demand: np.ndarray, eval_intervals: int) -> Trace:
    stamps = pd.date_range("2026-01-05", periods=demand.shape[1], freq="h", tz="UTC")
    return Trace(tuple(f"m{i}" for i in range(len(demand))), stamps, demand.astype(float),
                 demand.shape[1] - eval_intervals, pd.Timedelta(hours=1), np.zeros(len(demand), dtype=int))


def test_topk_warms_the_models_with_the_most_recent_requests() -> None:
    demand = np.zeros((3, 48))
    demand[0, ::5] = 1  # 5 requests in the last day
    demand[1, ::2] = 1  # 12
    demand[2, 20] = 1  # 1, long ago
    trace = _trace(demand, eval_intervals=2)
    policy = TopKPolicy(context_for(trace, np.ones(3), lead=1), k=2)
    warm = policy.decide(46, demand[:, :46])
    assert warm.tolist() == [1, 1, 0]
    assert TopKPolicy(context_for(trace, np.ones(3), lead=1), k=0).decide(46, demand[:, :46]).tolist() == [1, 0, 0]  # reactive: m0 was busy at 45


def test_tuning_uses_the_history_and_picks_the_cheapest_candidate() -> None:
    # one request every 6 hours: a keep-alive of 6 hours or more catches every one; cold requests are dear
    demand = np.zeros((1, 24 * 14))
    demand[0, ::6] = 1
    trace = _trace(demand, eval_intervals=48)
    prices = Prices(cold=np.array([20.0]), replica_hour=np.array([1.0]))
    context = context_for(trace, np.ones(1), lead=1)
    histogram = TunedHistogramPolicy(context, prices)
    run_policy(trace, histogram, lead=1)
    assert set(histogram.costs) == set(KEEP_ALIVE_MINUTES)
    assert histogram.keep_alive_minutes is not None
    assert histogram.costs[histogram.keep_alive_minutes] == min(histogram.costs.values())
    topk = TunedTopKPolicy(context, prices)
    provisioned = run_policy(trace, topk, lead=1)
    assert topk.k == 1 and provisioned[0, 1:].min() == 1  # always warm is cheapest at this price
    cheap = TunedTopKPolicy(context, Prices(cold=np.array([0.01]), replica_hour=np.array([1.0])))
    run_policy(trace, cheap, lead=1)
    assert cheap.k == 0
