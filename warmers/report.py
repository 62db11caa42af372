"""What a warm run produces (:class:`WarmReport`), what it is judged against (:class:`Baseline`), and the rules.

The report's field names are the columns of ``db.models.WarmRun`` (``stage_seconds``, ``cold_first_request_ms``,
``warm_first_request_ms``, ``steady_p50_ms``, ``steady_p99_ms``, ``baseline_p50_ms``, ``latency_delta_ms``,
``time_to_ready_s``, ``device_class``, ``ready``, ``error``); ``to_dict()`` is what goes into ``report``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

STAGES = ("fetch", "load", "cold_first_request", "compile", "warmup", "validate")


@dataclass(frozen=True, kw_only=True)
class Baseline:
    """What a warm run is compared with: previous successful runs on this device class, and the SLA.

    ``p50_ms`` and ``first_request_ms`` come from the history database (the caller fetches them); a run is not
    ready when its steady p50 exceeds ``p50_ms * tolerance + slack_ms``, its first request after idle (the
    median of several probes, see :attr:`Latency.first_request_statistic_ms`) exceeds
    ``first_request_ms * tolerance + slack_ms``, or its steady p99 exceeds ``sla_p99_ms``.
    """

    p50_ms: float | None = None
    first_request_ms: float | None = None
    sla_p99_ms: float | None = None
    tolerance: float = 1.5
    slack_ms: float = 2.0

    def with_sla(self, sla_p99_ms: float | None) -> Baseline:
        """This baseline with ``sla_p99_ms`` filled in when it has none."""
        if self.sla_p99_ms is not None or sla_p99_ms is None:
            return self
        return dataclasses.replace(self, sla_p99_ms=sla_p99_ms)


@dataclass(frozen=True, kw_only=True)
class Latency:
    """Latency of the validation probes: the first one after warm-up, the steady state, and after idle gaps."""

    warm_first_request_ms: float
    steady_p50_ms: float
    steady_p99_ms: float
    first_after_idle_ms: float | None = None

    @classmethod
    def from_samples(cls, samples_ms: list[float], *, idle_ms: list[float] | None = None) -> Latency:
        """The first sample is the warmed first request; the rest (or all, if only one) are the steady state.

        ``idle_ms`` are probes that each followed an idle gap; their median is ``first_after_idle_ms``.
        """
        steady = samples_ms[1:] or samples_ms
        return cls(
            warm_first_request_ms=samples_ms[0],
            steady_p50_ms=float(np.percentile(steady, 50)),
            steady_p99_ms=float(np.percentile(steady, 99)),
            first_after_idle_ms=float(np.median(idle_ms)) if idle_ms else None,
        )

    @property
    def first_request_statistic_ms(self) -> float:
        """What the first-request check judges: the median of the first-after-idle probes when there are some.

        A single sub-millisecond sample flips with any scheduling stall on a busy machine; the median of several
        requests that each follow an idle gap measures the same thing (a request arriving at a warm but idle
        model) and is stable.
        """
        return self.first_after_idle_ms if self.first_after_idle_ms is not None else self.warm_first_request_ms


def judge(latency: Latency, baseline: Baseline) -> str | None:
    """Why ``latency`` fails ``baseline``, or None when it passes."""
    problems: list[str] = []
    if baseline.sla_p99_ms is not None and latency.steady_p99_ms > baseline.sla_p99_ms:
        problems.append(f"steady p99 {latency.steady_p99_ms:.2f} ms exceeds the SLA of {baseline.sla_p99_ms:.2f} ms")
    if baseline.p50_ms is not None:
        limit = baseline.p50_ms * baseline.tolerance + baseline.slack_ms
        if latency.steady_p50_ms > limit:
            problems.append(
                f"steady p50 {latency.steady_p50_ms:.2f} ms exceeds {limit:.2f} ms "
                f"(baseline p50 {baseline.p50_ms:.2f} ms x {baseline.tolerance} + {baseline.slack_ms} ms)"
            )
    if baseline.first_request_ms is not None:
        limit = baseline.first_request_ms * baseline.tolerance + baseline.slack_ms
        observed = latency.first_request_statistic_ms
        if observed > limit:
            what = "first request after idle (median)" if latency.first_after_idle_ms is not None else "warmed first request"
            problems.append(
                f"{what} {observed:.2f} ms exceeds {limit:.2f} ms "
                f"(baseline {baseline.first_request_ms:.2f} ms x {baseline.tolerance} + {baseline.slack_ms} ms)"
            )
    return "; ".join(problems) or None


@dataclass(frozen=True, kw_only=True)
class WarmReport:
    """The outcome of one warm run: every stage's seconds, the latencies, memory, cache hits and readiness."""

    model: str
    version: str
    target: str
    device_class: str
    ready: bool
    stage_seconds: dict[str, float] = field(default_factory=dict)
    cold_first_request_ms: float | None = None
    warm_first_request_ms: float | None = None
    first_after_idle_ms: float | None = None
    steady_p50_ms: float | None = None
    steady_p99_ms: float | None = None
    baseline_p50_ms: float | None = None
    latency_delta_ms: float | None = None
    time_to_ready_s: float | None = None
    memory_mb: float | None = None
    cache_hits: dict[str, bool | None] = field(default_factory=dict)
    compile_mode: str = "none"
    reason: str | None = None
    error: str | None = None
    error_type: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field (the ``report`` column of a warm run)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WarmReport:
        """The inverse of :meth:`to_dict`; unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class StageClock:
    """Times the stages of one run; the seconds of each stage accumulate under its name."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the ``with`` body as stage ``name`` (also when it raises)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def elapsed(self) -> float:
        """Seconds since the clock started."""
        return time.perf_counter() - self.started
