"""What a warm run produces (:class:`WarmReport`), what it is judged against (:class:`Baseline`), and the rules.

The report's field names are the columns of ``db.models.WarmRun`` (``stage_seconds``, ``cold_first_request_ms``,
``warm_first_request_ms``, ``steady_p50_ms``, ``steady_p99_ms``, ``baseline_p50_ms``, ``latency_delta_ms``,
``time_to_ready_s``, ``device_class``, ``ready``, ``error``); ``to_dict()`` is what goes into ``report``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

STAGES = ("fetch", "load", "cold_first_request", "compile", "warmup", "validate")


MAD_TO_SIGMA = 1.4826  # the median absolute deviation of normal samples, scaled to their standard deviation


def spread_ms(samples_ms: Sequence[float]) -> float:
    """The robust spread of ``samples_ms``: their median absolute deviation scaled to a standard deviation.

    One stalled sample moves it little, unlike the standard deviation; 0.0 for fewer than three samples.
    """
    if len(samples_ms) < 3:
        return 0.0
    values = np.asarray(samples_ms, dtype=float)
    return float(np.median(np.abs(values - np.median(values))) * MAD_TO_SIGMA)


@dataclass(frozen=True, kw_only=True)
class Baseline:
    """What a warm run is compared with: previous successful runs on this device class, and the SLA.

    ``p50_ms`` and ``first_request_ms`` are medians over earlier runs (the caller fetches them from the history
    database), each with its spread (``*_spread_ms``: the larger of the spread between those runs and the
    spread of single probes within them, see :func:`spread_ms`). A statistic of this run fails when it exceeds
    ``median * tolerance + deviations * spread + slack_ms``. The statistics judged are medians of several
    probes (see :class:`Latency`), never a single request, so a stalled probe does not move them, while a
    model that is truly slower (every probe slower) still fails. This run's own spread does not widen the
    bound: a model that became slow and erratic must not pass for being erratic. A steady p99 above
    ``sla_p99_ms`` fails too.
    """

    p50_ms: float | None = None
    p50_spread_ms: float = 0.0
    first_request_ms: float | None = None
    first_request_spread_ms: float = 0.0
    sla_p99_ms: float | None = None
    tolerance: float = 1.2
    deviations: float = 4.0
    slack_ms: float = 1.0

    def with_sla(self, sla_p99_ms: float | None) -> Baseline:
        """This baseline with ``sla_p99_ms`` filled in when it has none."""
        if self.sla_p99_ms is not None or sla_p99_ms is None:
            return self
        return dataclasses.replace(self, sla_p99_ms=sla_p99_ms)

    def limit_ms(self, median_ms: float, spread_ms: float) -> float:
        """The bound a statistic of this run is held to, from the baseline's median and spread."""
        return median_ms * self.tolerance + self.deviations * spread_ms + self.slack_ms

    def describe(self, median_ms: float, spread: float) -> str:
        """How the bound was made, for the reason of a failed verdict."""
        return (
            f"baseline {median_ms:.2f} ms x {self.tolerance:g} + {self.deviations:g} x spread {spread:.2f} ms"
            f" + {self.slack_ms:g} ms"
        )


# Earlier runs needed before a run's latency is judged against them: from three on, the spread between runs
# can be estimated. With fewer, only the spread within a run is known, and it misses how much a busy machine
# moves a run's medians (a first-after-idle median of 2.39 ms in one demo run, 6.10 ms in the next, each with
# a spread of 0.17 ms within its run): the SLA alone decides until then.
MIN_BASELINE_RUNS = 3


