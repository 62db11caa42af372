"""Demand forecasting: the long telemetry frame in, forecasts with calibrated intervals out.

Public API::

    forecast(frame, *, horizon, level=95.0, freq=None, n_jobs=1, fast=False, methods=None) -> ForecastResult
    peak_windows(forecast_frame, threshold) -> DataFrame (model, start, end, peak_hi)

No Prefect here: flows call these functions.
"""

from __future__ import annotations

from forecasting.engine import forecast
from forecasting.errors import ForecastingError, FrequencyError
from forecasting.peaks import peak_windows
from forecasting.result import METHOD, ForecastReport, ForecastResult, SeriesReport

__all__ = [
    "METHOD",
    "ForecastReport",
    "ForecastResult",
    "ForecastingError",
    "FrequencyError",
    "SeriesReport",
    "forecast",
    "peak_windows",
]
