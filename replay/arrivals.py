"""Arrivals: the trace's request counts of the replayed intervals as request times, the same for every policy.

Within a bucket, requests arrive as a Poisson process given its count: ``count x scale`` requests (a
fractional remainder rounds up with that probability), each at a uniform time in the bucket, sorted. One seed
gives one list, so every policy replays the very same requests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scheduling.trace import Trace


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


def make_arrivals(trace: Trace, *, models: tuple[str, ...], scale: float, seed: int) -> Arrivals:
    """The arrivals of ``models`` over the trace's evaluation intervals, ``scale`` times its counts."""
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
