"""Metrics of a simulation: cold fraction, replica-hours (and their ratio to the oracle's), cold-start events,
and the expected-cost objective of :mod:`scheduling.cost` (cold requests × their price + replica-hours × theirs).

A cold-start event is a model-interval with at least one cold request: the moments a user waited for
a replica to load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from scheduling.cost import Prices, cost_of
from scheduling.simulator import SimulationResult

ORACLE = "oracle"


@dataclass(frozen=True, slots=True)
class PolicyMetrics:
    """Totals of one policy over the evaluation window."""

    policy: str
    requests: float
    cold_requests: float
    cold_fraction: float
    replica_hours: float
    replica_hours_vs_oracle: float | None
    cold_start_events: int
    seconds: float
    cost: float = 0.0
    cold_cost: float = 0.0


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator > 0 else 0.0


def policy_metrics(result: SimulationResult, name: str, *, oracle_hours: float | None = None) -> PolicyMetrics:
    """Totals of policy ``name``; ``oracle_hours`` gives the replica-hours ratio (None leaves it out)."""
    out = result.outcomes[name]
    requests = float(result.eval_demand.sum())
    cold = float(out.cold.sum())
    hours = float(out.replica_intervals.sum() * result.trace.interval_hours)
    prices = result.priced()
    cold_cost = float(out.cold.sum(axis=1) @ prices.cold)
    cost = float(cost_of(out.cold, out.replica_intervals, prices, interval_hours=result.trace.interval_hours).sum())
    vs_oracle = None
    if oracle_hours is not None:
        vs_oracle = _ratio(hours, oracle_hours) if oracle_hours > 0 else (1.0 if hours == 0 else float("inf"))
    return PolicyMetrics(
        policy=name,
        requests=requests,
        cold_requests=cold,
        cold_fraction=_ratio(cold, requests),
        replica_hours=hours,
        replica_hours_vs_oracle=vs_oracle,
        cold_start_events=int((out.cold > 0).sum()),
        seconds=out.seconds,
        cost=cost,
        cold_cost=cold_cost,
    )


def per_model(result: SimulationResult, name: str) -> list[dict[str, Any]]:
    """One dict per model: requests, cold requests, cold fraction, replica-hours, cold-start events, cost."""
    out = result.outcomes[name]
    prices = result.priced()
    cost = cost_of(out.cold, out.replica_intervals, prices, interval_hours=result.trace.interval_hours)
    requests = result.eval_demand.sum(axis=1)
    cold = out.cold.sum(axis=1)
    hours = out.replica_intervals.sum(axis=1) * result.trace.interval_hours
    events = (out.cold > 0).sum(axis=1)
    why = (result.reasons or {}).get(name, {})
    rows = [
        {
            "model": model,
            "capacity": round(float(result.capacity[i]), 6),
            "requests": float(requests[i]),
            "cold_requests": round(float(cold[i]), 6),
            "cold_fraction": round(_ratio(float(cold[i]), float(requests[i])), 6),
            "replica_hours": round(float(hours[i]), 6),
            "cold_start_events": int(events[i]),
            "cold_price": round(float(prices.cold[i]), 9),
            "replica_hour_price": round(float(prices.replica_hour[i]), 9),
            "cost": round(float(cost[i]), 6),
        }
        for i, model in enumerate(result.trace.models)
    ]
    for row in rows:
        if row["model"] in why:
            row["why"] = why[row["model"]]
    return rows


def summary(result: SimulationResult, *, per_model_breakdown: bool = True) -> dict[str, Any]:
    """The ``--json`` document: run facts and, per policy, totals and (optionally) the per-model breakdown."""
    oracle_hours = None
    if ORACLE in result.outcomes:
        oracle_hours = float(result.outcomes[ORACLE].replica_intervals.sum() * result.trace.interval_hours)
    policies: dict[str, Any] = {}
    for name in result.outcomes:
        m = policy_metrics(result, name, oracle_hours=oracle_hours)
        entry: dict[str, Any] = {
            "cold_fraction": round(m.cold_fraction, 6),
            "replica_hours": round(m.replica_hours, 6),
            # None, not Infinity (which is not JSON), when the oracle needs no replica-hours and the policy some.
            "replica_hours_vs_oracle": (
                None if m.replica_hours_vs_oracle is None or math.isinf(m.replica_hours_vs_oracle)
                else round(m.replica_hours_vs_oracle, 6)
            ),
            "cold_start_events": m.cold_start_events,
            "cold_requests": round(m.cold_requests, 6),
            "requests": m.requests,
            "cost": round(m.cost, 6),
            "cold_cost": round(m.cold_cost, 6),
            "replica_hour_cost": round(m.cost - m.cold_cost, 6),
            "seconds": round(m.seconds, 3),
        }
        if per_model_breakdown:
            entry["per_model"] = per_model(result, name)
        policies[name] = entry
    trace = result.trace
    return {
        "models": len(trace.models),
        "interval_seconds": trace.interval.total_seconds(),
        "history_intervals": trace.eval_start,
        "eval_intervals": trace.n_intervals - trace.eval_start,
        "eval_start": trace.timestamps[trace.eval_start].isoformat(),
        "lead": result.lead,
        "lead_seconds": result.timing.lead_s,
        "requests": float(result.eval_demand.sum()),
        "policies": policies,
    }


def subset_metrics(result: SimulationResult, name: str, mask: np.ndarray) -> dict[str, float]:
    """Cold fraction, replica-hours and cost of policy ``name`` over the models where ``mask`` is true."""
    out = result.outcomes[name]
    prices = result.priced()
    requests = float(result.eval_demand[mask].sum())
    cold = float(out.cold[mask].sum())
    cost = cost_of(out.cold[mask], out.replica_intervals[mask], Prices(prices.cold[mask], prices.replica_hour[mask]),
                   interval_hours=result.trace.interval_hours)
    return {
        "cold_fraction": _ratio(cold, requests),
        "replica_hours": float(out.replica_intervals[mask].sum() * result.trace.interval_hours),
        "cost": float(cost.sum()),
    }


def goals(
    metrics: dict[str, PolicyMetrics], *, policy: str = "cost", sparse: dict[str, dict[str, float]] | None = None,
) -> dict[str, bool | None]:
    """The warm-policy goals for ``policy`` (None where a policy the goal compares with is missing).

    * ``vs_reactive_3pct``: at most 3 % of reactive's cold fraction at <= 1.05x the oracle's replica-hours;
    * ``vs_histogram`` (and ``vs_histogram_tuned``): fewer cold requests at no more replica-hours;
    * with ``sparse`` (policy -> metrics of the sparse models): the same on the sparse models,
      ``sparse_cold_30pct`` (their cold fraction <= 30 %) and ``fleet_1_2x_oracle``.
    """
    p, r = metrics.get(policy), metrics.get("reactive")
    out: dict[str, bool | None] = {}
    out["vs_reactive_3pct"] = None
    if p and r and p.replica_hours_vs_oracle is not None:
        out["vs_reactive_3pct"] = bool(p.cold_fraction <= 0.03 * r.cold_fraction and p.replica_hours_vs_oracle <= 1.05 + 1e-9)
    for other in ("histogram", "histogram-tuned"):
        h = metrics.get(other)
        key = "vs_" + other.replace("-", "_")
        out[key] = None if not (p and h) else bool(
            p.cold_requests < h.cold_requests and p.replica_hours <= h.replica_hours + 1e-9
        )
        if sparse is not None:
            ps, hs = sparse.get(policy), sparse.get(other)
            out[key + "_sparse"] = None if not (ps and hs) else bool(
                ps["cold_fraction"] < hs["cold_fraction"] and ps["replica_hours"] <= hs["replica_hours"] + 1e-9
            )
    if sparse is not None and policy in sparse and p and p.replica_hours_vs_oracle is not None:
        out["sparse_cold_30pct"] = bool(sparse[policy]["cold_fraction"] <= 0.30)
        out["fleet_1_2x_oracle"] = bool(p.replica_hours_vs_oracle <= 1.2 + 1e-9)
    return out


__all__ = ["ORACLE", "PolicyMetrics", "goals", "per_model", "policy_metrics", "subset_metrics", "summary"]
