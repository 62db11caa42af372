"""Provisioning policies: at the start of each interval, how many replicas each model should have.

A policy answers ``decide(t, observed)`` with one integer per model, where ``observed`` holds the
demand of the intervals *before* ``t`` only (the simulator hands it a slice that ends at ``t``), so
no policy can read demand at or after its decision time. The oracle is the one exception: it is
built from the whole trace on purpose and is used as the cost floor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd


@dataclass(frozen=True, slots=True)
class PolicyContext:
    """What every policy knows besides the demand it observed: the grid and the replica capacity."""

    models: tuple[str, ...]
    timestamps: pd.DatetimeIndex
    capacity: np.ndarray
    interval: pd.Timedelta
    lead: int
    eval_start: int
    first: np.ndarray
    lead_s: float | None = None
    """Time-to-ready in seconds, ``lead`` being the boundaries ahead it is requested (None: ``lead`` intervals)."""

    @property
    def lead_seconds(self) -> float:
        """Time-to-ready in seconds: ``lead_s``, or ``lead`` whole intervals."""
        return self.lead * self.interval.total_seconds() if self.lead_s is None else self.lead_s

    @property
    def interval_hours(self) -> float:
        """The interval's width in hours (replica-hours are counted in these)."""
        return self.interval / pd.Timedelta(hours=1)

    def intervals_for(self, seconds: float) -> int:
        """How many whole intervals cover ``seconds`` (at least 1)."""
        return max(1, math.ceil(seconds / self.interval.total_seconds() - 1e-9))


class Policy(Protocol):
    """A provisioning policy; ``decide`` is called for t = t0, t0 + 1, ... in order."""

    name: str

    def decide(self, t: int, observed: np.ndarray) -> np.ndarray:
        """Replicas to provision per model at the start of interval ``t``, from demand before ``t``."""
        ...


def needed_replicas(demand: np.ndarray, capacity: np.ndarray, *, utilisation: float = 1.0) -> np.ndarray:
    """Replicas that serve ``demand`` (per model, or models × intervals) at ``utilisation`` of capacity."""
    cap = capacity if demand.ndim == 1 else capacity[:, None]
    return np.ceil(demand / (cap * utilisation) - 1e-9).astype(np.int64)


def window_max(values: np.ndarray, before: int, after: int) -> np.ndarray:
    """Along the last axis, the max of ``values[..., t - before : t + after + 1]`` (clipped at the edges)."""
    out = values.copy()
    n = values.shape[-1]
    for shift in range(1, before + 1):
        if shift < n:
            out[..., shift:] = np.maximum(out[..., shift:], values[..., :-shift])
    for shift in range(1, after + 1):
        if shift < n:
            out[..., :-shift] = np.maximum(out[..., :-shift], values[..., shift:])
    return out


@dataclass(slots=True)
class StaticPolicy:
    """Peak replicas always: the most the history before the evaluation window ever needed."""

    context: PolicyContext
    name: str = "static"
    _peak: np.ndarray | None = None

    def decide(self, t: int, observed: np.ndarray) -> np.ndarray:
        if self._peak is None:
            history = observed[:, : min(t, self.context.eval_start)]
            peak = history.max(axis=1) if history.shape[1] else np.zeros(len(self.context.models))
            self._peak = np.maximum(needed_replicas(peak, self.context.capacity), 1)
        return self._peak


@dataclass(slots=True)
class KeepAlivePolicy:
    """Scale from zero on demand; keep each replica for ``keep_alive_seconds`` after its last use.

    A use at interval s needs ``ceil(d(s) / c)`` replicas; a replica lives until the keep-alive window
    after its last use has passed (AWS Lambda keeps about 10 minutes, Azure Functions 20), rounded up
    to whole intervals.
    """

    context: PolicyContext
    keep_alive_seconds: float = 600.0
    name: str = "keepalive"

    def decide(self, t: int, observed: np.ndarray) -> np.ndarray:
        window = self.context.intervals_for(self.keep_alive_seconds)
        recent = observed[:, max(0, t - window) : t]
        if recent.shape[1] == 0:
            return np.zeros(len(self.context.models), dtype=np.int64)
        return needed_replicas(recent, self.context.capacity).max(axis=1)


@dataclass(slots=True)
class ReactivePolicy:
    """HPA/KPA-like: target ``ceil(last demand / (c × utilisation))`` with a scale-down stabilisation window.

    The replica count is the highest target of the last ``stabilisation_seconds`` (the HPA default is
    300 s), so scale-up follows the last interval at once while scale-down waits; it scales to zero.
    """

    context: PolicyContext
    utilisation: float = 1.0
    stabilisation_seconds: float = 300.0
    name: str = "reactive"

    def decide(self, t: int, observed: np.ndarray) -> np.ndarray:
        return reactive_target(
            self.context, t, observed, utilisation=self.utilisation, stabilisation_seconds=self.stabilisation_seconds
        )


def reactive_target(
    context: PolicyContext, t: int, observed: np.ndarray, *, utilisation: float = 1.0, stabilisation_seconds: float = 300.0
) -> np.ndarray:
    """The reactive autoscaler's replica count at ``t`` (also the floor of the histogram and forecast policies)."""
    window = context.intervals_for(stabilisation_seconds)
    recent = observed[:, max(0, t - window) : t]
    if recent.shape[1] == 0:
        return np.zeros(len(context.models), dtype=np.int64)
    return needed_replicas(recent, context.capacity, utilisation=utilisation).max(axis=1)


@dataclass(slots=True)
class OraclePolicy:
    """Perfect knowledge at the least cost: each replica is requested exactly ``lead`` intervals before its use.

    With demand known, interval s needs ``R(s) = ceil(d(s) / c)`` ready replicas, which must be
    provisioned from ``s - lead`` on; provisioning ``max R`` over ``[t, t + lead]`` at ``t`` is therefore
    both sufficient (no cold request) and a lower bound at every interval (least replica-hours).
    """

    context: PolicyContext
    demand: np.ndarray
    name: str = "oracle"
    _plan: np.ndarray | None = None

    def decide(self, t: int, observed: np.ndarray) -> np.ndarray:
        if self._plan is None:
            needed = needed_replicas(self.demand, self.context.capacity)
            self._plan = window_max(needed, 0, self.context.lead)
        return self._plan[:, t]
