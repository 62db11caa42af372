"""Building the policies of a simulation by name and running them on a telemetry frame."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from prewarm.text import parse_duration
from scheduling.cadence import default_replan
from scheduling.cost import DEFAULT_COLD_WEIGHT, DEFAULT_REPLICA_HOUR_PRICE, Prices
from scheduling.cost_policy import CostPolicy
from scheduling.errors import SchedulingError, SimulationError
from scheduling.levels import BASE_LEVEL
from scheduling.forecast_policy import ForecastFn, ForecastPolicy, cached_forecast, engine_forecast
from scheduling.baselines import TunedHistogramPolicy, TunedTopKPolicy
from scheduling.histogram import HistogramPolicy
from scheduling.sparse import SparsePolicy
from scheduling.planner import PlannerConfig
from scheduling.policies import KeepAlivePolicy, OraclePolicy, Policy, ReactivePolicy, StaticPolicy
from scheduling.simulator import Progress, SimulationResult, context_for, simulate
from scheduling.subinterval import SubInterval
from scheduling.trace import Trace, replica_capacity, trace_from_telemetry

POLICY_NAMES = (
    "static", "keepalive", "reactive", "histogram", "histogram-tuned", "topk", "sparse", "forecast", "cost", "oracle",
)


@dataclass(frozen=True, slots=True)
class SimulationOptions:
    """The simulator's options (the CLI flags)."""

    eval_intervals: int
    lead: int = 1
    lead_seconds: float | None = None
    """Time-to-ready in seconds, finer than the interval; when set, ``lead`` follows from it (None: ``lead``)."""
    replicas_at_peak: float = 4.0
    replan: int | None = None
    """Re-plan every N intervals; None: the deployment's cadence (:func:`scheduling.cadence.default_replan`)."""
    policies: tuple[str, ...] = POLICY_NAMES
    keep_alive_seconds: float = 600.0
    forecast_level: float = 80.0
    fast_forecast: bool = False
    reactive_floor: bool = False
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    cold_weight: float = DEFAULT_COLD_WEIGHT
    cold_price: float | None = None
    replica_hour_price: float = DEFAULT_REPLICA_HOUR_PRICE
    target_cold_fraction: float | None = None

    def replan_for(self, interval: pd.Timedelta) -> int:
        """The re-planning period in intervals: ``replan`` when set, else the deployment's cadence for ``interval``."""
        if self.replan is None:
            return default_replan(interval)
        if self.replan < 1:
            raise SimulationError(f"--replan must be at least 1 interval, got {self.replan}")
        return self.replan

    def prices(self, capacity: np.ndarray, *, interval_hours: float) -> Prices:
        """The per-model prices of this run (``cold_price`` for every model when set, else derived from capacity)."""
        return Prices.derived(
            capacity, interval_hours=interval_hours, cold_weight=self.cold_weight, cold_price=self.cold_price,
            replica_hour_price=self.replica_hour_price,
        )


def parse_lead(text: str) -> tuple[int, float | None]:
    """``--lead``: a whole number of intervals (``2``), or a time-to-ready (``90s``, ``5m``, ``1.5h``, ``1d``).

    Returns ``(intervals, None)`` for intervals and ``(0, seconds)`` for a duration (the intervals follow
    from the trace's grid, see :func:`with_lead_steps`).
    """
    if text.strip().isdigit():
        return int(text), None
    span = parse_duration(text)
    if span is None:
        raise SimulationError(
            f"--lead {text!r}: give a whole number of intervals (1) or a time-to-ready such as 90s, 5m or 1h"
        )
    return 0, span.total_seconds()


def parse_policies(text: str) -> tuple[str, ...]:
    """``all`` or a comma-separated list of policy names, in the canonical order, without duplicates."""
    if text.strip() == "all":
        return POLICY_NAMES
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in POLICY_NAMES]
    if unknown or not names:
        what = f"unknown policy {unknown[0]!r}" if unknown else "no policy named"
        raise SimulationError(f"--policies: {what}; choose 'all' or a comma-separated list of {', '.join(POLICY_NAMES)}")
    return tuple(n for n in POLICY_NAMES if n in names)


