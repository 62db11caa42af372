"""Seeded synthetic request telemetry with daily and weekly cycles and a long tail of sparse models.

Used by the example data, the tests and the benchmarks; the same seed gives the same frame.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd

from prewarm import columns as C

DEFAULT_START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday


def _busy_rate(rng: np.random.Generator, hours: np.ndarray) -> np.ndarray:
    """A diurnal, weekly-modulated rate with a random scale, phase and slow trend."""
    scale = rng.lognormal(mean=3.5, sigma=1.2)
    phase = rng.uniform(-3, 3)
    hour_of_day = (hours + phase) % 24
    day_of_week = (hours // 24) % 7
    daily = 0.35 + np.exp(-0.5 * ((hour_of_day - 14) / 3.5) ** 2) + 0.4 * np.exp(-0.5 * ((hour_of_day - 9) / 1.5) ** 2)
    weekend = np.where(day_of_week >= 5, rng.uniform(0.3, 0.7), 1.0)
    trend = 1.0 + rng.uniform(-0.1, 0.2) * hours / max(len(hours), 1)
    return scale * daily * weekend * trend


def _sparse_rate(rng: np.random.Generator, hours: np.ndarray) -> np.ndarray:
    """A long-tail model: idle most hours, with occasional bursts in working hours."""
    hour_of_day = hours % 24
    working = (hour_of_day >= 8) & (hour_of_day <= 18) & ((hours // 24) % 7 < 5)
    base = np.where(working, rng.uniform(0.05, 0.4), 0.01)
    bursts = rng.random(len(hours)) < 0.02
    return base + bursts * rng.uniform(3, 15)


def synthetic_telemetry(
    n_models: int,
    n_intervals: int,
    *,
    seed: int = 0,
    start: datetime = DEFAULT_START,
    sparse_fraction: float = 0.2,
    names: list[str] | None = None,
    freq: str = "h",
) -> pd.DataFrame:
    """Long telemetry frame (timestamp, model, requests) for ``n_models`` hourly series.

    A ``sparse_fraction`` of the models are long-tail (zero requests most hours); the rest follow
    daily and weekly cycles with Poisson noise. ``names`` overrides the default ``model-00001`` names.
    """
    if names is not None and len(names) != n_models:
        raise ValueError(f"names has {len(names)} entries for {n_models} models")
    rng = np.random.default_rng(seed)
    hours = np.arange(n_intervals, dtype=float)
    index = pd.date_range(start, periods=n_intervals, freq=freq)
    n_sparse = int(round(n_models * sparse_fraction))
    frames = []
    for i in range(n_models):
        rate = _sparse_rate(rng, hours) if i >= n_models - n_sparse else _busy_rate(rng, hours)
        requests = rng.poisson(rate).astype(float)
        name = names[i] if names else f"model-{i:05d}"
        frames.append(pd.DataFrame({C.TIMESTAMP: index, C.MODEL: name, C.REQUESTS: requests}))
    return pd.concat(frames, ignore_index=True)
