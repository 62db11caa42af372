"""Forecasting one series: special cases first, then the chosen method, then a safe fallback.

Everything here is a pure function of one array, so the engine can fan series out across processes.
"""

from __future__ import annotations

import logging
import warnings as pywarnings
from dataclasses import dataclass, field

import numpy as np

from forecasting.models import Naive, Prediction, SeasonalNaive

log = logging.getLogger(__name__)

MIN_POINTS = 3


@dataclass(frozen=True, slots=True)
class Options:
    """How to forecast each series.

    ``fast`` skips the rolling-origin backtests (no selection, no calibration): a fixed ensemble with
    model-based intervals, several times cheaper. ``methods`` restricts the candidate set by name.
    """

    horizon: int
    level: float
    periods: tuple[int, ...]
    fast: bool = False
    methods: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class SeriesForecast:
    """One series' forecast and how it was made."""

    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    method: str
    fallback_reason: str | None = None
    warnings: tuple[str, ...] = field(default=())
    backtest_mae: float | None = None


def _flat(value: float, horizon: int, method: str, reason: str | None, width: float = 0.0) -> SeriesForecast:
    mean = np.full(horizon, max(value, 0.0))
    return SeriesForecast(mean, np.maximum(mean - width, 0.0), mean + width, method, reason)


def _special_case(y: np.ndarray, options: Options) -> SeriesForecast | None:
    h = options.horizon
    if len(y) == 0:
        return _flat(0.0, h, "no_data", "no usable values: forecast 0")
    if len(y) < MIN_POINTS:
        spread = float(np.max(y) - np.min(y))
        return _flat(float(np.mean(y)), h, "short_mean", f"only {len(y)} points: mean of them", spread)
    if not np.any(y):
        return _flat(0.0, h, "zero", None)
    if np.all(y == y[0]):
        return _flat(float(y[0]), h, "constant", None)
    return None


def _predict(y: np.ndarray, options: Options) -> tuple[Prediction, str]:
    periods = options.periods
    model = SeasonalNaive() if periods and len(y) >= periods[0] else Naive()
    return model.fit(y, periods).predict(options.horizon, level=options.level), model.name


def forecast_series(y: np.ndarray, options: Options) -> SeriesForecast:
    """Forecast one regular series ``y``; never raises for numeric trouble (falls back instead)."""
    special = _special_case(y, options)
    if special is not None:
        return special
    caught: list[str] = []
    with pywarnings.catch_warnings(record=True) as records:
        pywarnings.simplefilter("always")
        try:
            prediction, method = _predict(y, options)
            reason = None
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            log.debug("model failed, falling back to seasonal naive: %s", exc)
            model = SeasonalNaive() if options.periods and len(y) >= options.periods[0] else Naive()
            prediction = model.fit(y, options.periods).predict(options.horizon, level=options.level)
            method, reason = model.name, f"{type(exc).__name__}: {exc}"
    caught = sorted({f"{r.category.__name__}: {r.message}" for r in records})
    assert prediction.lo is not None and prediction.hi is not None
    mean = np.maximum(prediction.mean, 0.0)
    lo = np.clip(prediction.lo, 0.0, mean)
    hi = np.maximum(prediction.hi, mean)
    return SeriesForecast(mean, lo, hi, method, reason, tuple(caught))
