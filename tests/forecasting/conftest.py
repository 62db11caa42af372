"""Seeded telemetry frames for the forecasting tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prewarm import columns as C

START = pd.Timestamp("2026-01-05", tz="UTC")


def hourly_frame(series: dict[str, np.ndarray], start: pd.Timestamp = START) -> pd.DataFrame:
    """Long telemetry frame of hourly ``series`` (model -> values), each starting at ``start``."""
    frames = [
        pd.DataFrame({C.TIMESTAMP: pd.date_range(start, periods=len(v), freq="h"), C.MODEL: name, C.REQUESTS: v})
        for name, v in series.items()
    ]
    return pd.concat(frames, ignore_index=True)


def seasonal_values(n: int, *, seed: int, base: float = 50.0) -> np.ndarray:
    """A Poisson series with a daily cycle and a weekend dip."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    rate = base * (1.2 + np.sin(2 * np.pi * t / 24)) * np.where((t // 24) % 7 >= 5, 0.6, 1.0)
    return rng.poisson(rate).astype(float)


@pytest.fixture
def seasonal_frame() -> pd.DataFrame:
    """Three busy models with four weeks of hourly history."""
    return hourly_frame({f"m{i}": seasonal_values(24 * 28, seed=i, base=20.0 * (i + 1)) for i in range(3)})
