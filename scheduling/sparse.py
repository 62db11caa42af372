"""The sparse rule: warm a model's k-th replica for an interval when the cold requests it would save are worth more.

Interval u is worth a k-th warm replica of model m when (the newsvendor's rule, one replica at a time)

    E[min(max(d_m(u) − (k − 1) c_m, 0), c_m)] × cold_price_m  >  replica_hour_price_m × interval_hours

where ``min(max(d − (k − 1) c, 0), c)`` is what the k-th replica serves once the first k − 1 are full.
For k = 1 and a model of capacity 1 (the long tail) this is ``P(at least one request in u) × cold_price``;
for k = 2 it is ``P(at least two) × cold_price``, and so on: a model whose requests come in bursts
of several an hour gets as many replicas as the bursts are likely and cold requests are dear. The
expectation has two estimates, per replica, and the rule warms when either clears the bar:

* **by hour of week**: the empirical mean of the k-th replica's share ``min(max(d / c − (k − 1), 0), 1)``
  in u's slot of the week, shrunk toward the model's overall mean (``slot_strength`` pseudo-intervals),
  which is itself shrunk toward the pool's (``model_strength``), so a model with no history gets the
  pool's prior. Shares of a replica's capacity put busy and sparse models on one scale, and the pool's
  prior is the median model's;
* **after a request** (the idea of the hybrid histogram): with g empty intervals since the model's last
  busy one, the hazard ``P(idle time = g | idle time >= g)`` from the model's idle-time histogram (shrunk
  toward its busy fraction) times the k-th replica's mean share in a busy interval.

Arrivals are assumed to spread over an interval (a warm replica serves its interval's requests up to
its capacity; a cold interval's requests are all cold), and a replica serves from ``lead`` intervals
after it is requested: a warm replica stays while the intervals up to ``t + lead`` are worth it, and a
cold one starts warming only when the run of worthwhile intervals from ``t + lead`` pays for itself
and for the ``lead`` intervals of loading. The rule decides at most ``max_replicas`` per intermittent
model, and only the first replica of a dense one (a request in at least half its intervals), whose
forecast is better than an hour-of-week mean; the forecast (or the reactive floor) adds to them where
it plans more.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scheduling.cost import Prices
from scheduling.policies import PolicyContext, reactive_target

WEEK = pd.Timedelta(days=7)
MONDAY = pd.Timestamp("2024-01-01", tz="UTC")


def week_slots(timestamps: pd.DatetimeIndex, interval: pd.Timedelta) -> tuple[np.ndarray, int]:
    """Each timestamp's slot of the week (its interval's index since Monday 00:00 UTC) and the number of slots."""
    per_week = max(1, int(WEEK / interval))
    stamps = pd.DatetimeIndex(timestamps)
    stamps = stamps.tz_localize("UTC") if stamps.tz is None else stamps.tz_convert("UTC")
    steps = ((stamps - MONDAY) // interval).to_numpy(dtype=np.int64)
    return steps % per_week, per_week


def shrunk(total: np.ndarray, count: np.ndarray, prior: np.ndarray, strength: float) -> np.ndarray:
    """``(total + strength × prior) / (count + strength)``: a mean shrunk toward ``prior``."""
    return (total + strength * prior) / (count + strength)


def replica_shares(load: np.ndarray, kth: np.ndarray) -> np.ndarray:
    """Loads (demand ÷ capacity) × replicas: the share of its capacity the k-th replica serves,
    ``min(max(load − (k − 1), 0), 1)`` for k = ``kth + 1``."""
    return np.clip(np.asarray(load, dtype=float)[:, None] - kth[None, :], 0.0, 1.0)


@dataclass(slots=True)
class SparseState:
    """Running sums of the demand a policy has observed, folded in interval by interval (causal by construction)."""

    capacity: np.ndarray
    slots: np.ndarray
    n_slots: int
    first: np.ndarray
    max_gap: int
    replicas: int = 1
    seen: int = 0
    slot_n: np.ndarray = field(init=False)
    slot_served: np.ndarray = field(init=False)
    gap_counts: np.ndarray = field(init=False)
    last_busy: np.ndarray = field(init=False)
    busy: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.capacity)
        self.slot_n = np.zeros((n, self.n_slots))
        self.slot_served = np.zeros((n, self.n_slots, self.replicas))  # the k-th replica's shares, k = 1 .. replicas
        self.gap_counts = np.zeros((n, self.max_gap + 2))  # the last bin holds idle times beyond max_gap
        self.last_busy = np.full(n, -1, dtype=np.int64)
        self.busy = np.zeros(n)

    def fold(self, observed: np.ndarray, upto: int) -> None:
        """Add the intervals ``[seen, upto)`` of ``observed`` (models × intervals)."""
        rows = np.arange(len(self.capacity))
        kth = np.arange(self.replicas)
        for t in range(self.seen, upto):
            live = t >= self.first
            d = observed[:, t]
            slot = self.slots[t]
            self.slot_n[live, slot] += 1
            self.slot_served[live, slot] += replica_shares(d[live] / self.capacity[live], kth)
            hit = live & (d > 0)
            after = hit & (self.last_busy >= 0)
            gaps = np.minimum(t - self.last_busy[after] - 1, self.max_gap + 1)
            np.add.at(self.gap_counts, (rows[after], gaps), 1)
            self.last_busy[hit] = t
            self.busy[hit] += 1
        self.seen = max(self.seen, upto)

    def busy_fraction(self) -> np.ndarray:
        """Per model, the share of its observed intervals with a request (0 before any)."""
        n = self.slot_n.sum(axis=1)
        return np.where(n > 0, self.busy / np.maximum(n, 1), 0.0)

    def model_means(self, model_strength: float) -> np.ndarray:
        """Models × replicas: the mean share of the k-th replica per interval, shrunk toward the pool's (the median)."""
        n = self.slot_n.sum(axis=1)[:, None]
        served = self.slot_served.sum(axis=1)
        seen = n[:, 0] > 0
        pool = np.median(served[seen] / n[seen], axis=0) if seen.any() else np.zeros(self.replicas)
        return shrunk(served, n, np.broadcast_to(pool, served.shape), model_strength)

    def slot_means(self, slots: np.ndarray, model_means: np.ndarray, slot_strength: float) -> np.ndarray:
        """Models × replicas: the k-th replica's shrunk mean share in the given slot (one slot per model)."""
        rows = np.arange(len(self.capacity))
        return shrunk(self.slot_served[rows, slots], self.slot_n[rows, slots][:, None], model_means, slot_strength)

    def hazard_value(self, gap: np.ndarray, model_means: np.ndarray, slot_strength: float) -> np.ndarray:
        """Models × replicas: ``P(next request at idle gap g | idle >= g)`` × the k-th replica's mean share when
        busy (0 before any request)."""
        rows = np.arange(len(self.capacity))
        busy_fraction = self.busy_fraction()
        busy = self.busy[:, None]
        per_busy = np.where(busy > 0, self.slot_served.sum(axis=1) / np.maximum(busy, 1), model_means)
        capped = np.clip(gap, 0, self.max_gap + 1)
        at_or_beyond = self.gap_counts[:, ::-1].cumsum(axis=1)[:, ::-1]
        equal = np.where(capped <= self.max_gap, self.gap_counts[rows, capped], 0.0)
        hazard = shrunk(equal, at_or_beyond[rows, capped], busy_fraction, slot_strength)
        return np.where(((self.last_busy >= 0) & (gap >= 0))[:, None], hazard[:, None] * per_busy, 0.0)


