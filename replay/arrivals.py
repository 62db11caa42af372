"""Arrivals: the trace's request counts of the replayed intervals as request times, the same for every policy.

Within a bucket, requests arrive as a Poisson process given its count: ``count x scale`` requests (a
fractional remainder rounds up with that probability), each at a uniform time in the bucket, sorted. One seed
gives one list, so every policy replays the very same requests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from replay.errors import TooManyRequestsError
from scheduling.trace import Trace

MAX_REQUESTS = 20_000_000
"""Most requests one replay generates: its arrays stay under a gigabyte, and at the thousands of requests per
second one client sustains, more would take hours of wall time per policy anyway."""


@dataclass(frozen=True, slots=True)
class Arrivals:
    """Request times (trace seconds after the replay's start, sorted) and the index of each one's model."""

    models: tuple[str, ...]
    offsets_s: np.ndarray
    model_index: np.ndarray
    interval_s: float
    intervals: int

    def __len__(self) -> int:
        return int(self.offsets_s.size)

    @property
    def duration_s(self) -> float:
        """Trace seconds the replay spans."""
        return self.interval_s * self.intervals

    def per_interval(self) -> np.ndarray:
        """Requests per (model, interval): the demand the replay sends."""
        counts = np.zeros((len(self.models), self.intervals), dtype=int)
        buckets = np.minimum((self.offsets_s // self.interval_s).astype(int), self.intervals - 1)
        np.add.at(counts, (self.model_index, buckets), 1)
        return counts

    def peak_rate(self, *, speedup: float) -> float:
        """Requests per wall second in the busiest interval, compressed by ``speedup``."""
        if not len(self):
            return 0.0
        busiest = float(self.per_interval().sum(axis=0).max())
        return busiest * speedup / self.interval_s


def check_volume(trace: Trace, *, models: tuple[str, ...], scale: float) -> float:
    """The requests the replay would send; :class:`TooManyRequestsError` above :data:`MAX_REQUESTS`."""
    rows = [trace.models.index(m) for m in models]
    total = float(trace.demand[rows, trace.eval_start :].sum()) * scale
    if total <= MAX_REQUESTS:
        return total
    intervals = trace.n_intervals - trace.eval_start
    raise TooManyRequestsError(
        f"the last {intervals} intervals hold {total:,.0f} requests at --scale {scale:g}; one replay sends at most "
        f"{MAX_REQUESTS:,}: use --scale {MAX_REQUESTS / total * scale:.2g} or less, fewer --eval-intervals, or --models"
    )


def make_arrivals(trace: Trace, *, models: tuple[str, ...], scale: float, seed: int) -> Arrivals:
    """The arrivals of ``models`` over the trace's evaluation intervals, ``scale`` times its counts.

    Raises :class:`TooManyRequestsError` before generating anything when they exceed :data:`MAX_REQUESTS`.
    """
    check_volume(trace, models=models, scale=scale)
    rng = np.random.default_rng(seed)
    interval_s = trace.interval.total_seconds()
    rows = [trace.models.index(m) for m in models]
    demand = trace.demand[rows, trace.eval_start :] * scale
    whole = np.floor(demand)
    counts = (whole + (rng.random(demand.shape) < demand - whole)).astype(int)
    model_index = np.repeat(np.repeat(np.arange(len(models)), counts.shape[1]), counts.reshape(-1))
    bucket = np.repeat(np.tile(np.arange(counts.shape[1]), len(models)), counts.reshape(-1))
    offsets = (bucket + rng.random(bucket.size)) * interval_s
    order = np.argsort(offsets, kind="stable")
    return Arrivals(
        models=models, offsets_s=offsets[order], model_index=model_index[order].astype(int), interval_s=interval_s,
        intervals=int(counts.shape[1]),
    )
