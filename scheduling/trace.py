"""A telemetry trace on a regular grid: one demand row per model, history and evaluation window.

The simulator steps over the grid's intervals. Every model shares the grid (the union of all
timestamps, at the most common bucket width); a bucket a model did not report is zero requests, as
telemetry omits idle buckets. The last ``eval_intervals`` buckets are evaluated, the rest is history.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecasting.series import observed_interval
from prewarm import columns as C
from prewarm.text import duration
from scheduling.errors import SimulationError


MAX_CELLS = 100_000_000
"""Most model-interval cells a trace holds (800 MB of demand, and the policies' arrays as large again)."""


@dataclass(frozen=True, slots=True)
class Trace:
    """Demand per model (rows) and interval (columns), with its timestamps and evaluation start."""

    models: tuple[str, ...]
    timestamps: pd.DatetimeIndex
    demand: np.ndarray
    eval_start: int
    interval: pd.Timedelta
    first: np.ndarray
    """Per model, the first interval with a telemetry row: nothing before it is history."""

    @property
    def n_intervals(self) -> int:
        """Number of grid intervals, history and evaluation together."""
        return int(self.demand.shape[1])

    @property
    def interval_hours(self) -> float:
        """The bucket width in hours (replica-hours are counted in these)."""
        return self.interval / pd.Timedelta(hours=1)

    def history_frame(self, end: int) -> pd.DataFrame:
        """The long telemetry frame of the intervals before ``end`` (the data a policy may see at ``end``)."""
        n = len(self.models)
        frame = pd.DataFrame(
            {
                C.TIMESTAMP: np.tile(self.timestamps[:end], n),
                C.MODEL: np.repeat(np.asarray(self.models, dtype=object), end),
                C.REQUESTS: self.demand[:, :end].reshape(-1),
            }
        )
        keep = np.tile(np.arange(end), n) >= np.repeat(self.first, end)
        return frame[keep].reset_index(drop=True)


def _infer_interval(frame: pd.DataFrame) -> pd.Timedelta:
    interval = observed_interval(frame)
    if interval is None:
        raise SimulationError(
            "telemetry has no model with two distinct timestamps, so the bucket width cannot be inferred; "
            "give at least one model two or more intervals"
        )
    return interval


def trace_from_telemetry(frame: pd.DataFrame, *, eval_intervals: int) -> Trace:
    """Put a canonical telemetry frame on a regular grid and split history from evaluation.

    Rows of the same model and bucket are summed; timestamps off the grid are floored to their bucket.
    Raises :class:`SimulationError` when the trace is shorter than the evaluation window plus one
    interval of history.
    """
    if eval_intervals < 1:
        raise SimulationError(f"--eval-intervals must be at least 1, got {eval_intervals}")
    if frame.empty:
        raise SimulationError("telemetry is empty: nothing to simulate")
    interval = _infer_interval(frame)
    ns = frame[C.TIMESTAMP].dt.tz_convert("UTC").to_numpy(dtype="datetime64[ns]").astype(np.int64)
    buckets = np.floor_divide(ns, interval.value)
    first, last = int(buckets.min()), int(buckets.max())
    length = last - first + 1
    if eval_intervals >= length:
        raise SimulationError(
            f"--eval-intervals {eval_intervals} leaves no history: the telemetry spans {length} intervals "
            f"of {duration(interval)}; use at most {length - 1}"
        )
    codes, names = pd.factorize(frame[C.MODEL].astype(str), sort=True)
    if len(names) * length > MAX_CELLS:
        start, end = frame[C.TIMESTAMP].min(), frame[C.TIMESTAMP].max()
        raise SimulationError(
            f"the telemetry spans {length:,} intervals of {duration(interval)} ({start.isoformat()} to {end.isoformat()}) "
            f"for {len(names):,} models, more than {MAX_CELLS:,} cells in memory; look for stray timestamps "
            "(a 1970 row) or simulate a shorter range"
        )
    demand = np.zeros((len(names), length))
    np.add.at(demand, (codes, buckets - first), frame[C.REQUESTS].to_numpy(dtype=float))
    first_bucket = np.full(len(names), length, dtype=int)
    np.minimum.at(first_bucket, codes, buckets - first)
    timestamps = pd.DatetimeIndex(pd.to_datetime((first + np.arange(length)) * interval.value, utc=True))
    return Trace(
        models=tuple(str(n) for n in names),
        timestamps=timestamps,
        demand=demand,
        eval_start=length - eval_intervals,
        interval=interval,
        first=first_bucket,
    )


def replica_capacity(trace: Trace, *, replicas_at_peak: float) -> np.ndarray:
    """Requests one replica serves per interval: p95 of the history's demand ÷ ``replicas_at_peak``, at least 1."""
    if replicas_at_peak <= 0 or not math.isfinite(replicas_at_peak):
        raise SimulationError(f"--replicas-at-peak must be a positive number, got {replicas_at_peak}")
    p95 = np.zeros(len(trace.models))
    for i, start in enumerate(trace.first):
        history = trace.demand[i, start : trace.eval_start]
        if history.size:
            p95[i] = np.percentile(history, 95)
    return np.maximum(p95 / replicas_at_peak, 1.0)