@dataclass(slots=True)
class SparseRule:
    """The sparse rule's warm replicas per model (0 .. ``max_replicas``) at each t, from the demand before t."""

    context: PolicyContext
    prices: Prices
    slot_strength: float = 4.0
    model_strength: float = 24.0
    max_gap_hours: float = 24.0
    lookahead: int = 24
    max_replicas: int = 16
    dense_busy_fraction: float = 0.5
    """A model with a request in at least this share of its intervals is dense: the rule gives it at most one
    replica and its forecast plans the rest (an hour-of-week mean is a poor forecast of a busy series)."""
    _state: SparseState | None = None
    _warm: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _slots: np.ndarray | None = None

    def _ensure(self) -> SparseState:
        if self._state is None:
            ctx = self.context
            stamps = pd.date_range(ctx.timestamps[0], periods=len(ctx.timestamps) + ctx.lead + self.lookahead, freq=ctx.interval)
            self._slots, n_slots = week_slots(stamps, ctx.interval)
            max_gap = max(1, int(pd.Timedelta(hours=self.max_gap_hours) / ctx.interval))
            self._state = SparseState(
                np.asarray(ctx.capacity, dtype=float), self._slots, n_slots, ctx.first, max_gap, replicas=self.max_replicas
            )
            self._warm = np.zeros(len(ctx.models), dtype=np.int64)
        return self._state

    def values(self, t: int, observed: np.ndarray, *, ahead: int) -> np.ndarray:
        """Models × ``ahead`` × replicas: the requests the k-th replica is expected to serve in each interval from t."""
        state = self._ensure()
        assert self._slots is not None
        state.fold(observed, t)
        means = state.model_means(self.model_strength)
        out = np.zeros((len(self.context.models), ahead, self.max_replicas))
        for k in range(ahead):
            u = t + k
            slot = np.full(len(means), self._slots[min(u, len(self._slots) - 1)])
            by_week = state.slot_means(slot, means, self.slot_strength)
            after = state.hazard_value(u - state.last_busy - 1, means, self.slot_strength)
            out[:, k] = np.maximum(by_week, after)
        return out * self.context.capacity[:, None, None]

    def decide(self, t: int, observed: np.ndarray) -> np.ndarray:
        """Per model, how many warm replicas are worth their price (each replica judged on its own share).

        A warm k-th replica stays while any interval it can serve before a new one would be ready
        (``t .. t + lead``) is worth its interval. A cold one starts warming only when the run of
        worthwhile intervals from ``t + lead`` on pays for itself and for the ``lead`` intervals of
        loading. The k-th replica is kept only with the first k − 1 (their shares are never smaller).
        """
        lead = self.context.lead
        worth = self.values(t, observed, ahead=lead + self.lookahead) * self.prices.cold[:, None, None]
        bar = (self.prices.replica_hour * self.context.interval_hours)[:, None, None]
        good = worth > bar
        have = self._warm[:, None] > np.arange(self.max_replicas)[None, :]
        keep = have & good[:, : lead + 1].any(axis=1)
        ahead = good[:, lead:]
        run = np.cumprod(ahead, axis=1).astype(bool)
        gain = np.where(run, worth[:, lead:] - bar, 0.0).sum(axis=1) - bar[:, 0] * lead
        start = ~have & ahead[:, 0] & (gain > 0)
        assert self._state is not None
        allowed = np.where(self._state.busy_fraction() >= self.dense_busy_fraction, 1, self.max_replicas)
        on = (keep | start) & (np.arange(self.max_replicas)[None, :] < allowed[:, None])
        self._warm = np.cumprod(on, axis=1).sum(axis=1).astype(np.int64)
        return self._warm.copy()


@dataclass(slots=True)
class SparsePolicy:
    """The sparse rule's replicas, the reactive autoscaler above them."""

    context: PolicyContext
    prices: Prices
    reactive_floor: bool = True
    name: str = "sparse"
    _rule: SparseRule | None = None

    def decide(self, t: int, observed: np.ndarray) -> np.ndarray:
        if self._rule is None:
            self._rule = SparseRule(self.context, self.prices)
        warm = self._rule.decide(t, observed)
        if not self.reactive_floor:
            return warm
        return np.maximum(warm, reactive_target(self.context, t, observed))
