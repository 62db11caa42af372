"""The sparse rule: hour-of-week probabilities with shrinkage, the idle-time keep-alive, the pool prior."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scheduling.cost import Prices
from scheduling.simulator import context_for, run_policy
from scheduling.sparse import SparsePolicy, SparseRule, replica_shares, shrunk, week_slots
from scheduling.trace import Trace

START = pd.Timestamp("2026-01-05", tz="UTC")  # a Monday


def _trace(demand: np.ndarray, eval_intervals: int) -> Trace:
    stamps = pd.date_range(START, periods=demand.shape[1], freq="h")
    models = tuple(f"m{i}" for i in range(demand.shape[0]))
    return Trace(models, stamps, demand.astype(float), demand.shape[1] - eval_intervals, pd.Timedelta(hours=1),
                 np.zeros(demand.shape[0], dtype=int))


def _run(trace: Trace, *, cold_price: float) -> np.ndarray:
    capacity = np.ones(len(trace.models))
    prices = Prices(cold=np.full(len(capacity), cold_price), replica_hour=np.ones(len(capacity)))
    policy = SparsePolicy(context_for(trace, capacity, lead=1), prices, reactive_floor=False)
    return run_policy(trace, policy, lead=1)[:, 1:]  # the evaluation window (decisions start lead before it)


def test_week_slots_start_on_monday_midnight_utc() -> None:
    slots, n = week_slots(pd.date_range("2026-01-05 00:00", periods=3, freq="h", tz="UTC"), pd.Timedelta(hours=1))
    assert n == 168 and slots.tolist() == [0, 1, 2]
    slots, _ = week_slots(pd.DatetimeIndex([pd.Timestamp("2026-01-11 23:00", tz="UTC")]), pd.Timedelta(hours=1))
    assert slots.tolist() == [167]


def test_shrinkage_by_hand() -> None:
    # 3 busy of 4 observations, prior 0.1 with the strength of 4 observations: (3 + 0.4) / 8
    assert shrunk(np.array([3.0]), np.array([4.0]), np.array([0.1]), 4.0).tolist() == pytest.approx([0.425])


def test_a_sparse_model_clustered_at_one_hour_of_the_week_is_warmed_for_that_hour() -> None:
    weeks = 5
    demand = np.zeros((1, 168 * weeks))
    wednesday_ten = 2 * 24 + 10
    demand[0, wednesday_ten :: 168] = 1  # one request every Wednesday 10:00, and nothing else
    trace = _trace(demand, eval_intervals=168)
    warm = _run(trace, cold_price=5.0)[0]
    assert warm[wednesday_ten] == 1, "the clustered hour is warm"
    assert warm.sum() <= 3, f"and little else: {np.flatnonzero(warm).tolist()}"
    # the same request spread over every hour of the week is not worth a replica at this price
    spread = np.zeros((1, 168 * weeks))
    spread[0, np.random.default_rng(1).choice(168 * weeks, size=weeks, replace=False)] = 1
    assert _run(_trace(spread, eval_intervals=168), cold_price=5.0).sum() == 0


def test_the_price_decides_whether_the_hour_is_worth_it() -> None:
    demand = np.zeros((1, 168 * 5))
    demand[0, 10::168] = 1
    demand[0, 10 + 168] = 0  # busy in 3 of the 4 history weeks: shrunk probability (3 + 4 x 3/672) / 8 = 0.377
    trace = _trace(demand, eval_intervals=168)
    # warming for the hour costs it and the hour of loading before it: worth it when 0.377 x price > 2
    assert _run(trace, cold_price=6.0)[0, 10] == 1
    assert _run(trace, cold_price=5.0)[0, 10] == 0


def test_after_a_request_the_idle_time_distribution_keeps_the_replica() -> None:
    # requests come in pairs two hours apart, at random times: the hour after the gap is worth warming
    rng = np.random.default_rng(4)
    demand = np.zeros((1, 168 * 4))
    for s in rng.choice(np.arange(0, 168 * 4 - 3, 6), size=60, replace=False):
        demand[0, s] = demand[0, s + 2] = 1
    trace = _trace(demand, eval_intervals=168)
    warm = _run(trace, cold_price=8.0)[0]
    eval_demand = demand[0, -168:]
    firsts = [i for i in range(166) if eval_demand[i] and eval_demand[i + 2] and not eval_demand[i - 2 : i].any()]
    assert firsts, "the seeded trace has pairs in the evaluation window"
    assert all(warm[i + 2] == 1 for i in firsts), "the second request of each pair finds a warm replica"


def test_a_model_without_history_gets_the_pool_prior() -> None:
    busy = np.ones((3, 168 * 2))
    new = np.zeros((1, 168 * 2))
    demand = np.vstack([busy, new])
    trace = Trace(
        ("b0", "b1", "b2", "new"), pd.date_range(START, periods=demand.shape[1], freq="h"), demand, 168,
        pd.Timedelta(hours=1), np.array([0, 0, 0, 168 * 2]),
    )
    capacity = np.ones(4)
    prices = Prices(cold=np.full(4, 4.0), replica_hour=np.ones(4))
    rule = SparseRule(context_for(trace, capacity, lead=1), prices)
    values = rule.values(168, demand[:, :168], ahead=2)
    assert values[3, :, 0].tolist() == pytest.approx([1.0, 1.0])  # the pool's mean: every interval busy


def test_replica_shares_by_hand() -> None:
    # a load of 2.5 replicas: the first two are full, the third serves half, the fourth nothing
    shares = replica_shares(np.array([2.5, 0.0]), np.arange(4))
    assert shares.tolist() == [[1.0, 1.0, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0]]


def test_the_second_replica_by_hand() -> None:
    # Monday 10:00 of the 4 history weeks saw 3, 1, 2 and 0 requests, one a replica; nothing else, ever.
    # Second replica's share there: min(max(d - 1, 0), 1) = 1, 0, 1, 0, mean 2/4. Over the 681 intervals
    # seen its mean is 2/681, the pool's prior for it is this one model's; the slot is shrunk with 4
    # pseudo-intervals toward the model's mean, itself shrunk with 24 toward the prior (the same):
    # (2 + 4 × 2/681) / (4 + 4) = 0.2515. The first replica's: (3 + 4 × 3/681) / 8 = 0.3772. The
    # idle-time estimate is far lower (335 idle hours, beyond the histogram's day).
    demand = np.zeros((1, 168 * 5))
    demand[0, [10, 10 + 168, 10 + 2 * 168]] = [3, 1, 2]
    trace = _trace(demand, eval_intervals=168)
    prices = Prices(cold=np.array([9.0]), replica_hour=np.ones(1))
    rule = SparseRule(context_for(trace, np.ones(1), lead=1), prices, max_replicas=3)
    t = 4 * 168 + 9  # an hour before Monday 10:00 of the evaluation week
    values = rule.values(t, demand[:, :t], ahead=2)[0, 1]  # Monday 10:00
    assert values.tolist() == pytest.approx([(3 + 12 / 681) / 8, (2 + 8 / 681) / 8, (1 + 4 / 681) / 8])
    # at a cold price of 9 (bar 1 replica-hour): 9 × 0.3772 = 3.39 and 9 × 0.2515 = 2.26 pay for the hour
    # and the hour of loading (2); the third replica's 9 × 0.1257 = 1.13 does not
    warm = run_policy(trace, SparsePolicy(context_for(trace, np.ones(1), lead=1), prices, reactive_floor=False), lead=1)
    assert warm[0, 1 + 10] == 2


def test_bursts_at_one_hour_of_the_week_get_two_replicas_when_cold_is_dear() -> None:
    weeks = 5
    rng = np.random.default_rng(3)
    demand = np.zeros((1, 168 * weeks))
    friday_four = 4 * 24 + 16
    demand[0, friday_four :: 168] = rng.integers(4, 9, size=weeks)  # a burst of 4 to 8 requests every Friday 16:00
    trace = _trace(demand, eval_intervals=168)
    dear = _run(trace, cold_price=8.0)[0]
    assert dear[friday_four] >= 2, "several replicas for the burst"
    assert dear.sum() - dear[friday_four] <= 3 * dear[friday_four], "and little else"
    cheap = _run(trace, cold_price=2.5)[0]
    assert cheap[friday_four] == 0, "not when a cold request costs about what an hour of a replica does"


def test_a_dense_model_gets_one_replica_from_the_rule_and_the_rest_from_its_forecast() -> None:
    demand = np.full((1, 168 * 5), 5.0)  # 5 requests every hour: busy in every interval
    trace = _trace(demand, eval_intervals=168)
    assert _run(trace, cold_price=8.0)[0].max() == 1