def build_policies(
    trace: Trace, options: SimulationOptions, capacity: np.ndarray, *, forecast_fn: ForecastFn | None = None
) -> dict[str, Policy]:
    """The policies named in ``options``, sharing one context; ``forecast_fn`` defaults to the forecasting engine."""
    replan = options.replan_for(trace.interval)
    target = options.target_cold_fraction
    if target is not None and not 0 <= target < 1:
        raise SimulationError(f"--target-cold-fraction must be in [0, 1), got {target}")
    options = with_lead_steps(options, trace.interval)
    context = context_for(trace, capacity, lead=options.lead, lead_s=options.lead_seconds)
    prices = options.prices(capacity, interval_hours=trace.interval_hours)
    base_fn = forecast_fn or cached_forecast(engine_forecast(BASE_LEVEL, fast=options.fast_forecast))
    built: dict[str, Policy] = {}
    for name in options.policies:
        if name == "static":
            built[name] = StaticPolicy(context)
        elif name == "keepalive":
            built[name] = KeepAlivePolicy(context, keep_alive_seconds=options.keep_alive_seconds)
        elif name == "reactive":
            built[name] = ReactivePolicy(context)
        elif name == "histogram":
            built[name] = HistogramPolicy(context)
        elif name == "histogram-tuned":
            built[name] = TunedHistogramPolicy(context, prices)
        elif name == "topk":
            built[name] = TunedTopKPolicy(context, prices)
        elif name == "sparse":
            built[name] = SparsePolicy(context, prices)
        elif name == "forecast":
            fn = forecast_fn or (
                base_fn if options.forecast_level == BASE_LEVEL else engine_forecast(options.forecast_level, fast=options.fast_forecast)
            )
            built[name] = ForecastPolicy(
                context, fn, replan=replan, config=options.planner, reactive_floor=options.reactive_floor
            )
        elif name == "cost":
            built[name] = CostPolicy(
                context, base_fn, prices, replan=replan, config=options.planner,
                target_cold_fraction=options.target_cold_fraction,
            )
        elif name == "oracle":
            built[name] = OraclePolicy(context, trace.demand)
    return built


def run_simulation(
    telemetry: pd.DataFrame | Trace,
    options: SimulationOptions,
    *,
    forecast_fn: ForecastFn | None = None,
    progress: Progress | None = None,
    always_oracle: bool = True,
) -> SimulationResult:
    """Simulate ``options.policies`` on a telemetry frame (or a ready :class:`Trace`).

    The oracle always runs when ``always_oracle`` (it is cheap), so replica-hours can be compared with it.
    """
    trace = telemetry if isinstance(telemetry, Trace) else trace_from_telemetry(telemetry, eval_intervals=options.eval_intervals)
    options = with_lead_steps(options, trace.interval)
    capacity = replica_capacity(trace, replicas_at_peak=options.replicas_at_peak)
    names: Sequence[str] = options.policies
    if always_oracle and "oracle" not in names:
        names = (*names, "oracle")
    run_options = replace(options, policies=tuple(names))
    policies = build_policies(trace, run_options, capacity, forecast_fn=forecast_fn)
    prices = options.prices(capacity, interval_hours=trace.interval_hours)
    return simulate(
        trace, policies, capacity=capacity, lead=options.lead, progress=progress, prices=prices, lead_s=options.lead_seconds
    )


def with_lead_steps(options: SimulationOptions, interval: pd.Timedelta) -> SimulationOptions:
    """``options`` with ``lead`` set to the boundaries ``lead_seconds`` needs on ``interval`` (when it is set)."""
    if options.lead_seconds is None:
        if options.lead < 0:
            raise SimulationError(f"--lead must be >= 0 intervals, got {options.lead}")
        return options
    try:
        timing = SubInterval(interval.total_seconds(), options.lead_seconds)
    except SchedulingError as exc:
        raise SimulationError(f"--lead: {exc}") from None
    return replace(options, lead=timing.steps)
