"""The hybrid histogram policy's windows and fallbacks."""

from __future__ import annotations

import numpy as np
import pandas as pd

from prewarm import columns as C
from scheduling.histogram import HistogramConfig, HistogramPolicy, forecast_idle_time, warm_window
from scheduling.simulator import context_for, run_policy
from scheduling.trace import replica_capacity, trace_from_telemetry

CONFIG = HistogramConfig()


def test_too_few_idle_times_fall_back_to_a_fixed_keep_alive_of_the_histogram_range() -> None:
    window = warm_window(np.array([60.0, 120.0]), interval_minutes=60.0, lead=1, config=CONFIG)
    assert (window.first, window.last, window.mode) == (0, 3, "fixed")


def test_a_flat_histogram_falls_back_too() -> None:
    idle = np.arange(240, dtype=float).repeat(2)  # every bin the same count: coefficient of variation 0
    assert warm_window(idle, interval_minutes=1.0, lead=1, config=CONFIG).mode == "fixed"


def test_percentiles_with_margins() -> None:
    idle = np.array([120.0] * 40 + [180.0] * 10)  # minutes
    window = warm_window(idle, interval_minutes=60.0, lead=1, config=CONFIG)
    # pre-warm at 0.9 × 120 min = 108 min -> ready by idle interval 1, requested one interval earlier;
    # keep alive until 1.1 × 181 min = 199 min -> idle interval 3
    assert (window.first, window.last, window.mode) == (0, 3, "histogram")
    window = warm_window(np.array([600.0 / 4] * 50), interval_minutes=15.0, lead=1, config=CONFIG)
    assert (window.first, window.last) == (8, 11)


def test_mostly_out_of_range_idle_times_use_the_idle_time_forecast() -> None:
    idle = np.array([600.0] * 12)
    window = warm_window(idle, interval_minutes=60.0, lead=1, config=CONFIG)
    assert window.mode == "arima"
    assert (window.first, window.last) == (7, 11)  # 600 min ± 15 % = 510..690 min
    assert forecast_idle_time(np.array([100.0, 300.0, 100.0, 300.0, 100.0, 300.0])) < 200.0


def test_policy_warms_after_a_pattern_and_is_reactive_above_one() -> None:
    # a model busy every 6th hour (idle 5 hours between uses), then one busy hour of 40 requests
    demand = np.zeros(24 * 5)
    demand[::6] = 4.0
    demand[-2] = 40.0
    stamps = pd.date_range("2026-01-01", periods=len(demand), freq="h", tz="UTC")
    frame = pd.DataFrame({C.TIMESTAMP: stamps, C.MODEL: "m", C.REQUESTS: demand})
    trace = trace_from_telemetry(frame, eval_intervals=12)
    capacity = replica_capacity(trace, replicas_at_peak=1)
    provisioned = run_policy(trace, HistogramPolicy(context_for(trace, capacity, lead=1)), lead=1)[0]
    ready = np.minimum(provisioned[1:], provisioned[:-1])
    on_pattern = np.arange(trace.eval_start, len(demand)) % 6 == 0
    assert on_pattern.sum() == 2 and (ready[on_pattern] >= 1).all()  # every use in the pattern finds a replica
    assert ready[-2] == 0  # the off-pattern burst is cold
    assert provisioned[-1] == 10  # 40 requests at 4 per replica, reactively
    assert provisioned.min() == 0  # unloaded between uses (pre-warm window after the head of the histogram)
