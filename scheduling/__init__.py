"""Warm planning and trace-driven policy simulation (no Prefect here: flows call these functions).

Public API::

    plan_windows(forecast_frame, fleet, *, hosts=None, lead_times=None, config=None, now=None,
                 previous=None) -> PlanResult
    plan_models_from_fleet(fleet.models) -> {name: PlanModel}
    lead_times_from_runs(warm_runs_frame, *, default_s, margin_s) -> LeadTimes
    run_simulation(telemetry_frame, SimulationOptions(...), *, forecast_fn=None) -> SimulationResult
    summary(result) -> dict (the ``prewarm simulate --json`` document)
    Prices.derived(capacity, interval_hours=..., cold_weight=4.0) -> per-model cold and replica-hour prices
    plan_with_costs(history, fleet, *, forecast_fn, horizon, interval, now, ...) -> CostPlan (the cost policy as a plan)
    SubInterval(interval_s, lead_s): warm-up start, charged seconds and served share when time-to-ready is finer than the grid
"""

from __future__ import annotations

from scheduling.cost import Prices
from scheduling.cost_plan import CostPlan, plan_with_costs
from scheduling.errors import PlanningError, SchedulingError, SimulationError
from scheduling.experiment import POLICY_NAMES, SimulationOptions, run_simulation
from scheduling.leads import LeadTimes, lead_times_from_runs
from scheduling.metrics import summary
from scheduling.placement import Host, Placed
from scheduling.planner import (
    PLAN_COLUMNS,
    PlanModel,
    PlannerConfig,
    PlanResult,
    PlanRow,
    Shortfall,
    idempotency_key,
    plan_models_from_fleet,
    plan_windows,
    provisioned_matrix,
)
from scheduling.simulator import DECISION_COLUMNS, SimulationResult
from scheduling.subinterval import SubInterval

__all__ = [
    "CostPlan",
    "DECISION_COLUMNS",
    "PLAN_COLUMNS",
    "POLICY_NAMES",
    "Host",
    "LeadTimes",
    "PlanModel",
    "PlanResult",
    "PlanRow",
    "Placed",
    "PlannerConfig",
    "PlanningError",
    "Prices",
    "SchedulingError",
    "Shortfall",
    "SimulationError",
    "SimulationOptions",
    "SimulationResult",
    "SubInterval",
    "idempotency_key",
    "lead_times_from_runs",
    "plan_models_from_fleet",
    "plan_with_costs",
    "plan_windows",
    "provisioned_matrix",
    "run_simulation",
    "summary",
]
