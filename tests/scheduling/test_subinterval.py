"""Time-to-ready finer than the interval: the shared arithmetic, the simulator's charge, the planner's agreement."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from prewarm import columns as C
from prewarm.cli.main import app
from prewarm.cli.plan import warm_from
from scheduling.errors import SchedulingError, SimulationError
from scheduling.experiment import POLICY_NAMES, SimulationOptions, build_policies, parse_lead, run_simulation
from scheduling.forecast_policy import ForecastPolicy
from scheduling.leads import LeadTimes
from scheduling.metrics import summary
from scheduling.planner import PlanModel, PlannerConfig, plan_windows
from scheduling.policies import ReactivePolicy
from scheduling.simulator import context_for, run_policy, simulate
from scheduling.subinterval import SubInterval
from scheduling.trace import Trace, replica_capacity, trace_from_telemetry
from tests.scheduling.conftest import seasonal_naive_forecast

HOUR = pd.Timedelta(hours=1)
T0 = pd.Timestamp("2026-01-01 10:00", tz="UTC")


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


@pytest.mark.parametrize(
    ("lead_s", "steps", "share"),
    [(90.0, 1, 0.025), (1800.0, 1, 0.5), (3600.0, 1, 1.0), (5400.0, 2, 0.5), (7200.0, 2, 1.0), (0.0, 0, 1.0)],
)
def test_steps_and_first_share_by_hand(lead_s: float, steps: int, share: float) -> None:
    timing = SubInterval(3600.0, lead_s)
    assert timing.steps == steps
    assert timing.first_share == pytest.approx(share)
    assert timing.is_whole == (share == 1.0)


def test_warm_at_charged_seconds_and_served_share_by_hand() -> None:
    timing = SubInterval(3600.0, 1800.0)
    assert timing.warm_at(T0) == T0 - pd.Timedelta(minutes=30)
    assert timing.charged_seconds(T0, T0 + 2 * HOUR) == 2.5 * 3600
    # arrivals spread evenly: ready at 10:15 serves three quarters of the 10:00 interval, all of 11:00, none of 09:00
    ready = T0 + pd.Timedelta(minutes=15)
    assert timing.served_share(ready, T0) == 0.75
    assert timing.served_share(ready, T0 + HOUR) == 1.0
    assert timing.served_share(ready, T0 - HOUR) == 0.0
    assert timing.served_shares(T0 + pd.Timedelta(minutes=90), T0, 3).tolist() == [0.0, 0.5, 1.0]
    with pytest.raises(SchedulingError, match="time-to-ready must be a number of seconds >= 0"):
        SubInterval(3600.0, -1.0)


def test_charged_replicas_by_hand() -> None:
    provisioned = np.array([[0, 2, 2, 1, 3, 3, 0]])
    # lead 1.5 h: a replica is charged half of the interval it was requested in (a rise), whole after it
    assert SubInterval(3600.0, 5400.0).charged(provisioned).tolist() == [[0.0, 1.0, 2.0, 1.0, 2.0, 3.0, 0.0]]
    # column 0 is a rise from nothing
    assert SubInterval(3600.0, 900.0).charged(np.array([[2, 2]])).tolist() == [[0.5, 2.0]]
    assert SubInterval(3600.0, 7200.0).charged(provisioned).tolist() == provisioned.astype(float).tolist()


def test_loads_on_demand_by_hand() -> None:
    capacity = np.array([2.0])
    shortfall = np.array([[0.0, 1.0, 5.0, 0.5]])
    # 15 minutes to ready: the first request short and a quarter of the others are cold; ceil(e / 2) loads,
    # each charged from ready to the interval's end (three quarters)
    cold, loaded = SubInterval(3600.0, 900.0).on_demand(shortfall, capacity)
    assert cold.tolist() == [[0.0, 1.0, 2.0, 0.5]]
    assert loaded.tolist() == [[0.0, 0.75, 2.25, 0.75]]
    for lead_s in (3600.0, 5400.0, 0.0):  # ready at a boundary, or at once: no load inside the interval
        cold, loaded = SubInterval(3600.0, lead_s).on_demand(shortfall, capacity)
        assert cold.tolist() == shortfall.tolist() and not loaded.any()


def test_a_sub_interval_lead_charges_by_the_second_and_loads_on_demand() -> None:
    # history [4, 4, 4, 4]: capacity 2 at 2 replicas at peak; reactive decides 2, 2, 0, 3, 3 at t = 3..7
    trace = _trace([[4, 4, 4, 4, 0, 5, 5, 1]], eval_intervals=4)
    capacity = replica_capacity(trace, replicas_at_peak=2)
    runs = {}
    for lead_s in (None, 1800.0):
        policy = ReactivePolicy(context_for(trace, capacity, lead=1, lead_s=lead_s))
        runs[lead_s] = simulate(trace, {"reactive": policy}, capacity=capacity, lead=1, lead_s=lead_s)
    whole, half = runs[None].outcomes["reactive"], runs[1800.0].outcomes["reactive"]
    assert half.ready.tolist() == whole.ready.tolist() == [[2, 0, 0, 3]]
    assert whole.cold.tolist() == [[0.0, 5.0, 5.0, 0.0]]
    # 5 requests short at t = 5 and 6: the first and half of the other 4 arrive while 3 loads take 30 min
    assert half.cold.tolist() == [[0.0, 3.0, 3.0, 0.0]]
    # the policy's 3 replicas requested at t = 6 warm from 6:30 (1.5); each interval's 3 loads serve its second half
    assert half.charged.tolist() == [[2.0, 1.5, 1.5 + 1.5, 3.0]]
    assert summary(runs[1800.0])["policies"]["reactive"]["replica_hours"] == 9.5
    assert summary(runs[None])["policies"]["reactive"]["replica_hours"] == 8.0
    assert summary(runs[1800.0])["lead_seconds"] == 1800.0


def test_a_lead_of_whole_intervals_in_seconds_changes_nothing(trace: Trace) -> None:
    """Every policy's outcome with ``lead_seconds`` = 2 intervals equals the outcome with ``lead=2``."""
    results = [
        run_simulation(trace, SimulationOptions(eval_intervals=48, replan=12, **lead), forecast_fn=seasonal_naive_forecast)
        for lead in ({"lead": 2}, {"lead_seconds": 7200.0})
    ]
    for name in POLICY_NAMES:
        a, b = results[0].outcomes[name], results[1].outcomes[name]
        assert np.array_equal(a.provisioned, b.provisioned) and np.array_equal(a.ready, b.ready), name
        assert np.array_equal(a.cold, b.cold), name
        assert np.array_equal(a.charged, a.provisioned) and np.array_equal(b.charged, b.provisioned), name
    documents = [summary(r) for r in results]
    for document in documents:
        for entry in document["policies"].values():
            entry.pop("seconds")
    assert documents[0] == documents[1]


