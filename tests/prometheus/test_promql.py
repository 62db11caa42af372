"""Unit tests of the query building, the exact per-bucket count, URL parsing and range planning."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from prewarm import promql
from prewarm.errors import PrometheusQueryError
from prewarm.prometheus import (
    MAX_BUCKETS,
    POINTS_PER_QUERY,
    PrometheusOptions,
    _chunks,
    _plan,
    merge_options,
    parse_duration,
    parse_url,
)

I = 10_000  # a 10 s bucket, in ms
W = 60_000


def count(times_s: list[float], values: list[float], *, ends_s: list[int], known: bool = True, created=None):  # type: ignore[no-untyped-def]
    return promql.exact_increase(
        np.array([int(t * 1000) for t in times_s]), np.array(values, dtype=float),
        bucket_ends_ms=[e * 1000 for e in ends_s], interval_ms=I, lookback_ms=W,
        target_known=[known] * len(ends_s), created=None if created is None else np.array(created, dtype=float),
    )  # fmt: skip


def test_differences_of_the_last_samples_attribute_each_increment_to_the_bucket_that_scraped_it() -> None:
    # Samples at 5 s (3), 15 s (5), 25 s (5), 35 s (9); buckets end at 10, 20, 30, 40 s.
    assert count([5, 15, 25, 35], [3, 5, 5, 9], ends_s=[10, 20, 30, 40]).tolist() == [3, 2, 0, 4]
    # A sample exactly at a bucket's end belongs to that bucket.
    assert count([10, 20], [3, 7], ends_s=[10, 20]).tolist() == [3, 4]


def test_a_reset_counts_the_increments_before_it_and_the_new_value() -> None:
    # 10 -> 14 (+4), restart, 2 (+2), 3 (+1): 7 in the second bucket.
    assert count([9, 12, 15, 17], [10, 14, 2, 3], ends_s=[20]).tolist() == [7]


def test_a_new_creation_time_is_a_reset_even_when_the_value_does_not_drop() -> None:
    times, values = [9, 15], [2, 2]
    assert count(times, values, ends_s=[20], created=[100, 100]).tolist() == [0]
    assert count(times, values, ends_s=[20], created=[100, 114]).tolist() == [2]
    assert count(times, values, ends_s=[20]).tolist() == [0], "without _created the restart cannot be seen"


def test_a_new_series_counts_from_zero_only_on_a_target_already_scraped() -> None:
    assert count([12, 15], [4, 6], ends_s=[20], known=True).tolist() == [6]
    assert count([12, 15], [4, 6], ends_s=[20], known=False).tolist() == [0]
    # A series unseen for longer than the lookback is new again.
    assert count([0, 75], [5, 8], ends_s=[80], known=True).tolist() == [8]


def test_queries_read_boundary_values_without_extrapolation() -> None:
    counter = promql.PRESETS["vllm"].requests[0]
    hour = timedelta(hours=1)
    assert (
        promql.last_values(counter, lookback=hour) == "last_over_time(vllm:request_success_total[3600000ms])"
    )
    flags = promql.recount_flags(counter, model_label="model_name", interval=hour, lookback=hour)
    assert flags.startswith("count by (model_name) (")
    assert "resets(vllm:request_success_total[7200000ms])" in flags
    assert "changes(vllm:request_success_created[7200000ms])" in flags
    assert promql.PRESETS["kserve"].requests[0].created.metric == "request_predict_seconds_created"
    assert (
        promql.PRESETS["prewarm"].requests[0].selector()
        == 'prewarm_inference_requests_total{model!="__unknown__"}'
    )
    assert (
        promql.model_selector(counter, model_label="model_name", model='a"b')
        == 'vllm:request_success_total{model_name="a\\"b"}'
    )
    assert promql.custom_query("increase(x[$interval]) + y[${interval}]", interval=timedelta(minutes=15)) == (
        "increase(x[900000ms]) + y[900000ms]"
    )


def test_url_parsing() -> None:
    source = parse_url("prometheus+https://prom.example:9090/api/prom/?preset=triton&since=2d")
    assert source.base_url == "https://prom.example:9090/api/prom"
    assert source.options == PrometheusOptions(preset="triton", since="2d")
    assert merge_options(source.options, PrometheusOptions(since="1d")).since == "1d"
    for bad, message in [
        ("prometheus+http://user:pw@h:9090", "credentials in the URL"),
        ("prometheus+http://h:9090?step=5", "unknown URL parameter 'step'"),
        ("prometheus+http://:9090", "no host"),
        ("prometheus+http://h:99999", "Port out of range"),
    ]:
        with pytest.raises(PrometheusQueryError, match=message):
            parse_url(bad)


def test_durations() -> None:
    assert parse_duration("14d") == timedelta(days=14)
    assert parse_duration("PT6H") == timedelta(hours=6)
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("2026-01-01") is None


def test_range_planning_chunks_and_limits() -> None:
    end = datetime(2026, 1, 15, tzinfo=timezone.utc)
    plan = _plan(
        "src",
        start=end - timedelta(days=14, minutes=30),
        end=end,
        models=None,
        interval=timedelta(hours=1),
        last_stored={},
    )
    assert len(plan.buckets) == 14 * 24 + 1  # the start is floored to its bucket
    assert plan.buckets[0] == pd.Timestamp("2025-12-31T23:00:00Z")
    chunks = _chunks(pd.date_range("2026-01-01", periods=25_000, freq="1min", tz="UTC"), series=10)
    assert [len(c) for c in chunks] == [POINTS_PER_QUERY, POINTS_PER_QUERY, 5_000]
    assert max(len(c) for c in _chunks(plan.buckets, series=20_000)) == 10  # bounded response size
    with pytest.raises(PrometheusQueryError, match=f"at most {MAX_BUCKETS:,}"):
        _plan(
            "src",
            start=end - timedelta(days=20),
            end=end,
            models=None,
            interval=timedelta(seconds=1),
            last_stored={},
        )
    resumed = _plan(
        "src",
        start=None,
        end=end,
        models={"a", "b", "new"},
        interval=timedelta(hours=1),
        last_stored={
            "a": end - timedelta(hours=3),
            "b": end - timedelta(hours=5),
            "gone": end - timedelta(days=90),
        },
    )
    assert resumed.buckets[0] == pd.Timestamp(end - timedelta(hours=5)) and len(resumed.buckets) == 5
    with pytest.raises(PrometheusQueryError, match="give --since"):
        _plan("src", start=None, end=end, models={"new"}, interval=timedelta(hours=1), last_stored={"a": end})
