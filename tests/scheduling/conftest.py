"""Small seeded traces and an injectable forecast for the scheduling tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prewarm import columns as C
from prewarm.synthetic import synthetic_telemetry
from scheduling.trace import Trace, trace_from_telemetry


def seasonal_naive_forecast(history: pd.DataFrame, horizon: int, interval: pd.Timedelta) -> pd.DataFrame:
    """Repeat each model's last day; the interval is ±20 % of it (a cheap stand-in for the engine in unit tests)."""
    frames = []
    for model, part in history.groupby(C.MODEL):
        values = part.sort_values(C.TIMESTAMP)[C.REQUESTS].to_numpy()
        season = values[-24:] if len(values) >= 24 else values[-1:]
        yhat = np.resize(season, horizon)
        stamps = pd.date_range(part[C.TIMESTAMP].max() + interval, periods=horizon, freq=interval)
        frames.append(pd.DataFrame({C.MODEL: model, C.TIMESTAMP: stamps, C.YHAT: yhat, C.LO: 0.8 * yhat, C.HI: 1.2 * yhat}))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture
def telemetry() -> pd.DataFrame:
    """Ten days of 8 hourly models, 3 of them sparse (seeded)."""
    return synthetic_telemetry(8, 24 * 10, seed=3, sparse_fraction=0.375)


@pytest.fixture
def trace(telemetry: pd.DataFrame) -> Trace:
    """The telemetry on its grid, with the last two days evaluated."""
    return trace_from_telemetry(telemetry, eval_intervals=48)
