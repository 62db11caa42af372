"""The simulator's rules, the oracle's optimality and the causality of every policy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prewarm import columns as C
from scheduling.errors import SimulationError
from scheduling.experiment import POLICY_NAMES, SimulationOptions, build_policies, parse_policies, run_simulation
from scheduling.forecast_policy import engine_forecast
from scheduling.metrics import summary
from scheduling.policies import KeepAlivePolicy, ReactivePolicy, StaticPolicy
from scheduling.simulator import context_for, ready_from_provisioned, run_policy, simulate
from scheduling.trace import Trace, replica_capacity, trace_from_telemetry
from tests.scheduling.conftest import seasonal_naive_forecast


def _trace(rows: list[list[float]], eval_intervals: int) -> Trace:
    demand = np.asarray(rows, dtype=float)
    stamps = pd.date_range("2026-01-01", periods=demand.shape[1], freq="h", tz="UTC")
    frame = pd.DataFrame(
        {
            C.TIMESTAMP: np.tile(stamps, len(rows)),
            C.MODEL: np.repeat([f"m{i}" for i in range(len(rows))], demand.shape[1]),
            C.REQUESTS: demand.reshape(-1),
        }
    )
    return trace_from_telemetry(frame, eval_intervals=eval_intervals)


def test_ready_lags_requests_by_lead_and_releases_newest_first() -> None:
    provisioned = np.array([[0, 2, 2, 1, 3, 3, 0]])
    assert ready_from_provisioned(provisioned, 0).tolist() == provisioned.tolist()
    assert ready_from_provisioned(provisioned, 1).tolist() == [[0, 0, 2, 1, 1, 3, 0]]
    assert ready_from_provisioned(provisioned, 2).tolist() == [[0, 0, 0, 1, 1, 1, 0]]


def test_capacity_is_p95_of_history_over_replicas_at_peak_and_at_least_one() -> None:
    trace = _trace([list(range(1, 101)) + [0] * 4, [0.5] * 104], eval_intervals=4)
    capacity = replica_capacity(trace, replicas_at_peak=4)
    assert capacity[0] == pytest.approx(np.percentile(np.arange(1, 101), 95) / 4)
    assert capacity[1] == 1.0
    with pytest.raises(SimulationError, match="--replicas-at-peak must be a positive number"):
        replica_capacity(trace, replicas_at_peak=0)


def test_cold_requests_by_hand() -> None:
    # history [4, 4, 4, 4] gives p95 4 and, at 2 replicas at peak, a capacity of 2 per replica
    trace = _trace([[4, 4, 4, 4, 0, 5, 5, 1]], eval_intervals=4)
    capacity = replica_capacity(trace, replicas_at_peak=2)
    result = simulate(trace, {"reactive": ReactivePolicy(context_for(trace, capacity, lead=1))}, capacity=capacity, lead=1)
    out = result.outcomes["reactive"]
    # decisions at t = 3..7 follow the previous interval: 2, 2, 0, 3, 3 -> evaluation (t = 4..7) 2, 0, 3, 3
    assert out.provisioned.tolist() == [[2, 0, 3, 3]]
    assert out.ready.tolist() == [[2, 0, 0, 3]]
    assert out.cold.tolist() == [[0.0, 5.0, 5.0, 0.0]]
    document = summary(result)
    assert document["policies"]["reactive"]["cold_fraction"] == pytest.approx(10 / 11)
    assert document["policies"]["reactive"]["cold_start_events"] == 2
    assert document["policies"]["reactive"]["replica_hours"] == 8.0


def test_oracle_has_no_cold_request_at_the_least_cost(trace: Trace) -> None:
    result = run_simulation(trace, SimulationOptions(eval_intervals=48, lead=2, policies=("static", "reactive", "oracle")))
    oracle = result.outcomes["oracle"]
    assert oracle.cold.sum() == 0
    # any provisioning without cold requests needs, at t, every replica ready somewhere in [t, t + lead]
    needed = np.ceil(result.eval_demand / result.capacity[:, None] - 1e-9)
    for t in range(needed.shape[1]):
        assert (oracle.provisioned[:, t] == needed[:, t : t + 3].max(axis=1)).all()
    assert result.outcomes["static"].provisioned.sum() > oracle.provisioned.sum()


def test_static_keepalive_and_reactive_rules() -> None:
    trace = _trace([[2, 8, 2, 0, 0, 0, 6, 0, 0, 0]], eval_intervals=6)
    capacity = replica_capacity(trace, replicas_at_peak=4)  # p95 of [2, 8, 2, 0] = 7.1 -> 1.775
    context = context_for(trace, capacity, lead=1)
    static = run_policy(trace, StaticPolicy(context), lead=1)
    assert (static == np.ceil(8 / capacity[0])).all()
    keep = run_policy(trace, KeepAlivePolicy(context, keep_alive_seconds=2 * 3600), lead=1)
    # decisions at t = 3..9: max need over the two intervals before t
    assert keep[0].tolist() == [5, 2, 0, 0, 4, 4, 0]


@pytest.mark.parametrize("name", [n for n in POLICY_NAMES if n != "oracle"])
def test_no_policy_sees_demand_at_or_after_its_decision_time(telemetry: pd.DataFrame, name: str) -> None:
    """Perturbing demand from a moment on changes no decision before that moment."""
    options = SimulationOptions(eval_intervals=72, replan=12, policies=(name,))
    base = trace_from_telemetry(telemetry, eval_intervals=72)
    capacity = replica_capacity(base, replicas_at_peak=4)
    forecast_fn = engine_forecast(80.0, fast=True)
    rng = np.random.default_rng(11)
    for moment in (base.eval_start, base.eval_start + 5, base.eval_start + 30):
        perturbed_demand = base.demand.copy()
        perturbed_demand[:, moment:] = rng.poisson(50, size=perturbed_demand[:, moment:].shape)
        perturbed = Trace(base.models, base.timestamps, perturbed_demand, base.eval_start, base.interval, base.first)
        runs = []
        for trace in (base, perturbed):
            policy = build_policies(trace, options, capacity, forecast_fn=forecast_fn)[name]
            runs.append(run_policy(trace, policy, lead=1))
        start = base.eval_start - 1
        before = moment - start + 1  # decisions at t <= moment may not see demand at moment
        assert np.array_equal(runs[0][:, :before], runs[1][:, :before]), f"{name} changed a decision before {moment}"
        assert not np.array_equal(runs[0], runs[1]) or name == "static"


def test_oracle_is_the_one_policy_that_looks_ahead(telemetry: pd.DataFrame) -> None:
    base = trace_from_telemetry(telemetry, eval_intervals=24)
    capacity = replica_capacity(base, replicas_at_peak=4)
    demand = base.demand.copy()
    demand[:, -1] += 1000
    ahead = Trace(base.models, base.timestamps, demand, base.eval_start, base.interval, base.first)
    options = SimulationOptions(eval_intervals=24, policies=("oracle",))
    runs = [run_policy(t, build_policies(t, options, capacity)["oracle"], lead=1) for t in (base, ahead)]
    assert not np.array_equal(runs[0][:, :-1], runs[1][:, :-1])


def test_forecast_policy_replans_on_schedule_and_warms_ahead(trace: Trace) -> None:
    result = run_simulation(
        trace,
        SimulationOptions(eval_intervals=48, replan=12, policies=("reactive", "forecast")),
        forecast_fn=seasonal_naive_forecast,
    )
    forecast, reactive = result.outcomes["forecast"], result.outcomes["reactive"]
    assert forecast.cold.sum() < reactive.cold.sum()
    assert forecast.ready.max() > 0


def test_bad_options_are_refused(telemetry: pd.DataFrame) -> None:
    with pytest.raises(SimulationError, match="unknown policy 'lambda'"):
        parse_policies("reactive,lambda")
    with pytest.raises(SimulationError, match="no policy named"):
        parse_policies(" , ")
    assert parse_policies("oracle, static") == ("static", "oracle")
    with pytest.raises(SimulationError, match="leaves no history"):
        trace_from_telemetry(telemetry, eval_intervals=240)
    with pytest.raises(SimulationError, match="--eval-intervals must be at least 1"):
        trace_from_telemetry(telemetry, eval_intervals=0)
    with pytest.raises(SimulationError, match="--replan must be at least 1"):
        run_simulation(telemetry, SimulationOptions(eval_intervals=24, replan=0))
    with pytest.raises(SimulationError, match="--lead must be >= 0"):
        run_simulation(telemetry, SimulationOptions(eval_intervals=24, lead=-1, policies=("static",)))


def test_models_with_late_first_rows_keep_their_own_history() -> None:
    stamps = pd.date_range("2026-01-01", periods=30, freq="h", tz="UTC")
    frame = pd.concat(
        [
            pd.DataFrame({C.TIMESTAMP: stamps, C.MODEL: "early", C.REQUESTS: 10.0}),
            pd.DataFrame({C.TIMESTAMP: stamps[20:], C.MODEL: "late", C.REQUESTS: 40.0}),
        ]
    )
    trace = trace_from_telemetry(frame, eval_intervals=5)
    assert trace.first.tolist() == [0, 20]
    assert replica_capacity(trace, replicas_at_peak=4).tolist() == [2.5, 10.0]
    history = trace.history_frame(25)
    assert (history[C.MODEL] == "late").sum() == 5
