"""The trace-driven simulator: one step per interval, the same rules for every policy.

* demand ``d_m(t)`` is model m's requests in interval t; ``c_m`` its replica capacity;
* at the start of interval t the policy sets the provisioned replicas ``P_m(t)`` from demand before t;
* a replica requested at t is ready at ``t + lead`` and costs from t; replicas are released newest
  first, so ``ready_m(t) = min(P_m(t - lead .. t))``;
* cold requests ``max(0, d_m(t) - c_m × ready_m(t))``; replica-hours count provisioned replicas.

With a time-to-ready ``lead_s`` shorter than ``lead`` whole intervals (``lead = ceil(lead_s / interval)``),
readiness is the same but a replica's warm-up starts only ``lead_s`` before the boundary it is ready at,
so the interval it was requested in is charged in part; below one interval, a cold request's own load
serves the rest of its interval (:class:`~scheduling.subinterval.SubInterval`).

The run starts ``lead`` intervals before the evaluation window so a policy can have replicas ready
when it opens; only the evaluation window is measured.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from prewarm import columns as C
from scheduling.cost import Prices
from scheduling.errors import SimulationError
from scheduling.policies import Policy, PolicyContext
from scheduling.subinterval import SubInterval
from scheduling.trace import Trace

log = logging.getLogger(__name__)

DECISION_COLUMNS = (C.MODEL, C.TIMESTAMP, "capacity", "ready", "provisioned")
Progress = Callable[[str, int, int], None]
COLD_TOLERANCE = 1e-6


@dataclass(frozen=True, slots=True)
class PolicyOutcome:
    """One policy's decisions and costs over the evaluation window (arrays are models × intervals)."""

    name: str
    provisioned: np.ndarray
    ready: np.ndarray
    cold: np.ndarray
    seconds: float
    charged: np.ndarray | None = None
    """Replicas charged per interval (fractional where a warm-up starts partway in, loads on demand included)."""

    @property
    def replica_intervals(self) -> np.ndarray:
        """What replica-hours count, per model and interval: the charged replicas."""
        return self.provisioned if self.charged is None else self.charged


@dataclass(frozen=True, slots=True)
class SimulationResult:
    """Every policy's outcome on one trace, with what the metrics need to be computed."""

    trace: Trace
    capacity: np.ndarray
    lead: int
    outcomes: Mapping[str, PolicyOutcome]
    prices: Prices | None = None
    """Per-model prices of the expected-cost objective (None: derived from capacity at the default weight)."""
    reasons: Mapping[str, Mapping[str, str]] | None = None
    """Per policy that explains its choices (the ``cost`` policy's levels): model -> why."""
    lead_s: float | None = None
    """Time-to-ready in seconds (None: ``lead`` whole intervals)."""

    @property
    def timing(self) -> SubInterval:
        """The run's time-to-ready on the trace's grid."""
        return timing_for(self.trace.interval, lead=self.lead, lead_s=self.lead_s)

    def priced(self) -> Prices:
        """The prices the metrics use: ``prices``, or the defaults of :mod:`scheduling.cost` for these capacities."""
        if self.prices is not None:
            return self.prices
        return Prices.derived(self.capacity, interval_hours=self.trace.interval_hours)

    @property
    def eval_demand(self) -> np.ndarray:
        """Demand over the evaluation window (models × intervals)."""
        return self.trace.demand[:, self.trace.eval_start :]

    def decisions(self, name: str) -> pd.DataFrame:
        """Per model and evaluation interval: model, timestamp, capacity (requests per replica), ready, provisioned."""
        out = self.outcomes[name]
        n_models, n_eval = out.provisioned.shape
        return pd.DataFrame(
            {
                C.MODEL: np.repeat(np.asarray(self.trace.models, dtype=object), n_eval),
                C.TIMESTAMP: np.tile(self.trace.timestamps[self.trace.eval_start :], n_models),
                "capacity": np.repeat(self.capacity, n_eval),
                "ready": out.ready.reshape(-1),
                "provisioned": out.provisioned.reshape(-1),
            },
            columns=list(DECISION_COLUMNS),
        )


def ready_from_provisioned(provisioned: np.ndarray, lead: int) -> np.ndarray:
    """Ready replicas when each is ready ``lead`` intervals after its request and the newest go first."""
    ready = provisioned.copy()
    for shift in range(1, lead + 1):
        earlier = np.zeros_like(provisioned)
        earlier[:, shift:] = provisioned[:, :-shift]
        ready = np.minimum(ready, earlier)
    return ready


