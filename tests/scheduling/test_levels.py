"""Per-model levels: the level arithmetic, the backtest choice, the target cold fraction, the cost policy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prewarm import columns as C
from scheduling.cost import Prices
from scheduling.cost_policy import CostPolicy
from scheduling.errors import SchedulingError
from scheduling.levels import OFF, apply_levels, backtest_scores, choose_levels, level_scale, need_matrix
from scheduling.simulator import context_for, run_policy
from scheduling.trace import Trace
from tests.scheduling.conftest import seasonal_naive_forecast


def test_levels_move_the_upper_bound_around_the_point() -> None:
    frame = pd.DataFrame(
        {
            C.MODEL: ["a", "a", "b", "c"],
            C.TIMESTAMP: pd.date_range("2026-01-05", periods=4, freq="h", tz="UTC"),
            C.YHAT: [10.0, 20.0, 5.0, 1.0],
            C.LO: [8.0, 16.0, 4.0, 0.5],
            C.HI: [12.0, 24.0, 6.0, 1.5],
        }
    )
    out = apply_levels(frame, {"a": 95.0, "b": 80.0, "c": OFF})
    assert out[C.MODEL].tolist() == ["a", "a", "b"]  # c is off
    assert level_scale(80.0) == pytest.approx(1.0)
    assert level_scale(95.0) == pytest.approx(1.959964 / 1.281552, rel=1e-5)
    assert out[C.HI].tolist() == pytest.approx([10 + 2 * level_scale(95.0), 20 + 4 * level_scale(95.0), 6.0])


def test_need_matrix_is_the_planners_rule() -> None:
    need = need_matrix(np.array([[0.5, 1.0, 9.0]]), np.array([[1.5, 1.2, 11.0]]), np.array([5.0]))
    assert need.tolist() == [[1, 1, 3]]


def test_each_model_gets_its_cheapest_level_and_ties_go_to_the_cheaper_one() -> None:
    cold = np.array([[10.0, 2.0, 0.0], [0.0, 0.0, 0.0]])
    hours = np.array([[0.0, 5.0, 9.0], [0.0, 3.0, 6.0]])
    prices = Prices(cold=np.array([1.0, 1.0]), replica_hour=np.array([1.0, 1.0]))
    choice = choose_levels(("a", "b"), cold, hours, np.array([20.0, 0.0]), prices, candidates=(OFF, 50.0, 95.0))
    # a: costs 10, 7, 9 -> level 50; b: 0, 3, 6 -> off
    assert choice.level_of() == {"a": 50.0, "b": OFF}
    assert "level 50: backtest cost 7.00 vs 9.00 at 95" in choice.reasons()["a"]


def test_a_target_cold_fraction_buys_the_cheapest_levels_that_meet_it() -> None:
    cold = np.array([[10.0, 2.0, 0.0], [4.0, 1.0, 0.0]])
    hours = np.array([[0.0, 5.0, 9.0], [0.0, 1.0, 8.0]])
    requests = np.array([20.0, 20.0])
    prices = Prices(cold=np.array([0.01, 0.01]), replica_hour=np.array([1.0, 1.0]))
    candidates = (OFF, 50.0, 95.0)
    assert choose_levels(("a", "b"), cold, hours, requests, prices, candidates=candidates).level_of() == {"a": OFF, "b": OFF}
    # 3 cold of 40 requests at most: a at 50 and b at 50 (3 cold, 6 hours) is the cheapest way
    choice = choose_levels(("a", "b"), cold, hours, requests, prices, candidates=candidates, target_cold_fraction=3 / 40)
    assert choice.level_of() == {"a": 50.0, "b": 50.0}
    with pytest.raises(SchedulingError, match="--target-cold-fraction must be in"):
        choose_levels(("a", "b"), cold, hours, requests, prices, candidates=candidates, target_cold_fraction=1.5)


def _daily(models: int, days: int, *, seed: int) -> Trace:
    rng = np.random.default_rng(seed)
    hours = np.arange(24 * days)
    demand = np.vstack([rng.poisson(20 + 15 * np.sin(2 * np.pi * hours / 24) + 5 * i) for i in range(models)]).astype(float)
    stamps = pd.date_range("2026-01-05", periods=len(hours), freq="h", tz="UTC")
    return Trace(tuple(f"m{i}" for i in range(models)), stamps, demand, len(hours) - 48, pd.Timedelta(hours=1),
                 np.zeros(models, dtype=int))


def test_backtests_use_only_the_history_before_the_first_decision() -> None:
    trace = _daily(3, 10, seed=1)
    context = context_for(trace, np.full(3, 10.0), lead=1)
    seen: list[int] = []

    def forecast(observed: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray]:
        seen.append(observed.shape[1])
        last = observed[:, -24:]
        yhat = np.resize(last, (3, horizon))
        return yhat, 1.2 * yhat

    t0 = trace.eval_start - 1
    cold, hours, requests = backtest_scores(
        context, trace.demand[:, :t0], forecast, candidates=(OFF, 80.0), replan=24, origins=3, base=80.0
    )
    assert seen == [t0 - 72, t0 - 48, t0 - 24]
    assert requests.tolist() == pytest.approx(trace.demand[:, t0 - 72 : t0].sum(axis=1).tolist())
    assert (cold[:, 0] == requests).all() and (hours[:, 0] == 0).all()  # off: every request cold, no replica
    assert (cold[:, 1] < cold[:, 0]).all()


def test_the_cost_policy_reports_a_level_per_model_and_is_causal() -> None:
    trace = _daily(4, 12, seed=2)
    capacity = np.full(4, 10.0)
    context = context_for(trace, capacity, lead=1)
    prices = Prices.derived(capacity, interval_hours=1.0)

    def run(demand: np.ndarray) -> tuple[np.ndarray, CostPolicy]:
        t = Trace(trace.models, trace.timestamps, demand, trace.eval_start, trace.interval, trace.first)
        policy = CostPolicy(context, seasonal_naive_forecast, prices, replan=12)
        return run_policy(t, policy, lead=1), policy

    base, policy = run(trace.demand)
    assert policy.choice is not None and set(policy.choice.level_of()) == set(trace.models)
    assert all(reason.startswith("level ") for reason in policy.choice.reasons().values())
    moment = trace.eval_start + 10
    changed = trace.demand.copy()
    changed[:, moment:] *= 5
    after, _ = run(changed)
    before = moment - (trace.eval_start - 1) + 1
    assert np.array_equal(base[:, :before], after[:, :before])
    assert not np.array_equal(base, after)


def test_a_cached_forecast_runs_once_per_history_and_horizon(telemetry: pd.DataFrame) -> None:
    from scheduling.forecast_policy import cached_forecast

    calls: list[int] = []

    def fn(history: pd.DataFrame, horizon: int, interval: pd.Timedelta) -> pd.DataFrame:
        calls.append(horizon)
        return seasonal_naive_forecast(history, horizon, interval)

    cached = cached_forecast(fn)
    first = cached(telemetry, 12, pd.Timedelta(hours=1))
    first[C.YHAT] = -1.0  # a caller's change does not reach the memo
    again = cached(telemetry, 12, pd.Timedelta(hours=1))
    cached(telemetry, 24, pd.Timedelta(hours=1))
    cached(telemetry.iloc[:-8], 12, pd.Timedelta(hours=1))
    assert calls == [12, 24, 12]
    assert (again[C.YHAT] >= 0).all()
