"""The figures of one policy's run: per model and overall, from the request records and the router's ledger.

Latency is what the client saw from the moment the generator sent a request until its answer, cold waits
included; a request that got no answer counts with the time its client waited. "First after idle" takes the
first request of a model after at least one interval without one (and its first request of the replay).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from replay.arrivals import Arrivals
from replay.loadgen import LagReport
from replay.router import Ledger, Outcome

# The keys ``--json`` prints per policy, in this order (the shape).
JSON_KEYS = ("requests", "cold_starts", "p50_ms", "p99_ms", "replica_seconds", "warmups", "lag_flagged", "models")


@dataclass(frozen=True, slots=True)
class Record:
    """One request of a run: which arrival, how late the generator sent it, what it got."""

    index: int
    lag_s: float
    outcome: Outcome


def after_idle(arrivals: Arrivals) -> np.ndarray:
    """Whether each arrival is its model's first after an idle gap of at least one interval (or its first)."""
    flags = np.zeros(len(arrivals), dtype=bool)
    last: dict[int, float] = {}
    for i, (offset, model) in enumerate(zip(arrivals.offsets_s.tolist(), arrivals.model_index.tolist(), strict=True)):
        flags[i] = model not in last or offset - last[model] >= arrivals.interval_s
        last[model] = offset
    return flags


def _latency(values: Sequence[float]) -> dict[str, float | None]:
    if not len(values):
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    array = np.asarray(values, dtype=float)
    p50, p95, p99 = np.percentile(array, [50, 95, 99])
    return {"p50_ms": round(float(p50), 3), "p95_ms": round(float(p95), 3), "p99_ms": round(float(p99), 3),
            "max_ms": round(float(array.max()), 3)}


def _block(records: Sequence[Record], idle: np.ndarray) -> dict[str, object]:
    first = [r for r in records if idle[r.index]]
    return {
        "requests": len(records),
        "answered": sum(r.outcome.answered for r in records),
        "cold_starts": sum(r.outcome.cold for r in records),
        **_latency([r.outcome.latency_ms for r in records]),
        "first_after_idle": {
            "requests": len(first), "cold_starts": sum(r.outcome.cold for r in first),
            **_latency([r.outcome.latency_ms for r in first]),
        },
    }


def summarize(
    records: Sequence[Record], arrivals: Arrivals, ledger: Ledger, lag: LagReport | None, *, complete: bool
) -> dict[str, object]:
    """The figures of one policy: overall, then per model under ``models``."""
    idle = after_idle(arrivals)
    by_model: dict[str, list[Record]] = {m: [] for m in arrivals.models}
    for record in records:
        by_model[arrivals.models[arrivals.model_index[record.index]]].append(record)
    models = {
        m: {**_block(rs, idle), "replica_seconds": round(ledger.replica_seconds.get(m, 0.0), 1),
            "warmups": ledger.warmups.get(m, 0)}
        for m, rs in by_model.items()
    }
    return {
        **_block(records, idle),
        "replica_seconds": round(sum(ledger.replica_seconds.values()), 1),
        "warmups": sum(ledger.warmups.values()),
        "lag_flagged": bool(lag.flagged) if lag is not None else False,
        "lag": lag.to_dict() if lag is not None else None,
        "complete": complete,
        "models": models,
    }


def json_shape(policies: dict[str, dict[str, object]]) -> dict[str, object]:
    """``{"policies": {NAME: {requests, cold_starts, p50_ms, p99_ms, replica_seconds, warmups, lag_flagged, models}}}``."""
    return {"policies": {name: {k: figures[k] for k in JSON_KEYS} for name, figures in policies.items()}}