def run_policy(trace: Trace, policy: Policy, *, lead: int, progress: Progress | None = None) -> np.ndarray:
    """Step ``policy`` over the trace; the provisioned replicas from ``lead`` intervals before evaluation on.

    The policy sees a read-only slice of the demand that ends at its decision time. Returns models ×
    (lead + evaluation intervals).
    """
    start = max(0, trace.eval_start - lead)
    steps = trace.n_intervals - start
    decisions = np.zeros((len(trace.models), steps), dtype=np.int64)
    for step, t in enumerate(range(start, trace.n_intervals)):
        observed = trace.demand[:, :t]
        observed.flags.writeable = False
        chosen = np.asarray(policy.decide(t, observed))
        if chosen.shape != (len(trace.models),):
            raise SimulationError(f"policy {policy.name!r} returned shape {chosen.shape}, expected ({len(trace.models)},)")
        decisions[:, step] = np.maximum(np.rint(chosen), 0).astype(np.int64)
        if progress is not None:
            progress(policy.name, step + 1, steps)
    pad = lead - (trace.eval_start - start)
    if pad > 0:
        decisions = np.concatenate([np.zeros((len(trace.models), pad), dtype=np.int64), decisions], axis=1)
    return decisions


def timing_for(interval: pd.Timedelta, *, lead: int, lead_s: float | None = None) -> SubInterval:
    """The time-to-ready of a run: ``lead_s`` seconds, or ``lead`` whole intervals when it is None.

    Raises :class:`SimulationError` when ``lead`` is not the number of boundaries ``lead_s`` needs.
    """
    if lead_s is None:
        return SubInterval.whole(interval, lead)
    timing = SubInterval(interval.total_seconds(), lead_s)
    if timing.steps != lead:
        raise SimulationError(
            f"a time-to-ready of {lead_s:g} s on {interval.total_seconds():g}-second intervals is requested "
            f"{timing.steps} intervals ahead, not {lead}; pass lead={timing.steps}"
        )
    return timing


def simulate(
    trace: Trace,
    policies: Mapping[str, Policy],
    *,
    capacity: np.ndarray,
    lead: int,
    progress: Progress | None = None,
    prices: Prices | None = None,
    lead_s: float | None = None,
) -> SimulationResult:
    """Run every policy on ``trace`` and measure ready replicas and cold requests over the evaluation window.

    ``lead`` is in intervals; ``lead_s`` (seconds, with ``lead = ceil(lead_s / interval)``) charges warm-ups
    from ``lead_s`` before readiness instead of from the whole interval they were requested in.
    """
    if lead < 0:
        raise SimulationError(f"--lead must be >= 0 intervals, got {lead}")
    timing = timing_for(trace.interval, lead=lead, lead_s=lead_s)
    outcomes: dict[str, PolicyOutcome] = {}
    demand = trace.demand[:, trace.eval_start :]
    for name, policy in policies.items():
        started = time.perf_counter()
        provisioned = run_policy(trace, policy, lead=lead, progress=progress)
        ready = ready_from_provisioned(provisioned, lead)[:, lead:]
        charged = timing.charged(provisioned)[:, lead:]
        provisioned = provisioned[:, lead:]
        shortfall = np.maximum(0.0, demand - capacity[:, None] * ready)
        shortfall[shortfall < COLD_TOLERANCE] = 0.0  # capacity × ready equal to demand up to rounding serves it
        cold, loaded = timing.on_demand(shortfall, capacity)
        charged = charged + loaded
        seconds = time.perf_counter() - started
        log.info("policy %s simulated in %.2fs", name, seconds)
        outcomes[name] = PolicyOutcome(name, provisioned, ready, cold, seconds, charged)
    reasons = {name: _reasons(policy) for name, policy in policies.items() if _reasons(policy)}
    return SimulationResult(
        trace=trace, capacity=capacity, lead=lead, outcomes=outcomes, prices=prices, reasons=reasons, lead_s=lead_s
    )


def _reasons(policy: Policy) -> dict[str, str]:
    """Why a policy chose what it chose per model, where it says (a ``choice`` with ``reasons()``)."""
    choice = getattr(policy, "choice", None)
    return dict(choice.reasons()) if choice is not None and hasattr(choice, "reasons") else {}


def context_for(trace: Trace, capacity: np.ndarray, *, lead: int, lead_s: float | None = None) -> PolicyContext:
    """The :class:`PolicyContext` every policy of a simulation shares (``lead_s``: see :func:`simulate`)."""
    return PolicyContext(
        models=trace.models,
        timestamps=trace.timestamps,
        capacity=capacity,
        interval=trace.interval,
        lead=lead,
        eval_start=trace.eval_start,
        first=trace.first,
        lead_s=lead_s,
    )
