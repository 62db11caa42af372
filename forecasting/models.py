"""The model protocol and the baseline models.

A model is a small frozen object with ``fit(y, periods) -> Fitted``; a fitted model answers
``predict(horizon, level=None) -> Prediction`` (mean, and ``lo``/``hi`` when a level is given).
Numeric work lives in plain functions over numpy arrays so it can be reused by the backtests without
building objects per origin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy.stats import norm


@dataclass(frozen=True, slots=True)
class Prediction:
    """Point forecast ``mean`` and, when a level was asked for, the interval ``lo``..``hi``."""

    mean: np.ndarray
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None


class Fitted(Protocol):
    """A model fitted to one series."""

    def predict(self, horizon: int, *, level: float | None = None) -> Prediction:
        """Forecast ``horizon`` steps ahead, with a ``level`` % interval when given."""
        ...


class Model(Protocol):
    """A forecasting method: a name and a ``fit``."""

    name: str

    def min_length(self, periods: tuple[int, ...]) -> int:
        """The shortest history this model can fit."""
        ...

    def fit(self, y: np.ndarray, periods: tuple[int, ...]) -> Fitted:
        """Fit to ``y`` (regular, oldest first, no NaN) with the seasonal ``periods`` of its frequency."""
        ...


def z_score(level: float) -> float:
    """Two-sided normal quantile for a ``level`` % interval."""
    return float(norm.ppf(0.5 + level / 200.0))


def seasonal_naive_path(y: np.ndarray, period: int, horizon: int) -> np.ndarray:
    """Repeat the last ``period`` values ``horizon`` steps ahead."""
    last = y[-period:]
    return np.resize(last, horizon) if len(last) == period else np.full(horizon, y[-1])


def seasonal_naive_sigma(y: np.ndarray, period: int) -> float:
    """Standard deviation of the in-sample seasonal differences (0 when too short)."""
    if len(y) <= period:
        return float(np.std(np.diff(y))) if len(y) > 1 else 0.0
    return float(np.sqrt(np.mean(np.square(y[period:] - y[:-period]))))


@dataclass(frozen=True, slots=True)
class _FittedPath:
    """A fitted model whose forecast is a fixed function of the horizon, with normal intervals.

    ``sigma`` is the one-season-ahead error scale; the interval widens with the square root of the
    number of seasons ahead, as for the seasonal naive method.
    """

    path: np.ndarray
    sigma: float
    period: int

    def predict(self, horizon: int, *, level: float | None = None) -> Prediction:
        mean = np.maximum(np.resize(self.path, horizon), 0.0)
        if level is None:
            return Prediction(mean)
        seasons = np.floor(np.arange(horizon) / max(self.period, 1)) + 1
        half = z_score(level) * self.sigma * np.sqrt(seasons)
        return Prediction(mean, np.maximum(mean - half, 0.0), mean + half)


@dataclass(frozen=True, slots=True)
class SeasonalNaive:
    """Repeat the last season (``period`` index into the frequency's periods: 0 daily, 1 weekly)."""

    period_index: int = 0
    name: str = "snaive"

    def min_length(self, periods: tuple[int, ...]) -> int:
        return periods[self.period_index] if len(periods) > self.period_index else 1

    def fit(self, y: np.ndarray, periods: tuple[int, ...]) -> Fitted:
        period = periods[self.period_index] if len(periods) > self.period_index else 1
        period = min(period, len(y))
        return _FittedPath(seasonal_naive_path(y, period, period), seasonal_naive_sigma(y, period), period)


@dataclass(frozen=True, slots=True)
class Naive:
    """Repeat the last value: the graceful path for histories shorter than a season."""

    name: str = "naive"

    def min_length(self, periods: tuple[int, ...]) -> int:
        return 1

    def fit(self, y: np.ndarray, periods: tuple[int, ...]) -> Fitted:
        sigma = float(np.std(np.diff(y))) if len(y) > 2 else float(np.std(y))
        return _FittedPath(np.array([y[-1]]), sigma, 1)
