"""The warm planner: replicas from the upper bound, lead times, merging, keep-alive, capacity, staggering."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prewarm import columns as C
from scheduling.errors import PlanningError
from scheduling.leads import LeadTimes, lead_times_from_runs
from scheduling.placement import Host, Placed
from scheduling.planner import (
    PLAN_COLUMNS,
    PlanModel,
    PlannerConfig,
    idempotency_key,
    needed_per_interval,
    plan_models_from_fleet,
    plan_windows,
    provisioned_matrix,
)

T0 = pd.Timestamp("2026-02-02T00:00:00Z")
HOUR = pd.Timedelta(hours=1)


def _forecast(model: str, hi: list[float], yhat: list[float] | None = None) -> pd.DataFrame:
    yhat = yhat if yhat is not None else [h * 0.8 for h in hi]
    return pd.DataFrame(
        {
            C.MODEL: model,
            C.TIMESTAMP: pd.date_range(T0, periods=len(hi), freq="h"),
            C.YHAT: yhat,
            C.LO: 0.0,
            C.HI: hi,
        }
    )


def _fleet(*models: PlanModel) -> dict[str, PlanModel]:
    return {m.name: m for m in models}


def test_replicas_come_from_the_upper_bound_and_predicted_demand_gets_one() -> None:
    need = needed_per_interval(np.array([0.0, 0.5, 1.0, 30.0, 0.2]), np.array([0.0, 0.9, 1.2, 45.0, 1.5]), 10.0, 1.0)
    assert need.tolist() == [0, 0, 1, 5, 1]


def test_lead_is_p95_of_time_to_ready_plus_margin_else_the_default() -> None:
    runs = pd.DataFrame(
        {"model": ["a"] * 20 + ["b"], "device_class": ["h100"] * 20 + [None], "time_to_ready_s": [*range(1, 21), np.nan]}
    )
    leads = lead_times_from_runs(runs, default_s=100.0, margin_s=10.0)
    assert leads.lead("a", "h100") == pytest.approx(np.percentile(np.arange(1, 21), 95) + 10.0)
    assert leads.lead("a", "a10g") == pytest.approx(np.percentile(np.arange(1, 21), 95) + 10.0)
    assert leads.lead("b") == 110.0
    assert lead_times_from_runs(pd.DataFrame()).lead("x") == 150.0
    with pytest.raises(PlanningError, match="lacks column"):
        lead_times_from_runs(pd.DataFrame({"model": ["a"]}))


def test_windows_open_a_lead_before_demand_and_layers_add_up() -> None:
    frame = _forecast("m", [0, 0, 15, 25, 15, 0, 0, 0])
    result = plan_windows(
        frame,
        _fleet(PlanModel("m", replica_capacity=10.0, version="3")),
        lead_times=LeadTimes(default_s=1800.0, margin_s=0.0),
        now=T0,
    )
    rows = sorted(result.rows, key=lambda r: r.replicas, reverse=True)
    assert [(r.window_start, r.end, r.replicas) for r in rows] == [(T0 + 2 * HOUR, T0 + 5 * HOUR, 2), (T0 + 3 * HOUR, T0 + 4 * HOUR, 1)]
    assert all(r.start == r.window_start - pd.Timedelta(minutes=30) and r.lead_seconds == 1800.0 for r in rows)
    assert rows[0].version == "3" and rows[0].reason == "forecast"
    assert sum(r.expected_demand for r in rows) == pytest.approx(0.8 * (15 + 25 + 15))
    stamps = pd.date_range(T0, periods=8, freq="h")
    # a replica counts from the interval in which it is requested (the 1-replica row starts at 02:30)
    assert provisioned_matrix(result, ["m"], stamps).tolist() == [[0, 2, 3, 3, 2, 0, 0, 0]]
    assert list(result.frame().columns) == list(PLAN_COLUMNS)


def test_gaps_cheaper_to_bridge_than_a_reload_are_merged() -> None:
    frame = _forecast("m", [5, 0, 0, 5, 0, 0, 0, 0, 0, 5])
    fleet = _fleet(PlanModel("m", replica_capacity=10.0))
    tight = plan_windows(frame, fleet, lead_times=LeadTimes(default_s=3600.0, margin_s=0.0), now=T0 - HOUR)
    assert [(r.window_start, r.end) for r in tight.rows] == [(T0, T0 + HOUR), (T0 + 3 * HOUR, T0 + 4 * HOUR), (T0 + 9 * HOUR, T0 + 10 * HOUR)]
    costly_reload = PlannerConfig(reload_cost_s=3600.0)
    merged = plan_windows(frame, fleet, lead_times=LeadTimes(default_s=3600.0, margin_s=0.0), config=costly_reload, now=T0 - HOUR)
    assert [(r.window_start, r.end, r.reason) for r in merged.rows][0] == (T0, T0 + 4 * HOUR, "forecast, bridged gap")
    assert len(merged.rows) == 2


def test_cool_down_comes_after_keep_alive_and_late_starts_are_marked() -> None:
    frame = _forecast("m", [5, 5, 0, 0, 0, 0])
    result = plan_windows(
        frame,
        _fleet(PlanModel("m", replica_capacity=10.0)),
        lead_times=LeadTimes(default_s=600.0, margin_s=0.0),
        config=PlannerConfig(keep_alive_s=1200.0),
        now=T0,
    )
    (row,) = result.rows
    assert row.end == T0 + 2 * HOUR + pd.Timedelta(minutes=20)
    assert row.start == T0 and row.lead_seconds == 0.0 and row.reason == "forecast, late start"


def test_priority_goes_first_and_the_shortfall_is_reported() -> None:
    frame = pd.concat([_forecast("low", [20, 20]), _forecast("high", [20, 20])])
    fleet = _fleet(
        PlanModel("low", replica_capacity=10.0, device_memory_mb=1000, priority=0),
        PlanModel("high", replica_capacity=10.0, device_memory_mb=1000, priority=5),
    )
    hosts = [Host("gpu-a", memory_mb=2500), Host("gpu-b", memory_mb=1000)]
    result = plan_windows(frame, fleet, hosts=hosts, lead_times=LeadTimes(default_s=60.0, margin_s=0.0), now=T0 - HOUR)
    placed = {(r.model, r.host): r.replicas for r in result.rows}
    # Each replica on its own host: high takes one on each; low's second replica finds gpu-b full.
    assert placed == {("high", "gpu-a"): 1, ("high", "gpu-b"): 1, ("low", "gpu-a"): 1}
    (short,) = result.shortfalls
    assert (short.model, short.wanted, short.placed) == ("low", 2, 1)
    assert "device memory" in short.reason
    assert result.shortfall_frame().iloc[0]["model"] == "low"


def test_warm_ups_are_staggered_per_host() -> None:
    frame = pd.concat([_forecast(name, [0, 5]) for name in ("a", "b", "c")])
    fleet = _fleet(*(PlanModel(n, replica_capacity=10.0, device_memory_mb=10) for n in ("a", "b", "c")))
    hosts = [Host("gpu", memory_mb=1000, max_concurrent_warmups=1)]
    result = plan_windows(frame, fleet, hosts=hosts, lead_times=LeadTimes(default_s=600.0, margin_s=0.0), now=T0 - HOUR)
    starts = sorted(r.start for r in result.rows)
    assert starts == [T0 + HOUR - pd.Timedelta(minutes=m) for m in (30, 20, 10)]
    assert sum("staggered earlier" in r.reason for r in result.rows) == 2
    for row in result.rows:
        assert row.start == row.window_start - pd.Timedelta(seconds=row.lead_seconds)


def test_pool_limit_staggers_across_hosts() -> None:
    frame = pd.concat([_forecast(name, [0, 5]) for name in ("a", "b")])
    fleet = _fleet(*(PlanModel(n, replica_capacity=10.0, device_memory_mb=10) for n in ("a", "b")))
    hosts = [Host("gpu-1", memory_mb=10, pool="p"), Host("gpu-2", memory_mb=10, pool="p")]
    result = plan_windows(
        frame, fleet, hosts=hosts, lead_times=LeadTimes(default_s=600.0, margin_s=0.0),
        config=PlannerConfig(max_concurrent_warmups_per_pool=1), now=T0 - HOUR,
    )
    assert {r.host for r in result.rows} == {"gpu-1", "gpu-2"}
    assert sorted(r.start for r in result.rows) == [T0 + HOUR - pd.Timedelta(minutes=20), T0 + HOUR - pd.Timedelta(minutes=10)]


def test_idempotency_key_is_deterministic() -> None:
    frame = _forecast("m", [5, 5, 0])
    fleet = _fleet(PlanModel("m", replica_capacity=10.0))
    first = plan_windows(frame, fleet, now=T0).rows[0]
    again = plan_windows(frame.sample(frac=1.0, random_state=1), fleet, now=T0).rows[0]
    assert first.idempotency_key == again.idempotency_key
    assert first.idempotency_key == idempotency_key("m", "1", first.window_start, first.end, 1)
    assert idempotency_key("m", "1", first.window_start, first.end, 2) != first.idempotency_key


def test_fleet_specs_become_plan_models() -> None:
    class Spec:
        name, version, replica_capacity, device_memory_mb, priority, device = "m", "2", 50.0, 4096.0, 3, "auto"

    (model,) = plan_models_from_fleet([Spec()]).values()
    assert model == PlanModel("m", replica_capacity=50.0, version="2", device_memory_mb=4096.0, priority=3, device_class="any")


def test_bad_inputs_name_what_to_fix() -> None:
    fleet = _fleet(PlanModel("m", replica_capacity=10.0))
    with pytest.raises(PlanningError, match="forecast has model 'ghost' that the fleet lacks"):
        plan_windows(_forecast("ghost", [1, 2]), fleet)
    with pytest.raises(PlanningError, match="lacks column"):
        plan_windows(_forecast("m", [1, 2]).drop(columns=[C.HI]), fleet)
    with pytest.raises(PlanningError, match="cannot infer the forecast's interval"):
        plan_windows(_forecast("m", [3]), fleet)
    with pytest.raises(PlanningError, match="memory_mb must be a positive number"):
        Host("h", memory_mb=0)
    with pytest.raises(PlanningError, match="host names must be unique"):
        plan_windows(_forecast("m", [3, 3]), fleet, hosts=[Host("h", 10), Host("h", 10)])
    with pytest.raises(PlanningError, match="demand_threshold must be > 0"):
        PlannerConfig(demand_threshold=0)
    assert plan_windows(_forecast("m", [3, 3]).iloc[0:0], fleet).rows == ()


def test_replicas_go_to_distinct_hosts_and_overlapping_rows_too() -> None:
    # Three replicas wanted all along, plus a fourth in the middle hour: a base row of 3 and a peak row of 1.
    frame = _forecast("m", [30, 40, 30], yhat=[30, 40, 30])
    fleet = _fleet(PlanModel("m", replica_capacity=10.0, device_memory_mb=10))
    hosts = [Host(f"h{i}", memory_mb=1000) for i in range(3)]
    result = plan_windows(frame, fleet, hosts=hosts, lead_times=LeadTimes(default_s=0.0, margin_s=0.0), now=T0)
    assert all(r.replicas == 1 for r in result.rows)
    base = [r for r in result.rows if r.end == T0 + 3 * HOUR]
    assert sorted(r.host for r in base) == ["h0", "h1", "h2"]
    (short,) = result.shortfalls  # the peak replica would need a fourth host
    assert (short.wanted, short.placed) == (1, 0)
    assert short.reason == "only 3 hosts for 4 replicas at once (one replica per host)"


def test_new_replicas_spread_and_placement_is_sticky_across_replans() -> None:
    frame = pd.concat([_forecast(name, [5, 5]) for name in ("a", "b", "c")])
    fleet = _fleet(*(PlanModel(n, replica_capacity=10.0, device_memory_mb=100) for n in ("a", "b", "c")))
    hosts = [Host("h1", memory_mb=1000), Host("h2", memory_mb=1000)]
    leads = LeadTimes(default_s=0.0, margin_s=0.0)
    first = plan_windows(frame, fleet, hosts=hosts, lead_times=leads, now=T0)
    assert {r.model: r.host for r in first.rows} == {"a": "h1", "b": "h2", "c": "h1"}  # fewest replicas first
    # A third host joins with more room than both: a re-plan keeps every replica where it was.
    bigger = [*hosts, Host("h0", memory_mb=5000)]
    previous = {r.model: [Placed(r.host, r.window_start, r.end)] for r in first.rows}
    again = plan_windows(frame, fleet, hosts=bigger, lead_times=leads, now=T0, previous=previous)
    assert {r.model: r.host for r in again.rows} == {"a": "h1", "b": "h2", "c": "h1"}
    assert [r.idempotency_key for r in again.rows] == [r.idempotency_key for r in first.rows]
    # A replica that no longer fits moves: h1 shrinks to one model's worth.
    shrunk = [Host("h1", memory_mb=100), Host("h2", memory_mb=1000), Host("h0", memory_mb=5000)]
    moved = plan_windows(frame, fleet, hosts=shrunk, lead_times=leads, now=T0, previous=previous)
    assert {r.model: r.host for r in moved.rows} == {"a": "h1", "b": "h2", "c": "h0"}


def test_hosts_without_a_memory_figure_are_not_limited() -> None:
    frame = pd.concat([_forecast(name, [5, 5]) for name in ("a", "b")])
    fleet = _fleet(*(PlanModel(n, replica_capacity=10.0, device_memory_mb=10**6) for n in ("a", "b")))
    result = plan_windows(frame, fleet, hosts=[Host("triton", memory_mb=None)], now=T0)
    assert {(r.model, r.host) for r in result.rows} == {("a", "triton"), ("b", "triton")}
    assert result.shortfalls == ()
