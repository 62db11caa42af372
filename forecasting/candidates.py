"""The candidate pool: kernels bound to parameters and a scale (log1p or raw), named for reports."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from forecasting import kernels as K

Kernel = Callable[..., "np.ndarray | None"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """One forecasting method of the pool: ``kernel(x, h, **params)`` on log1p or raw values."""

    name: str
    kernel: Kernel
    log: bool = False
    params: dict[str, object] = field(default_factory=dict)
    intermittent: bool = False
    expensive: bool = False

    def path(self, y: np.ndarray, h: int) -> np.ndarray | None:
        """Forecast ``h`` steps of ``y`` on the original scale, clipped at zero; None when too short."""
        x = np.log1p(y) if self.log else y
        out = self.kernel(x, h, **self.params)
        if out is None:
            return None
        out = np.expm1(np.minimum(out, 700.0)) if self.log else out
        if not np.all(np.isfinite(out)):
            return None
        return np.maximum(out, 0.0)


def _c(
    name: str,
    kernel: Kernel,
    *,
    log: bool = False,
    intermittent: bool = False,
    expensive: bool = False,
    **params: object,
) -> Candidate:
    return Candidate(name, partial(kernel), log, dict(params), intermittent, expensive)


def _autoregressions(periods: tuple[int, ...]) -> list[Candidate]:
    """Seasonal AR candidates: short lags plus the lags around one day, two days and one week."""
    if not periods:
        return [_c("ar_short", K.seasonal_ar, log=True, lags=(1, 2, 3), fit_window=1000, ridge=1e-7)]
    d = periods[0]
    daily = (1, 2, 3, d - 1, d, d + 1, 2 * d)
    if len(periods) == 1:
        lags = daily + (3 * d,)
        return [
            _c("sar_log", K.seasonal_ar, log=True, lags=lags, fit_window=56 * d, ridge=1e-7),
            _c("sar_raw", K.seasonal_ar, lags=lags, fit_window=56 * d, ridge=1e-7),
        ]
    w = periods[1]
    lags = daily + (w - 1, w, w + 1)
    return [
        _c("sar_log", K.seasonal_ar, log=True, lags=lags, fit_window=8 * w, ridge=1e-7),
        _c("sar_raw", K.seasonal_ar, lags=lags, fit_window=8 * w, ridge=1e-7),
        _c("sar_log_wide", K.seasonal_ar, log=True, lags=lags + (2 * d - 1, 2 * d + 1, 3 * d), fit_window=8 * w, ridge=1e-7),
        _c("sar_log_recent", K.seasonal_ar, log=True, lags=lags, fit_window=3 * w, ridge=1e-7),
        _c("sar_log_day", K.seasonal_ar, log=True, lags=daily + (3 * d,), fit_window=8 * w, ridge=1e-7),
    ]


def candidate_pool(periods: tuple[int, ...]) -> tuple[Candidate, ...]:
    """Every candidate for a frequency with these seasonal ``periods`` (daily, weekly when whole)."""
    pool: list[Candidate] = []
    if periods:
        d = periods[0]
        pool += [
            _c("snaive_day", K.seasonal_naive, period=d),
            _c("level_day1", K.level_profile, log=True, period=d, k=1, window=d),
            _c("level_day3", K.level_profile, log=True, period=d, k=3, window=d),
            _c("level_day7", K.level_profile, log=True, period=d, k=7, window=d),
            _c("level_day1_raw", K.level_profile, period=d, k=1, window=d),
            _c("ar_day1", K.profile_ar, log=True, period=d, k=1),
            _c("ar_day3", K.profile_ar, log=True, period=d, k=3),
            _c("ar_day7", K.profile_ar, log=True, period=d, k=7),
            _c("ses_day7", K.deseasonal_ses, log=True, period=d, k=7, alpha=0.05),
            _c("theta_day7", K.deseasonal_ses, log=True, period=d, k=7, alpha=0.2, drift=True),
            _c("mean_day28", K.seasonal_mean, intermittent=True, period=d, k=28),
        ]
    if len(periods) > 1:
        w = periods[1]
        d = periods[0]
        pool += [
            _c("snaive_week", K.seasonal_naive, period=w),
            _c("level_week1", K.level_profile, log=True, period=w, k=1, window=d),
            _c("level_week2", K.level_profile, log=True, period=w, k=2, window=d),
            _c("level_week3", K.level_profile, log=True, period=w, k=3, window=d),
            _c("level_week2_raw", K.level_profile, period=w, k=2, window=d),
            _c("ar_week1", K.profile_ar, log=True, period=w, k=1),
            _c("ar_week2", K.profile_ar, log=True, period=w, k=2),
            _c("mean_week4", K.seasonal_mean, intermittent=True, period=w, k=4),
        ]
    pool += _autoregressions(periods)
    pool += [
        _c("tsb", K.tsb, intermittent=True),
        _c("croston_sba", K.croston_sba, intermittent=True),
    ]
    if periods:
        # statsmodels models: ten to a hundred times the cost of the kernels above, only by name
        pool += [
            _c("mstl_ets", K.mstl_ets, log=True, expensive=True, periods=periods),
            _c("holt_winters", K.holt_winters, log=True, expensive=True, period=periods[0]),
        ]
    return tuple(pool)


def candidate_names(periods: tuple[int, ...]) -> tuple[str, ...]:
    """Names of the pool for these periods (for ``methods=`` validation and docs)."""
    return tuple(c.name for c in candidate_pool(periods))


def default_pool(periods: tuple[int, ...], *, sparse: bool) -> tuple[Candidate, ...]:
    """The pool a series gets without ``methods=``: no expensive models; intermittent ones when sparse."""
    return tuple(c for c in candidate_pool(periods) if not c.expensive and (sparse or not c.intermittent))
