"""Time-to-ready finer than the telemetry's interval: the arithmetic the planner and the simulator share.

Decisions happen at interval boundaries, with the demand observed up to then. A replica whose
time-to-ready is ``lead_s`` seconds and that must be ready when interval s opens is therefore requested
at boundary ``s - steps``, ``steps = ceil(lead_s / interval)``, and its warm-up starts ``lead_s`` before
s opens: partway into the interval it was requested in. It is charged from that moment, so the
interval it was requested in costs ``first_share = lead_s / interval - (steps - 1)`` of a replica
(in (0, 1]) and the intervals after it a whole replica each. With ``lead_s`` a whole number of
intervals ``first_share`` is 1 and the charge is today's: every provisioned interval, whole.

Arrivals within an interval are assumed spread evenly over it (the mean of a Poisson process of
constant rate within the interval): a replica that becomes ready partway into an interval serves the
covered share of that interval's requests, and no more.

When ``lead_s`` is shorter than the interval, a cold request also starts a load on demand: ready
``lead_s`` later, it serves the rest of that interval's requests. Cold are the request that started
it and those arriving while it loads; it is charged from the moment it is ready to the interval's end
(its loading, like every cold load's, is what the cold price pays for), and released at the boundary,
where the policy's replicas take over. A lead of a whole interval or more has no such loads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from scheduling.errors import SchedulingError

TOLERANCE = 1e-9
"""Relative slack of ``lead_s / interval`` against a whole number (floating-point seconds)."""


@dataclass(frozen=True, slots=True)
class SubInterval:
    """A time-to-ready of ``lead_s`` seconds on a grid of ``interval_s``-second intervals."""

    interval_s: float
    lead_s: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.interval_s) and self.interval_s > 0):
            raise SchedulingError(f"the interval must be a positive number of seconds, got {self.interval_s:g}")
        if not (math.isfinite(self.lead_s) and self.lead_s >= 0):
            raise SchedulingError(f"the time-to-ready must be a number of seconds >= 0, got {self.lead_s:g}")

    @classmethod
    def whole(cls, interval: pd.Timedelta, steps: int) -> SubInterval:
        """A time-to-ready of exactly ``steps`` intervals (today's integer lead)."""
        return cls(interval.total_seconds(), steps * interval.total_seconds())

    @property
    def steps(self) -> int:
        """Boundaries between a replica's request and the interval it is ready for: ``ceil(lead_s / interval)``."""
        return max(0, math.ceil(self.lead_s / self.interval_s - TOLERANCE))

    @property
    def first_share(self) -> float:
        """The share of its request interval a replica is charged for (1 when the lead is whole intervals)."""
        if self.steps == 0:
            return 1.0
        share = self.lead_s / self.interval_s - (self.steps - 1)
        return 1.0 if abs(share - 1.0) <= TOLERANCE else share

    @property
    def is_whole(self) -> bool:
        """Whether the time-to-ready is a whole number of intervals (no sub-interval arithmetic at all)."""
        return self.first_share == 1.0

    def warm_at(self, ready_at: pd.Timestamp) -> pd.Timestamp:
        """When a warm-up must start for its replica to be ready at ``ready_at``."""
        return pd.Timestamp(ready_at) - pd.Timedelta(seconds=self.lead_s)

    def charged_seconds(self, ready_at: pd.Timestamp, end: pd.Timestamp) -> float:
        """Seconds one replica ready at ``ready_at`` and released at ``end`` is charged: from its warm-up on."""
        return max(0.0, (pd.Timestamp(end) - self.warm_at(ready_at)).total_seconds())

    def served_share(self, ready_at: pd.Timestamp, interval_start: pd.Timestamp) -> float:
        """The share of an interval's requests a replica ready at ``ready_at`` serves (arrivals spread evenly)."""
        return float(self.served_shares(ready_at, interval_start, 1)[0])

    def served_shares(self, ready_at: pd.Timestamp, first_start: pd.Timestamp, n: int) -> np.ndarray:
        """:meth:`served_share` of the ``n`` consecutive intervals from ``first_start`` on."""
        late = (pd.Timestamp(ready_at) - pd.Timestamp(first_start)).total_seconds() / self.interval_s
        return np.clip(np.arange(1, n + 1, dtype=float) - late, 0.0, 1.0)

    @property
    def loads_on_demand(self) -> bool:
        """Whether a cold request's own load is ready within its interval (``0 < lead_s < interval``)."""
        return self.steps == 1 and not self.is_whole

    def on_demand(self, shortfall: np.ndarray, capacity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cold requests and replicas charged per interval when ``shortfall`` requests find no ready replica.

        ``shortfall`` is models × intervals, ``capacity`` requests per replica per interval, per model.
        With loads on demand, ``e`` requests short in an interval are ``min(e, 1 + (e − 1) × lead_s /
        interval)`` cold (the first, and the rest's share that arrives while it loads), and
        ``ceil(e / capacity)`` replicas serve the others, each charged ``1 − lead_s / interval`` of the
        interval. Without, every request short is cold and nothing more is charged.
        """
        if not self.loads_on_demand:
            return shortfall, np.zeros_like(shortfall, dtype=float)
        loading = self.lead_s / self.interval_s
        short = shortfall > 0
        cold = np.where(short, np.minimum(shortfall, 1.0 + (shortfall - 1.0) * loading), 0.0)
        cap = capacity if shortfall.ndim == 1 else capacity[:, None]
        replicas = np.where(short, np.ceil(shortfall / cap - TOLERANCE), 0.0)
        return cold, replicas * (1.0 - loading)

    def charged(self, provisioned: np.ndarray) -> np.ndarray:
        """Replicas charged per interval (models × intervals) for replicas provisioned per interval.

        Replicas are released newest first, so a rise of ``provisioned`` at t starts that many replicas,
        each requested at t and charged ``first_share`` of t; every other provisioned interval is charged
        whole. Column 0 counts as a rise from nothing.
        """
        charged = provisioned.astype(float)
        if self.is_whole:
            return charged
        previous = np.zeros_like(charged)
        previous[..., 1:] = charged[..., :-1]
        started = np.maximum(charged - previous, 0.0)
        return charged - (1.0 - self.first_share) * started


__all__ = ["SubInterval"]
