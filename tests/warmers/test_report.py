"""The verdict's first-request statistic: the median of first-after-idle probes, against an unchanged bound."""

from __future__ import annotations

from warmers.report import Baseline, Latency, judge

BASELINE = Baseline(first_request_ms=0.8)  # bound: 0.8 x 1.5 + 2 = 3.2 ms


def test_one_stalled_first_request_no_longer_decides() -> None:
    stalled_first = [3.18, 0.5, 0.5, 0.6, 0.5]  # the first probe met a scheduling stall
    latency = Latency.from_samples(stalled_first, idle_ms=[0.9, 0.7, 4.1, 0.8, 0.8])
    assert latency.warm_first_request_ms == 3.18  # still reported as measured
    assert latency.first_after_idle_ms == 0.8
    assert judge(latency, BASELINE) is None


def test_a_model_that_is_slow_after_idle_still_fails_the_same_bound() -> None:
    latency = Latency.from_samples([0.5, 0.5, 0.5], idle_ms=[3.3, 3.5, 0.6, 3.4, 3.6])
    reason = judge(latency, BASELINE)
    assert reason == "first request after idle (median) 3.40 ms exceeds 3.20 ms (baseline 0.80 ms x 1.5 + 2.0 ms)"


def test_without_idle_probes_the_single_first_request_is_judged() -> None:
    latency = Latency.from_samples([3.3, 0.5, 0.5])  # what a target without idle probes reports
    assert latency.first_after_idle_ms is None
    assert judge(latency, BASELINE) == "warmed first request 3.30 ms exceeds 3.20 ms (baseline 0.80 ms x 1.5 + 2.0 ms)"
