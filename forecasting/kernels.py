"""Numeric forecasting kernels: pure functions ``(x, h) -> path or None`` over one transformed series.

``None`` means "history too short for this kernel". Kernels see the series on the scale the caller
chose (log1p or raw) and return the path on that scale; clipping and back-transform happen outside.
Every kernel costs O(n) numpy work at most, so hundreds of them per series stay cheap enough for
rolling-origin backtests.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter


def seasonal_naive(x: np.ndarray, h: int, *, period: int) -> np.ndarray | None:
    """Repeat the last ``period`` values."""
    if len(x) < period:
        return None
    return np.resize(x[-period:], h)


def _lagged_mean(x: np.ndarray, h: int, period: int, k: int) -> np.ndarray:
    """For each future step t (0-based), the mean of x at t - j*period for the last k seasons."""
    n = len(x)
    t = np.arange(h)
    # index of step t one season back inside the history, then j - 1 further seasons back
    first = n + t - period * (t // period + 1)
    return np.mean([x[first - period * j] for j in range(k)], axis=0)


def level_profile(x: np.ndarray, h: int, *, period: int, k: int, window: int) -> np.ndarray | None:
    """Seasonal profile (mean of the last ``k`` seasons) shifted by the recent change in level.

    The shift is the mean of the last ``window`` values minus the mean of the same window ``j`` seasons
    earlier, averaged over the ``k`` seasons: a seasonal naive that follows level changes.
    """
    n = len(x)
    if n < period * k + window:
        return None
    profile = _lagged_mean(x, h, period, k)
    current = x[n - window :].mean()
    past = np.mean([x[n - period * j - window : n - period * j].mean() for j in range(1, k + 1)])
    return profile + (current - past)


def profile_ar(x: np.ndarray, h: int, *, period: int, k: int) -> np.ndarray | None:
    """Seasonal profile of the last ``k`` seasons plus the last deviation from it, decaying as AR(1).

    The AR coefficient is fitted (least squares, clipped to [0, 0.99]) on the deviations of the last
    four seasons from their own lagged profile.
    """
    n = len(x)
    if n < period * (k + 1) + 2:
        return None
    m = min(n - period * k, 4 * period)
    idx = np.arange(n - m, n)
    fitted = np.mean([x[idx - period * j] for j in range(1, k + 1)], axis=0)
    dev = x[idx] - fitted
    a, b = dev[:-1], dev[1:]
    denom = float(np.dot(a, a))
    phi = float(np.clip(np.dot(a, b) / denom, 0.0, 0.99)) if denom > 0 else 0.0
    steps = np.arange(1, h + 1)
    return _lagged_mean(x, h, period, k) + phi**steps * dev[-1]


def _seasonal_index(x: np.ndarray, period: int, k: int) -> np.ndarray:
    n = len(x)
    block = x[n - k * period :].reshape(k, period)
    return (block - block.mean(axis=1, keepdims=True)).mean(axis=0)


def deseasonal_ses(x: np.ndarray, h: int, *, period: int, k: int, alpha: float, drift: bool = False) -> np.ndarray | None:
    """Simple exponential smoothing of the series less a ``k``-season additive index, reseasonalised.

    With ``drift`` the level follows half the least-squares slope of the last two ``period * 7`` values,
    as the Theta method does with its theta=0 line.
    """
    n = len(x)
    if n < period * k + 2:
        return None
    index = _seasonal_index(x, period, k)
    phase = (np.arange(n) - n) % period
    d = x - index[phase]
    start = d[: min(n, period)].mean()
    level, _ = lfilter([alpha], [1.0, alpha - 1.0], d, zi=[(1.0 - alpha) * start])
    out = level[-1] + index[np.arange(h) % period]
    if drift:
        m = min(n, 14 * period)
        slope = np.polyfit(np.arange(m), d[-m:], 1)[0]
        out = out + 0.5 * slope * np.arange(1, h + 1)
    return out


def seasonal_mean(x: np.ndarray, h: int, *, period: int, k: int) -> np.ndarray | None:
    """Mean of the last ``k`` seasons at the same phase: the profile of a sparse, bursty series."""
    k = min(k, len(x) // period)
    if k < 1:
        return None
    return _lagged_mean(x, h, period, k)


def tsb(x: np.ndarray, h: int, *, alpha: float = 0.1, beta: float = 0.05) -> np.ndarray | None:
    """Teunter-Syntetos-Babai intermittent demand: smoothed occurrence probability times smoothed size."""
    if len(x) < 3:
        return None
    prob, size = float(x[0] > 0), float(x[x > 0][0]) if np.any(x > 0) else 0.0
    for value in x[1:]:
        if value > 0:
            prob += beta * (1.0 - prob)
            size += alpha * (value - size)
        else:
            prob -= beta * prob
    return np.full(h, prob * size)


def croston_sba(x: np.ndarray, h: int, *, alpha: float = 0.1) -> np.ndarray | None:
    """Croston's method with the Syntetos-Boylan bias correction: size / interval * (1 - alpha/2)."""
    demand = np.flatnonzero(x > 0)
    if len(demand) < 2:
        return None
    sizes = x[demand]
    intervals = np.diff(np.concatenate([[-1], demand])).astype(float)
    s, q = sizes[0], intervals[0]
    for size, gap in zip(sizes[1:], intervals[1:], strict=True):
        s += alpha * (size - s)
        q += alpha * (gap - q)
    return np.full(h, (1.0 - alpha / 2.0) * s / q)