@pytest.mark.parametrize("name", [n for n in POLICY_NAMES if n != "oracle"])
def test_no_policy_sees_the_future_at_a_sub_interval_lead(telemetry: pd.DataFrame, name: str) -> None:
    """At 90 minutes to ready (2 boundaries ahead), perturbing demand from a moment on changes no decision before it."""
    options = SimulationOptions(eval_intervals=72, replan=12, lead_seconds=5400.0, policies=(name,))
    base = trace_from_telemetry(telemetry, eval_intervals=72)
    capacity = replica_capacity(base, replicas_at_peak=4)
    timing = SubInterval(3600.0, 5400.0)
    rng = np.random.default_rng(5)
    for moment in (base.eval_start, base.eval_start + 7):
        demand = base.demand.copy()
        demand[:, moment:] = rng.poisson(50, size=demand[:, moment:].shape)
        perturbed = Trace(base.models, base.timestamps, demand, base.eval_start, base.interval, base.first)
        runs = [
            run_policy(t, build_policies(t, options, capacity, forecast_fn=seasonal_naive_forecast)[name], lead=2)
            for t in (base, perturbed)
        ]
        before = moment - (base.eval_start - 2) + 1
        assert np.array_equal(runs[0][:, :before], runs[1][:, :before]), f"{name} changed a decision before {moment}"
        assert np.array_equal(timing.charged(runs[0])[:, :before], timing.charged(runs[1])[:, :before])


def _fixed_forecast(yhat: dict[int, float], stamps: pd.DatetimeIndex):  # noqa: ANN202
    """A forecast that ignores the history: ``yhat`` by interval index (0 elsewhere), the interval equal to it."""

    def run(history: pd.DataFrame, horizon: int, interval: pd.Timedelta) -> pd.DataFrame:
        start = int(np.searchsorted(stamps, history[C.TIMESTAMP].max() + interval))
        values = np.array([yhat.get(start + i, 0.0) for i in range(horizon)])
        future = pd.date_range(stamps[start], periods=horizon, freq=interval)
        return pd.DataFrame({C.MODEL: "m0", C.TIMESTAMP: future, C.YHAT: values, C.LO: values, C.HI: values})

    return run


