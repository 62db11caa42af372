"""Errors of the forecasting engine.

    PrewarmError (prewarm.errors)
    └── InputError
        └── ForecastingError        a forecast request that cannot be served as asked
            └── FrequencyError      the bucket width cannot be inferred or is not regular
"""

from __future__ import annotations

from prewarm.errors import InputError


class ForecastingError(InputError):
    """A forecast request is invalid (horizon, level, columns); the message says what to change."""


class FrequencyError(ForecastingError):
    """The frame's bucket width cannot be inferred; pass ``freq=`` explicitly."""
