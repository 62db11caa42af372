"""Errors of the warm planner and the policy simulator.

    PrewarmError (prewarm.errors)
    └── InputError
        └── SchedulingError        a plan or simulation request that cannot be served as asked
            ├── PlanningError      planner inputs that contradict each other (fleet, hosts, forecast)
            └── SimulationError    a trace or simulator option that cannot be simulated
"""

from __future__ import annotations

from prewarm.errors import InputError


class SchedulingError(InputError):
    """Base class of the scheduling package's errors; the message says what to change."""


class PlanningError(SchedulingError):
    """The planner's inputs are inconsistent: a forecast for an unknown model, a bad host, a bad config."""


class SimulationError(SchedulingError):
    """A trace or an option cannot be simulated: too short, an unknown policy, a bad interval count."""