def baseline_from(found: Any | None, *, sla_p99_ms: float | None) -> Baseline:
    """The verdict's baseline from earlier runs' medians and spreads (``db.warm.Baseline``, or None), plus the SLA.

    Fewer than :data:`MIN_BASELINE_RUNS` earlier runs give the SLA alone.
    """
    if found is None or found.runs < MIN_BASELINE_RUNS:
        return Baseline(sla_p99_ms=sla_p99_ms)
    return Baseline(
        p50_ms=found.steady_p50_ms, p50_spread_ms=found.p50_spread_ms,
        first_request_ms=found.first_request_ms, first_request_spread_ms=found.first_request_spread_ms,
        sla_p99_ms=sla_p99_ms,
    )


@dataclass(frozen=True, kw_only=True)
class Latency:
    """Latency of the validation probes: the first one after warm-up, the steady state, and after idle gaps.

    The verdict judges medians: ``steady_p50_ms`` over the back-to-back probes, ``first_after_idle_ms`` over
    the probes that each followed an idle gap (what a request arriving at a warm but idle model meets), each
    with its spread. ``warm_first_request_ms`` is reported as measured and judged only when a target took no
    idle probes.
    """

    warm_first_request_ms: float
    steady_p50_ms: float
    steady_p99_ms: float
    steady_spread_ms: float = 0.0
    first_after_idle_ms: float | None = None
    first_after_idle_spread_ms: float = 0.0

    @classmethod
    def from_samples(
        cls, samples_ms: list[float], *, idle_ms: list[float] | None = None, first_ms: float | None = None
    ) -> Latency:
        """Steady statistics from ``samples_ms``, the first-after-idle median from ``idle_ms``.

        ``first_ms`` is the warmed first request; without it the first of ``samples_ms`` is, and the rest (or
        all, if only one) are the steady state.
        """
        if first_ms is None:
            first_ms, steady = samples_ms[0], (samples_ms[1:] or samples_ms)
        else:
            steady = samples_ms
        return cls(
            warm_first_request_ms=first_ms,
            steady_p50_ms=float(np.percentile(steady, 50)),
            steady_p99_ms=float(np.percentile(steady, 99)),
            steady_spread_ms=spread_ms(steady),
            first_after_idle_ms=float(np.median(idle_ms)) if idle_ms else None,
            first_after_idle_spread_ms=spread_ms(idle_ms or []),
        )

    @property
    def first_request_statistic_ms(self) -> float:
        """What the first-request check judges: the median of the first-after-idle probes when there are some."""
        return self.first_after_idle_ms if self.first_after_idle_ms is not None else self.warm_first_request_ms


def judge(latency: Latency, baseline: Baseline) -> str | None:
    """Why ``latency`` fails ``baseline``, or None when it passes (see :class:`Baseline` for the rule)."""
    problems: list[str] = []
    if baseline.sla_p99_ms is not None and latency.steady_p99_ms > baseline.sla_p99_ms:
        problems.append(f"steady p99 {latency.steady_p99_ms:.2f} ms exceeds the SLA of {baseline.sla_p99_ms:.2f} ms")
    if baseline.p50_ms is not None:
        problems += _exceeds("steady p50", latency.steady_p50_ms, baseline, baseline.p50_ms, baseline.p50_spread_ms)
    if baseline.first_request_ms is not None:
        what = "first request after idle (median)" if latency.first_after_idle_ms is not None else "warmed first request"
        problems += _exceeds(
            what, latency.first_request_statistic_ms, baseline, baseline.first_request_ms,
            baseline.first_request_spread_ms,
        )
    return "; ".join(problems) or None


def _exceeds(what: str, observed: float, baseline: Baseline, median: float, spread: float) -> list[str]:
    limit = baseline.limit_ms(median, spread)
    if observed <= limit:
        return []
    return [f"{what} {observed:.2f} ms exceeds {limit:.2f} ms ({baseline.describe(median, spread)})"]


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
    client_first_request_ms: float | None = None
    client_steady_p50_ms: float | None = None
    first_after_idle_ms: float | None = None
    first_after_idle_spread_ms: float | None = None
    steady_p50_ms: float | None = None
    steady_p99_ms: float | None = None
    steady_spread_ms: float | None = None
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
