"""The re-planning cadence the simulator models by default: the deployment's, counted in the trace's intervals.

``prefect.yaml`` runs ``forecast-and-plan`` every 30 minutes (schedule ``forecast-and-plan-every-30-minutes``),
so a live fleet's plan is never more than half an hour old. The simulator steps whole intervals, so
the closest it comes is re-planning every ``30 minutes ÷ interval`` intervals, at least every interval:
every interval for hourly or half-hourly telemetry, every 6 for 5-minute buckets. Each re-plan costs
one forecast of the fleet (``benchmarks/simulate/replan_cost.py`` measures it); ``--replan N`` models a
slower cadence at about 1/N of the forecasts.
"""

from __future__ import annotations

import pandas as pd

from scheduling.errors import SimulationError

DEPLOYMENT_CADENCE = pd.Timedelta(minutes=30)
"""How often the deployment re-plans: the ``forecast-and-plan`` schedule in ``prefect.yaml``."""


def default_replan(interval: pd.Timedelta, *, cadence: pd.Timedelta = DEPLOYMENT_CADENCE) -> int:
    """Intervals between re-plans that come closest to ``cadence`` without planning less often: at least 1."""
    if interval <= pd.Timedelta(0):
        raise SimulationError(f"the trace's interval must be positive to count re-plans in it, got {interval}")
    return max(1, int(cadence // interval))


__all__ = ["DEPLOYMENT_CADENCE", "default_replan"]
