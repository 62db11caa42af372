"""Accuracy and interval scores as defined by the M4 competition.

Per series: sMAPE = 200/h * sum |y - f| / (|y| + |f|); MASE = mean |y - f| / scale; MSIS = mean interval
score / scale, where scale is the in-sample mean absolute seasonal difference at lag ``m``; coverage is
the share of points inside [lo, hi]. Overall figures are means over series, as in the competition.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def seasonal_scale(insample: np.ndarray, m: int) -> float:
    """Mean absolute seasonal difference at lag ``m`` (lag 1 when the series is too short)."""
    lag = m if len(insample) > m else 1
    return float(np.mean(np.abs(insample[lag:] - insample[:-lag])))


def smape(y: np.ndarray, f: np.ndarray) -> float:
    """Symmetric MAPE in percent (0/0 terms count as 0)."""
    denom = np.abs(y) + np.abs(f)
    terms = np.divide(np.abs(y - f), denom, out=np.zeros_like(denom, dtype=float), where=denom > 0)
    return float(200.0 * np.mean(terms))


def mase(y: np.ndarray, f: np.ndarray, scale: float) -> float:
    """Mean absolute error divided by ``scale``."""
    return float(np.mean(np.abs(y - f)) / scale)


def msis(y: np.ndarray, lo: np.ndarray, hi: np.ndarray, scale: float, *, alpha: float = 0.05) -> float:
    """Mean scaled interval score at level 1 - ``alpha``."""
    penalty = (hi - lo) + (2.0 / alpha) * (lo - y) * (y < lo) + (2.0 / alpha) * (y - hi) * (y > hi)
    return float(np.mean(penalty) / scale)


def coverage(y: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """Share of points with lo <= y <= hi."""
    return float(np.mean((y >= lo) & (y <= hi)))


@dataclass(frozen=True, slots=True)
class Scores:
    """Mean scores over series; ``msis`` and ``coverage`` are None for point forecasts."""

    smape: float
    mase: float
    msis: float | None
    coverage: float | None
    n_series: int


def score_series(
    insample: list[np.ndarray],
    actual: list[np.ndarray],
    mean: list[np.ndarray],
    lo: list[np.ndarray] | None = None,
    hi: list[np.ndarray] | None = None,
    *,
    m: int = 24,
    alpha: float = 0.05,
) -> Scores:
    """Score many series the way the M4 competition does: per-series scores, then their mean."""
    scales = [seasonal_scale(x, m) for x in insample]
    s = [smape(y, f) for y, f in zip(actual, mean, strict=True)]
    a = [mase(y, f, c) for y, f, c in zip(actual, mean, scales, strict=True)]
    if lo is None or hi is None:
        return Scores(float(np.mean(s)), float(np.mean(a)), None, None, len(actual))
    i = [msis(y, l, u, c, alpha=alpha) for y, l, u, c in zip(actual, lo, hi, scales, strict=True)]
    cov = np.concatenate([(y >= l) & (y <= u) for y, l, u in zip(actual, lo, hi, strict=True)])
    return Scores(float(np.mean(s)), float(np.mean(a)), float(np.mean(i)), float(np.mean(cov)), len(actual))