def test_the_simulator_charges_what_the_plan_says() -> None:
    # 7 history intervals, 7 evaluated; the forecast policy plans once, at t = 6, half an hour to ready
    yhat = {8: 5.0, 9: 15.0, 10: 15.0, 13: 5.0}
    trace = _trace([[5.0] * 7 + [yhat.get(t, 0.0) for t in range(7, 14)]], eval_intervals=7)
    capacity = np.array([10.0])
    fn = _fixed_forecast(yhat, trace.timestamps)
    policy = ForecastPolicy(context_for(trace, capacity, lead=1, lead_s=1800.0), fn, replan=24)
    result = simulate(trace, {"forecast": policy}, capacity=capacity, lead=1, lead_s=1800.0)

    now = trace.timestamps[6]
    frame = fn(pd.DataFrame({C.TIMESTAMP: [trace.timestamps[5]]}), 24, HOUR)
    plan = plan_windows(
        frame, {"m0": PlanModel("m0", replica_capacity=10.0)}, lead_times=LeadTimes(default_s=1800.0, margin_s=0.0),
        config=PlannerConfig(interval=HOUR), now=now,
    )
    timing = SubInterval(3600.0, 1800.0)
    # windows 08:00-11:00 (layer 1), 09:00-11:00 (layer 2), 13:00-14:00, each warmed from half an hour before
    assert [(r.window_start.hour, r.end.hour, r.replicas) for r in plan.rows] == [(8, 11, 1), (9, 11, 1), (13, 14, 1)]
    assert all(r.start == timing.warm_at(r.window_start) and "late" not in r.reason for r in plan.rows)
    planned_hours = sum(r.replicas * timing.charged_seconds(r.window_start, r.end) for r in plan.rows) / 3600
    assert planned_hours == 3.5 + 2.5 + 1.5
    out = result.outcomes["forecast"]
    assert out.charged.tolist() == [[0.5, 1.5, 2.0, 2.0, 0.0, 0.5, 1.0]]
    assert summary(result)["policies"]["forecast"]["replica_hours"] == planned_hours
    assert out.ready.tolist() == [[0, 1, 2, 2, 0, 0, 1]] and out.cold.sum() == 0.0


@pytest.mark.parametrize(("now", "expected"), [(T0, 15.0), (T0 - pd.Timedelta(minutes=10), 16.666667)])
def test_a_late_start_serves_the_covered_share_of_its_first_interval(now: pd.Timestamp, expected: float) -> None:
    stamps = pd.date_range(T0, periods=2, freq="h")
    frame = pd.DataFrame({C.MODEL: "m0", C.TIMESTAMP: stamps, C.YHAT: 10.0, C.LO: 10.0, C.HI: 10.0})
    plan = plan_windows(
        frame, {"m0": PlanModel("m0", replica_capacity=10.0)}, lead_times=LeadTimes(default_s=1800.0, margin_s=0.0),
        config=PlannerConfig(interval=HOUR), now=now,
    )
    (row,) = plan.rows
    assert row.start == now and row.reason == "forecast, late start"
    # ready at now + 30 min: the covered share of 10:00's 10 requests, then all of 11:00's
    assert row.expected_demand == expected


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("2", (2, None)), ("90s", (0, 90.0)), ("5m", (0, 300.0)), ("1.5h", (0, 5400.0)), ("1d", (0, 86400.0)), (" 0 ", (0, None))],
)
def test_parse_lead(text: str, parsed: tuple[int, float | None]) -> None:
    assert parse_lead(text) == parsed


@pytest.mark.parametrize("text", ["1.5", "5x", "-1", "m", ""])
def test_parse_lead_refuses_what_is_neither(text: str) -> None:
    with pytest.raises(SimulationError, match="give a whole number of intervals .* or a time-to-ready such as 90s"):
        parse_lead(text)


def test_simulate_cli_takes_a_duration(tmp_path: Path, telemetry: pd.DataFrame) -> None:
    path = tmp_path / "telemetry.csv"
    telemetry.to_csv(path, index=False)
    runner = CliRunner()
    documents = {}
    for lead in ("1", "30m"):
        result = runner.invoke(
            app, ["simulate", "-i", str(path), "--eval-intervals", "24", "--policies", "reactive", "--lead", lead, "--json"]
        )
        assert result.exit_code == 0, result.output
        documents[lead] = json.loads(result.stdout)
    whole, half = documents["1"], documents["30m"]
    assert (half["lead"], half["lead_seconds"], whole["lead_seconds"]) == (1, 1800.0, 3600.0)
    assert half["policies"]["reactive"]["cold_requests"] < whole["policies"]["reactive"]["cold_requests"]
    assert half["policies"]["reactive"]["cold_start_events"] == whole["policies"]["reactive"]["cold_start_events"]
    table = runner.invoke(app, ["simulate", "-i", str(path), "--eval-intervals", "24", "--policies", "reactive", "--lead", "90s"])
    assert table.exit_code == 0 and "lead 1 min 30 s (requested 1 interval ahead)" in " ".join(table.stdout.split())
    bad = runner.invoke(app, ["simulate", "-i", str(path), "--eval-intervals", "24", "--lead", "soon"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    assert "--lead 'soon': give a whole number of intervals" in " ".join(bad.stderr.split())


def test_plan_shows_warm_from_to_the_second_inside_an_interval(tmp_path: Path, telemetry: pd.DataFrame) -> None:
    assert warm_from(T0, HOUR) == "Thu 10:00"
    assert warm_from(T0 - pd.Timedelta(seconds=90), HOUR) == "Thu 09:58:30"
    path = tmp_path / "telemetry.csv"
    telemetry.to_csv(path, index=False)
    result = CliRunner().invoke(app, ["plan", "-i", str(path), "--fast", "--lead-seconds", "90"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert re.search(r"\w{3} \d\d:58:30", result.stdout), result.stdout
