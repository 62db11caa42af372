"""Seeded synthetic request telemetry with daily and weekly cycles and a long tail of sparse models.

:func:`synthetic_telemetry` is smooth (Poisson noise around daily and weekly cycles);
:func:`bursty_telemetry` is spiky, like real traffic: bursts that last a few intervals, heavy-tailed
noise, and sparse models whose requests come in sessions. Used by the example data, the tests and the
benchmarks; the same seed gives the same frame.
"""

from __future__ import annotations

from collections.abc import Callable
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
    return _fleet(
        n_models, n_intervals, seed=seed, start=start, sparse_fraction=sparse_fraction, freq=freq,
        busy=_busy_rate, sparse=_sparse_rate, names=names,
    )


def _bursty_busy_rate(rng: np.random.Generator, hours: np.ndarray) -> np.ndarray:
    """A daily cycle times heavy-tailed noise, with bursts of 3-10x lasting 1-4 intervals (a two-state chain)."""
    rate = _busy_rate(rng, hours) * rng.lognormal(mean=-0.125, sigma=0.5, size=len(hours))
    burst = np.zeros(len(hours))
    t = 0
    start_probability = rng.uniform(0.01, 0.05)
    while t < len(hours):
        if rng.random() < start_probability:
            length = int(rng.integers(1, 5))
            burst[t : t + length] = rng.uniform(3, 10)
            t += length
        t += 1
    return rate * np.maximum(burst, 1.0)


def _session_rate(rng: np.random.Generator, hours: np.ndarray) -> np.ndarray:
    """A long-tail model used in sessions: most start near one or two favourite hours of the week, some at random."""
    rate = np.full(len(hours), rng.uniform(0.0, 0.01))
    favourites = rng.integers(0, 168, size=int(rng.integers(1, 3)))
    hour_of_week = hours.astype(int) % 168
    weekly = rng.uniform(0.3, 0.9)
    random_starts = rng.uniform(0.002, 0.02)
    for t in range(len(hours)):
        starts = (hour_of_week[t] in favourites and rng.random() < weekly) or rng.random() < random_starts
        if starts:
            length = int(rng.integers(1, 4))
            rate[t : t + length] += rng.uniform(0.5, 4.0)
    return rate


def bursty_telemetry(
    n_models: int,
    n_intervals: int,
    *,
    seed: int = 0,
    start: datetime = DEFAULT_START,
    sparse_fraction: float = 0.6,
    freq: str = "h",
) -> pd.DataFrame:
    """Long telemetry frame (timestamp, model, requests) of a spiky fleet: the last ``sparse_fraction`` are sparse.

    Busy models burst to 3-10x their daily cycle for 1-4 intervals at random and carry lognormal noise;
    sparse models are idle but for sessions of 1-3 intervals, mostly at one or two favourite hours of the week.
    """
    return _fleet(
        n_models, n_intervals, seed=seed, start=start, sparse_fraction=sparse_fraction, freq=freq,
        busy=_bursty_busy_rate, sparse=_session_rate,
    )


def _fleet(
    n_models: int,
    n_intervals: int,
    *,
    seed: int,
    start: datetime,
    sparse_fraction: float,
    freq: str,
    busy: Callable[[np.random.Generator, np.ndarray], np.ndarray],
    sparse: Callable[[np.random.Generator, np.ndarray], np.ndarray],
    names: list[str] | None = None,
) -> pd.DataFrame:
    """Poisson counts around each model's rate: the last ``sparse_fraction`` of the models draw ``sparse`` rates."""
    rng = np.random.default_rng(seed)
    hours = np.arange(n_intervals, dtype=float)
    index = pd.date_range(start, periods=n_intervals, freq=freq)
    n_sparse = int(round(n_models * sparse_fraction))
    frames = []
    for i in range(n_models):
        rate = sparse(rng, hours) if i >= n_models - n_sparse else busy(rng, hours)
        requests = rng.poisson(rate).astype(float)
        name = names[i] if names else f"model-{i:05d}"
        frames.append(pd.DataFrame({C.TIMESTAMP: index, C.MODEL: name, C.REQUESTS: requests}))
    return pd.concat(frames, ignore_index=True)
