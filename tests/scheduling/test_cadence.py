"""The simulator's default re-planning cadence is the deployment's, and stays causal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from prewarm import columns as C
from scheduling.cadence import DEPLOYMENT_CADENCE, default_replan
from scheduling.cost_policy import BACKTEST_INTERVALS, CostPolicy, backtest_stride, choose_model_levels
from scheduling.cost import Prices
from scheduling.errors import SimulationError
from scheduling.experiment import SimulationOptions, build_policies
from scheduling.forecast_policy import ForecastPolicy
from scheduling.planner import PlanModel, PlannerConfig, plan_windows, reaching
from scheduling.simulator import context_for, run_policy
from scheduling.trace import Trace, replica_capacity
from tests.scheduling.conftest import seasonal_naive_forecast

ROOT = Path(__file__).resolve().parents[2]


def test_the_cadence_is_the_forecast_and_plan_schedule_of_the_deployment() -> None:
    document = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    (deployment,) = [d for d in document["deployments"] if d["name"] == "forecast-and-plan"]
    seconds = {s["interval"] for s in deployment["schedules"]}
    assert seconds == {DEPLOYMENT_CADENCE.total_seconds()}


@pytest.mark.parametrize(
    ("interval", "replan"), [("1h", 1), ("30min", 1), ("15min", 2), ("5min", 6), ("1min", 30), ("1D", 1)]
)
def test_default_replan_is_the_cadence_in_intervals_at_least_one(interval: str, replan: int) -> None:
    assert default_replan(pd.Timedelta(interval)) == replan


def test_a_non_positive_interval_is_refused() -> None:
    with pytest.raises(SimulationError, match="interval must be positive"):
        default_replan(pd.Timedelta(0))


def test_the_simulator_replans_every_interval_of_hourly_telemetry_unless_told(trace: Trace) -> None:
    capacity = replica_capacity(trace, replicas_at_peak=4)
    options = SimulationOptions(eval_intervals=48, policies=("forecast", "cost"))
    built = build_policies(trace, options, capacity, forecast_fn=seasonal_naive_forecast)
    assert isinstance(built["forecast"], ForecastPolicy) and built["forecast"].replan == 1
    assert isinstance(built["cost"], CostPolicy) and built["cost"].replan == 1
    told = build_policies(trace, SimulationOptions(eval_intervals=48, replan=6, policies=("forecast",)), capacity,
                          forecast_fn=seasonal_naive_forecast)
    assert told["forecast"].replan == 6  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["forecast", "cost"])
def test_replanning_every_interval_is_causal(trace: Trace, name: str) -> None:
    """Perturbing demand from a moment on changes no decision before it, at the default cadence."""
    capacity = replica_capacity(trace, replicas_at_peak=4)
    options = SimulationOptions(eval_intervals=trace.n_intervals - trace.eval_start, policies=(name,))
    rng = np.random.default_rng(5)
    for moment in (trace.eval_start, trace.eval_start + 7):
        demand = trace.demand.copy()
        demand[:, moment:] = rng.poisson(50, size=demand[:, moment:].shape)
        perturbed = Trace(trace.models, trace.timestamps, demand, trace.eval_start, trace.interval, trace.first)
        runs = [
            run_policy(t, build_policies(t, options, capacity, forecast_fn=seasonal_naive_forecast)[name], lead=1)
            for t in (trace, perturbed)
        ]
        before = moment - (trace.eval_start - 1) + 1
        assert np.array_equal(runs[0][:, :before], runs[1][:, :before]), f"{name} changed a decision before {moment}"
        assert not np.array_equal(runs[0], runs[1])


def test_backtest_origins_follow_the_cadence_and_spread_over_the_day() -> None:
    hour = pd.Timedelta(hours=1)
    assert backtest_stride(24, 3, hour) == 24 and backtest_stride(6, 12, hour) == 6  # back-to-back blocks
    stride = backtest_stride(1, 24, hour)
    assert stride * 24 >= BACKTEST_INTERVALS
    assert len({(j * stride) % 24 for j in range(1, 25)}) == 24, "every hour of the day is an origin once"


def test_hourly_replanning_backtests_one_interval_ahead_from_each_origin(trace: Trace) -> None:
    capacity = replica_capacity(trace, replicas_at_peak=4)
    context = context_for(trace, capacity, lead=1)
    calls: list[tuple[int, int]] = []

    def forecast(history: pd.DataFrame, horizon: int, interval: pd.Timedelta) -> pd.DataFrame:
        calls.append((history[C.TIMESTAMP].nunique(), horizon))
        return seasonal_naive_forecast(history, horizon, interval)

    t0 = trace.eval_start
    choose_model_levels(context, trace.demand[:, :t0], forecast, Prices.derived(capacity, interval_hours=1.0), replan=1)
    stride = backtest_stride(1, 24, trace.interval)
    assert len(calls) == 24 and {h for _, h in calls} == {2}  # the re-plan's interval and the lead
    assert sorted({n for n, _ in calls}) == [t0 - j * stride for j in range(24, 0, -1)]


def test_models_below_the_threshold_are_left_out_of_the_plan_and_change_nothing(trace: Trace) -> None:
    capacity = replica_capacity(trace, replicas_at_peak=4)
    frame = seasonal_naive_forecast(trace.history_frame(trace.eval_start), 3, trace.interval)
    quiet = frame[C.MODEL] == frame[C.MODEL].iloc[0]
    frame.loc[quiet, [C.YHAT, C.LO, C.HI]] = [0.5, 0.0, 0.9]  # never a whole request: no window
    kept = reaching(frame, 1.0)
    assert frame[C.MODEL].iloc[0] not in set(kept[C.MODEL]) and not kept.empty
    fleet = {m: PlanModel(name=m, replica_capacity=float(c)) for m, c in zip(trace.models, capacity, strict=True)}
    now = trace.timestamps[trace.eval_start]
    plans = [plan_windows(f, fleet, config=PlannerConfig(interval=trace.interval), now=now) for f in (frame, kept)]
    assert plans[0].rows and plans[0].rows == plans[1].rows
    assert {r.model for r in plans[0].rows} <= set(kept[C.MODEL])
