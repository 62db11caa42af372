"""The hybrid histogram policy of Shahrad et al., "Serverless in the Wild" (USENIX ATC 2020).

Per model, the idle times between uses (minutes, 1-minute bins over a 4-hour range) decide when
to warm one replica after a use and for how long to keep it:

* the histogram is representative: pre-warm at its 5th percentile - 10 %, keep alive to its 99th
  percentile + 10 %;
* too few idle times, or bin counts whose coefficient of variation is under 2 (no clear pattern):
  a fixed keep-alive as long as the histogram's range;
* most idle times fall out of range: an ARIMA(1,0,0) forecast of the next idle time, warm within ±15 % of it.

Above one replica the policy is reactive. On a grid of intervals an idle time is the number of empty
intervals between two busy ones times the interval width, and a replica that must be ready after g
idle intervals is requested ``lead`` intervals before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from scheduling.policies import PolicyContext, reactive_target


@dataclass(frozen=True, slots=True)
class HistogramConfig:
    """The published policy's constants."""

    range_minutes: float = 240.0
    bin_minutes: float = 1.0
    head_percentile: float = 5.0
    tail_percentile: float = 99.0
    margin: float = 0.10
    cv_threshold: float = 2.0
    min_idle_times: int = 5
    out_of_range_share: float = 0.5
    arima_margin: float = 0.15
    arima_history: int = 50


@dataclass(frozen=True, slots=True)
class WarmWindow:
    """After a use, provision one replica while ``first <= idle intervals <= last``; ``mode`` says which rule."""

    first: int
    last: int
    mode: str


def forecast_idle_time(idle_minutes: np.ndarray) -> float:
    """Next idle time (minutes) from an ARIMA(1,0,0) fitted by conditional least squares; the mean when degenerate.

    The closed-form fit keeps the policy cheap enough to re-fit after every use of a sparse model.
    """
    y = idle_minutes.astype(float)
    mean = float(y.mean())
    if len(y) < 4 or np.allclose(y, y[0]):
        return mean
    x, z = y[:-1] - mean, y[1:] - mean
    denominator = float(x @ x)
    phi = float(np.clip((x @ z) / denominator, -0.99, 0.99)) if denominator > 0 else 0.0
    value = mean + phi * (y[-1] - mean)
    return value if math.isfinite(value) and value > 0 else mean


def warm_window(idle_minutes: np.ndarray, *, interval_minutes: float, lead: int, config: HistogramConfig) -> WarmWindow:
    """The warm window after a use, in idle intervals, from the idle times (minutes) seen so far."""
    fixed_last = max(0, math.ceil(config.range_minutes / interval_minutes) - 1)
    fixed = WarmWindow(0, fixed_last, "fixed")
    if len(idle_minutes) < config.min_idle_times:
        return fixed
    in_range = idle_minutes[idle_minutes < config.range_minutes]
    if len(in_range) < len(idle_minutes) * (1 - config.out_of_range_share):
        predicted = forecast_idle_time(idle_minutes[-config.arima_history :])
        lo = predicted * (1 - config.arima_margin)
        hi = predicted * (1 + config.arima_margin)
        return WarmWindow(max(0, math.floor(lo / interval_minutes) - lead), math.floor(hi / interval_minutes), "arima")
    n_bins = math.ceil(config.range_minutes / config.bin_minutes)
    counts = np.bincount((in_range / config.bin_minutes).astype(int), minlength=n_bins)[:n_bins]
    mean = counts.mean()
    if mean == 0 or counts.std() / mean < config.cv_threshold:
        return fixed
    head_bin = math.floor(np.percentile(in_range, config.head_percentile) / config.bin_minutes)
    tail_bin = math.floor(np.percentile(in_range, config.tail_percentile) / config.bin_minutes)
    prewarm = head_bin * config.bin_minutes * (1 - config.margin)
    keep_alive = (tail_bin + 1) * config.bin_minutes * (1 + config.margin)
    first = max(0, math.floor(prewarm / interval_minutes) - lead)
    return WarmWindow(first, math.floor(keep_alive / interval_minutes), "histogram")


@dataclass(slots=True)
class _ModelState:
    last_active: int | None = None
    idle: list[float] = field(default_factory=list)
    window: WarmWindow | None = None


@dataclass(slots=True)
class HistogramPolicy:
    """The hybrid histogram policy with reactive scaling above one replica."""

    context: PolicyContext
    config: HistogramConfig = field(default_factory=HistogramConfig)
    name: str = "histogram"
    _states: list[_ModelState] | None = None
    _seen: int = 0
    modes: dict[str, int] = field(default_factory=dict)

    def _observe(self, observed: np.ndarray, upto: int) -> None:
        """Fold the intervals ``[_seen, upto)`` into each model's idle times (incremental, same result as a rescan)."""
        assert self._states is not None
        interval_minutes = self.context.interval.total_seconds() / 60.0
        busy = observed[:, self._seen : upto] > 0
        for i, state in enumerate(self._states):
            for offset in np.flatnonzero(busy[i]):
                t = self._seen + int(offset)
                if state.last_active is not None:
                    state.idle.append((t - state.last_active - 1) * interval_minutes)
                state.last_active = t
                state.window = None
        self._seen = upto

    def decide(self, t: int, observed: np.ndarray) -> np.ndarray:
        if self._states is None:
            self._states = [_ModelState() for _ in self.context.models]
        self._observe(observed, t)
        interval_minutes = self.context.interval.total_seconds() / 60.0
        warm = np.zeros(len(self.context.models), dtype=np.int64)
        for i, state in enumerate(self._states):
            if state.last_active is None:
                continue
            if state.window is None:
                state.window = warm_window(
                    np.asarray(state.idle), interval_minutes=interval_minutes, lead=self.context.lead, config=self.config
                )
                self.modes[state.window.mode] = self.modes.get(state.window.mode, 0) + 1
            elapsed = t - state.last_active - 1
            warm[i] = int(state.window.first <= elapsed <= state.window.last)
        return np.maximum(warm, reactive_target(self.context, t, observed))
