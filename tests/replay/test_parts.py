"""The replay's parts without hosts: arrivals, idle gaps, the speedup check, policies, the JSON shape, leads."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from prewarm.errors import InputError
from replay.arrivals import make_arrivals
from replay.clock import ReplayClock
from replay.errors import SpeedupTooHighError
from replay.loadgen import check_speedup, generate
from replay.measures import JSON_KEYS, Record, after_idle, json_shape, summarize
from replay.policies import Always, Forecast, OnDemand, parse_policies
from replay.router import Ledger, Outcome
from scheduling.trace import trace_from_telemetry


def _trace(eval_intervals: int = 4):
    hours = pd.date_range("2026-11-01", periods=10, freq="h", tz="UTC")
    frame = pd.DataFrame({
        "timestamp": list(hours) * 2,
        "model": ["a"] * 10 + ["b"] * 10,
        "requests": [5.0] * 10 + [0, 0, 0, 0, 0, 0, 3, 0, 0, 2],
    })
    return trace_from_telemetry(frame, eval_intervals=eval_intervals)


def test_arrivals_replay_the_counts_in_their_buckets_and_repeat_with_the_seed() -> None:
    trace = _trace()
    first = make_arrivals(trace, models=("a", "b"), scale=2.0, seed=7)
    again = make_arrivals(trace, models=("a", "b"), scale=2.0, seed=7)
    other = make_arrivals(trace, models=("a", "b"), scale=2.0, seed=8)
    assert first.per_interval().tolist() == [[10, 10, 10, 10], [6, 0, 0, 4]]
    assert np.array_equal(first.offsets_s, again.offsets_s) and np.array_equal(first.model_index, again.model_index)
    assert not np.array_equal(first.offsets_s, other.offsets_s)
    assert np.all(np.diff(first.offsets_s) >= 0) and first.offsets_s.max() < 4 * 3600
    assert first.duration_s == 4 * 3600


def test_a_fractional_scale_keeps_the_expected_count() -> None:
    trace = _trace()
    totals = [len(make_arrivals(trace, models=("a",), scale=0.1, seed=s)) for s in range(200)]
    assert abs(np.mean(totals) - 2.0) < 0.2  # 4 buckets x 5 x 0.1


def test_first_after_idle_marks_a_models_first_request_and_those_after_a_gap_of_an_interval() -> None:
    trace = _trace()
    arrivals = make_arrivals(trace, models=("a", "b"), scale=1.0, seed=1)
    flags = after_idle(arrivals)
    b = [i for i in range(len(arrivals)) if arrivals.model_index[i] == 1]
    assert flags[b[0]]  # b's first request
    late = [i for i in b if arrivals.offsets_s[i] >= 3 * 3600]
    gap = arrivals.offsets_s[late[0]] - max(arrivals.offsets_s[i] for i in b if arrivals.offsets_s[i] < 3 * 3600)
    assert flags[late[0]] == (gap >= 3600)
    assert flags.sum() < len(arrivals)


def test_a_speedup_too_high_is_refused_with_the_highest_that_fits() -> None:
    arrivals = make_arrivals(_trace(), models=("a", "b"), scale=1.0, seed=0)
    peak = check_speedup(arrivals, speedup=360, capacity_rps=100)
    assert peak == pytest.approx(8 * 360 / 3600)  # 5 + 3 requests in the busiest interval, 10 s of wall time
    with pytest.raises(SpeedupTooHighError, match=r"--speedup 1e\+06 needs 2,222 requests/s .* use --speedup 45000 or less"):
        check_speedup(arrivals, speedup=1e6, capacity_rps=100)


def test_the_generator_is_open_loop_and_reports_its_lag() -> None:
    arrivals = make_arrivals(_trace(), models=("a",), scale=1.0, seed=3)
    sent: list[float] = []

    async def send(i: int, lag: float) -> None:
        sent.append(time.time())
        await asyncio.sleep(1.0)  # a slow answer must not hold the next arrival back

    clock = ReplayClock(datetime(2026, 11, 1, 6, tzinfo=UTC), time.time() + 0.05, speedup=36000.0)
    started = time.time()
    report = asyncio.run(generate(arrivals, clock, send))
    assert len(sent) == len(arrivals) == 20
    assert max(sent) - started < 0.9  # all sent within the 0.4 s window, before the first answer
    assert report.limit_s == pytest.approx(0.05 * 3600 / 36000)
    assert report.max_s >= report.p99_s >= report.p50_s >= 0


def test_policies_parse_and_unknown_ones_are_named() -> None:
    forecast = Forecast(horizon=24, level=80, replan_intervals=6, tick_s=0.5, keep_alive_s=600)
    policies = parse_policies("always,reactive,keepalive-2,forecast", interval_s=3600, reactive_keepalive_s=300,
                              forecast=forecast)
    assert [p.name for p in policies] == ["always", "reactive", "keepalive-2", "forecast"]
    assert isinstance(policies[0], Always) and policies[3] is forecast
    assert isinstance(policies[2], OnDemand) and policies[2].keep_s == 7200
    with pytest.raises(InputError, match="unknown policy 'sometimes'"):
        parse_policies("always,sometimes", interval_s=3600, reactive_keepalive_s=300, forecast=forecast)
    with pytest.raises(InputError, match="named twice"):
        parse_policies("always,always", interval_s=3600, reactive_keepalive_s=300, forecast=forecast)


def test_figures_and_the_json_shape() -> None:
    arrivals = make_arrivals(_trace(), models=("a", "b"), scale=1.0, seed=0)
    records = [Record(i, 0.001, Outcome(latency_ms=10.0 + i, cold=i == 0, answered=i != 1, host="h"))
               for i in range(len(arrivals))]
    ledger = Ledger(replica_seconds={"a": 100.0, "b": 50.0}, warmups={"a": 1, "b": 2})
    figures = summarize(records, arrivals, ledger, None, complete=True)
    assert figures["requests"] == len(arrivals) and figures["answered"] == len(arrivals) - 1
    assert figures["cold_starts"] == 1 and figures["replica_seconds"] == 150.0 and figures["warmups"] == 3
    assert figures["max_ms"] == 10.0 + len(arrivals) - 1
    assert figures["models"]["b"]["requests"] == 5 and figures["models"]["b"]["replica_seconds"] == 50.0
    shape = json_shape({"always": figures})
    assert list(shape) == ["policies"] and tuple(shape["policies"]["always"]) == JSON_KEYS


def test_the_forecast_policy_is_given_only_buckets_that_have_ended(tmp_path) -> None:  # noqa: ANN001
    from datetime import timedelta

    from db.migrate import upgrade
    from db.session import make_engine, session_scope
    from db.telemetry import load_telemetry
    from replay.forecast import ingest_until

    engine = make_engine(f"sqlite:///{tmp_path / 'h.db'}")
    upgrade(engine)
    hours = pd.date_range("2026-11-01", periods=6, freq="h", tz="UTC")
    frame = pd.DataFrame({"timestamp": hours, "model": "a", "requests": np.arange(6.0)})
    ingest_until(engine, frame, at=datetime(2026, 11, 1, 3, 59, tzinfo=UTC), interval=timedelta(hours=1))
    with session_scope(engine) as session:
        seen = load_telemetry(session, models=["a"])
    assert seen["timestamp"].max() == pd.Timestamp("2026-11-01 02:00", tz="UTC")  # 03:00 is still in progress
    assert seen["requests"].tolist() == [0.0, 1.0, 2.0]


def test_a_registered_pool_is_copied_into_the_replays_inventory(tmp_path) -> None:  # noqa: ANN001
    from db.hosts import list_hosts, upsert_host
    from db.migrate import upgrade
    from db.models import HostState
    from db.session import make_engine, session_scope
    from replay.errors import ReplayError
    from replay.hosts import pool_hosts

    source, into = (make_engine(f"sqlite:///{tmp_path / name}") for name in ("ops.db", "replay.db"))
    for engine in (source, into):
        upgrade(engine)
    with session_scope(source) as session:
        upsert_host(session, name="gpu-1", url="http://10.0.0.1:8000", pool="prod", memory_mb=8000)
        upsert_host(session, name="gpu-2", url="http://10.0.0.2:8000", pool="prod", memory_mb=8000)
        upsert_host(session, name="other", url="http://10.0.0.3:8000", pool="staging")
        list_hosts(session, pool="prod")[1].state = HostState.DRAINING
    hosts = pool_hosts(source, "prod", into=into, as_pool="replay")
    assert hosts.urls == {"gpu-1": "http://10.0.0.1:8000"} and hosts.processes == {}
    with session_scope(into) as session:
        copied = list_hosts(session)
        assert [(h.name, h.pool, h.memory_mb) for h in copied] == [("gpu-1", "replay", 8000)]
    with pytest.raises(ReplayError, match="pool 'empty' has no up host in the inventory"):
        pool_hosts(source, "empty", into=into, as_pool="replay")
