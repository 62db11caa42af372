"""Warm planning and trace-driven policy simulation (no Prefect here: flows call these functions).

Public API::

    plan_windows(forecast_frame, fleet, *, hosts=None, lead_times=None, config=None, now=None,
                 previous=None) -> PlanResult
    plan_models_from_fleet(fleet.models) -> {name: PlanModel}
    lead_times_from_runs(warm_runs_frame, *, default_s, margin_s) -> LeadTimes
    run_simulation(telemetry_frame, SimulationOptions(...), *, forecast_fn=None) -> SimulationResult
    summary(result) -> dict (the ``prewarm simulate --json`` document)
"""

from __future__ import annotations

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

__all__ = [
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
    "SchedulingError",
    "Shortfall",
    "SimulationError",
    "SimulationOptions",
    "SimulationResult",
    "idempotency_key",
    "lead_times_from_runs",
    "plan_models_from_fleet",
    "plan_windows",
    "provisioned_matrix",
    "run_simulation",
    "summary",
]
