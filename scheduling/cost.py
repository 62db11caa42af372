"""The cost model: a price per cold request and a price per replica-hour, per model.

The objective every cost-aware decision minimises, and the simulator reports, is

    expected cost = cold requests × cold_price + replica-hours × replica_hour_price

Prices come from the fleet file (``cold_price``, ``replica_hour_price`` per model) or, where it leaves
them out, from defaults derived from the model's SLA:

* ``replica_hour_price`` defaults to 1.0: costs are counted in replica-hours;
* ``cold_price`` defaults to ``cold_weight × replica_hour_price × interval_hours / replica_capacity``:
  a whole interval of one replica's load served cold costs ``cold_weight`` replica-intervals. So a
  replica is worth warming when it is expected to serve at least ``1 / cold_weight`` of its capacity
  that would otherwise be cold (a quarter, at the default weight 4);
* ``cold_weight`` is 4 without an SLA and grows as the p99 latency goal tightens, since a cold start
  (seconds to minutes of loading) breaks a tight p99 by a wider factor: ``4 × sqrt(1000 ms / p99)``,
  clipped to a quarter to four times the base (p99 100 ms: 12.6; 1 s: 4; 10 s: 1.3).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from scheduling.errors import SchedulingError

DEFAULT_COLD_WEIGHT = 4.0
DEFAULT_REPLICA_HOUR_PRICE = 1.0
REFERENCE_P99_MS = 1000.0


def cold_weight_for_sla(sla_p99_ms: float | None, *, base: float = DEFAULT_COLD_WEIGHT) -> float:
    """Replica-intervals one replica-interval of cold load costs: ``base`` without an SLA, more for a tight p99."""
    if sla_p99_ms is None:
        return base
    if sla_p99_ms <= 0 or not math.isfinite(sla_p99_ms):
        raise SchedulingError(f"sla_p99_ms must be a positive number of milliseconds, got {sla_p99_ms}")
    return float(np.clip(base * math.sqrt(REFERENCE_P99_MS / sla_p99_ms), base / 4, base * 4))


def default_cold_price(
    replica_capacity: float, *, interval_hours: float, replica_hour_price: float = DEFAULT_REPLICA_HOUR_PRICE,
    sla_p99_ms: float | None = None, cold_weight: float = DEFAULT_COLD_WEIGHT,
) -> float:
    """The cold price the fleet file leaves out: ``weight(SLA) × replica_hour_price × interval_hours / capacity``."""
    if replica_capacity <= 0:
        raise SchedulingError(f"replica_capacity must be positive to derive a cold price, got {replica_capacity}")
    weight = cold_weight_for_sla(sla_p99_ms, base=cold_weight)
    return weight * replica_hour_price * interval_hours / replica_capacity


@dataclass(frozen=True, slots=True)
class Prices:
    """Per model (aligned with a trace's or plan's model order): price of a cold request and of a replica-hour."""

    cold: np.ndarray
    replica_hour: np.ndarray

    def __post_init__(self) -> None:
        if self.cold.shape != self.replica_hour.shape:
            raise SchedulingError("cold and replica-hour prices must have one entry per model each")
        if (self.cold < 0).any() or (self.replica_hour < 0).any():
            raise SchedulingError("prices must be >= 0")

    @classmethod
    def derived(
        cls, capacity: np.ndarray, *, interval_hours: float, cold_weight: float = DEFAULT_COLD_WEIGHT,
        cold_price: float | None = None, replica_hour_price: float = DEFAULT_REPLICA_HOUR_PRICE,
        sla_p99_ms: Sequence[float | None] | None = None,
    ) -> Prices:
        """Prices for models of ``capacity``: ``cold_price`` for all when given, else derived per model."""
        if cold_weight <= 0 or replica_hour_price < 0:
            raise SchedulingError(
                f"--cold-weight must be > 0 and --replica-hour-price >= 0, got {cold_weight} and {replica_hour_price}"
            )
        capacity = np.asarray(capacity, dtype=float)
        hour = np.full(capacity.shape, float(replica_hour_price))
        if cold_price is not None:
            if cold_price < 0:
                raise SchedulingError(f"--cold-price must be >= 0, got {cold_price}")
            return cls(cold=np.full(capacity.shape, float(cold_price)), replica_hour=hour)
        slas = list(sla_p99_ms) if sla_p99_ms is not None else [None] * len(capacity)
        cold = np.array(
            [
                default_cold_price(c, interval_hours=interval_hours, replica_hour_price=replica_hour_price,
                                   sla_p99_ms=s, cold_weight=cold_weight)
                for c, s in zip(capacity, slas, strict=True)
            ]
        )
        return cls(cold=cold, replica_hour=hour)

    def scaled(self, factor: float) -> Prices:
        """The same replica-hour prices with every cold price times ``factor`` (a sweep of the trade-off)."""
        return Prices(cold=self.cold * factor, replica_hour=self.replica_hour)


def cost_of(cold: np.ndarray, provisioned: np.ndarray, prices: Prices, *, interval_hours: float) -> np.ndarray:
    """Expected cost per model of cold requests and provisioned replicas (both models × intervals)."""
    cold_cost = cold.sum(axis=-1) * prices.cold
    hour_cost = provisioned.sum(axis=-1) * interval_hours * prices.replica_hour
    return cold_cost + hour_cost


def model_prices(models: Sequence[object], *, interval_hours: float, cold_weight: float = DEFAULT_COLD_WEIGHT) -> Prices:
    """Prices of :class:`~scheduling.planner.PlanModel` entries: the fleet file's where set, else the defaults."""
    cold, hour = [], []
    for spec in models:
        hour_price = getattr(spec, "replica_hour_price", None)
        hour_price = DEFAULT_REPLICA_HOUR_PRICE if hour_price is None else float(hour_price)
        price = getattr(spec, "cold_price", None)
        if price is None:
            price = default_cold_price(
                float(getattr(spec, "replica_capacity")), interval_hours=interval_hours, replica_hour_price=hour_price,
                sla_p99_ms=getattr(spec, "sla_p99_ms", None), cold_weight=cold_weight,
            )
        cold.append(float(price))
        hour.append(hour_price)
    return Prices(cold=np.asarray(cold, dtype=float), replica_hour=np.asarray(hour, dtype=float))


__all__ = [
    "DEFAULT_COLD_WEIGHT",
    "DEFAULT_REPLICA_HOUR_PRICE",
    "Prices",
    "cold_weight_for_sla",
    "cost_of",
    "default_cold_price",
    "model_prices",
]