def seasonal_ar(x: np.ndarray, h: int, *, lags: tuple[int, ...], fit_window: int, ridge: float = 1e-3) -> np.ndarray | None:
    """Linear autoregression on the given ``lags`` (short and seasonal), fitted by ridge least squares.

    Fitted on the last ``fit_window`` points, then iterated forward: each forecast feeds the next
    step's short lags. A cheap stand-in for a seasonal ARIMA that also follows local level changes.
    """
    n = len(x)
    longest = max(lags)
    m = min(fit_window, n - longest)
    if m < 4 * len(lags) + 8:
        return None
    rows = np.arange(n - m, n)
    design = np.column_stack([np.ones(m)] + [x[rows - lag] for lag in lags])
    center = float(np.mean(x[rows]))
    design[:, 1:] -= center
    gram = design.T @ design + ridge * m * np.eye(design.shape[1])
    gram[0, 0] -= ridge * m  # leave the intercept unpenalised
    coef = np.linalg.solve(gram, design.T @ (x[rows] - center))
    # the forecast recursion z[t] = c0 + sum_k c_k z[t - lag_k] is an all-pole filter driven by c0,
    # started from the centred history: one C call instead of a Python loop over steps and lags
    poles = np.zeros(longest + 1)
    poles[0] = 1.0
    for c, lag in zip(coef[1:], lags, strict=True):
        poles[lag] -= c
    past = (x[n - longest :] - center)[::-1]
    # initial state of lfilter's transposed direct form: zi[m] = -sum_j poles[m + 1 + j] * past[j]
    state = -np.convolve(poles[1:][::-1], past)[longest - 1 :: -1][:longest]
    out = lfilter([1.0], poles, np.full(h, coef[0]), zi=state)[0] + center
    # an explosive fit leaves the range the series has shown: such a model is not used
    recent = x[rows]
    spread = float(recent.max() - recent.min())
    if not np.all(np.isfinite(out)) or out.max() > recent.max() + spread or out.min() < recent.min() - spread:
        return None
    return out


def mstl_ets(x: np.ndarray, h: int, *, periods: tuple[int, ...]) -> np.ndarray | None:
    """statsmodels MSTL (daily and, with two weeks of history, weekly) plus damped-trend ETS on the rest.

    About 0.3 s per fit: available by name (``methods=``), not in the default pool.
    """
    from statsmodels.tsa.holtwinters import ExponentialSmoothing
    from statsmodels.tsa.seasonal import MSTL

    usable = tuple(p for p in periods if len(x) >= 2 * p + 1)
    if not usable or len(x) < 10:
        return None
    fit = MSTL(x, periods=usable if len(usable) > 1 else usable[0]).fit()
    seasonal = np.asarray(fit.seasonal).reshape(len(x), -1)
    future = np.zeros(h)
    for j, p in enumerate(usable):
        future += seasonal[len(x) - p + np.arange(h) % p, j]
    adjusted = x - seasonal.sum(axis=1)
    trend = ExponentialSmoothing(adjusted, trend="add", damped_trend=True, initialization_method="estimated").fit()
    return np.asarray(trend.forecast(h)) + future


def holt_winters(x: np.ndarray, h: int, *, period: int) -> np.ndarray | None:
    """statsmodels Holt-Winters (additive damped trend and season) on the series.

    About 1 s per fit: available by name (``methods=``), not in the default pool.
    """
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    if len(x) < 2 * period + 2:
        return None
    model = ExponentialSmoothing(
        x, trend="add", damped_trend=True, seasonal="add", seasonal_periods=period, initialization_method="estimated"
    )
    return np.asarray(model.fit().forecast(h))
