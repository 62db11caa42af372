"""Forecasting one series: special cases, then backtested selection, then a safe fallback.

Everything here is a pure function of one array and an :class:`Options`, so the engine can fan series
out across processes (and, later, machines) with no shared state.
"""

from __future__ import annotations

import logging
import warnings as pywarnings
from dataclasses import dataclass, field

import numpy as np

from forecasting.candidates import Candidate, candidate_pool, default_pool
from forecasting.models import Naive, Prediction, SeasonalNaive
from forecasting.selection import combination_errors, conformal_offsets, origins, run_backtests
from prewarm.text import plural

log = logging.getLogger(__name__)

MIN_POINTS = 3
INTERMITTENT_ZERO_SHARE = 0.3  # intermittent-demand candidates join the pool above this share of zeros
SELECTION_ORIGINS = 8
INTERVAL_ORIGINS = 20
FAST_INTERVAL_ORIGINS = 8
EXPENSIVE_ORIGINS = (3, 6)  # selection and interval origins when a statsmodels candidate is in the pool
TOP = 4
MIN_INTERVAL_ERRORS = 2  # origins needed before backtest errors replace the model-based interval
# Backtest errors understate future errors a little (the chosen methods won on those very origins, and
# a series drifts): widening by this factor brought coverage to ~0.95 on rolling origins inside the
# M4 hourly train set (docs/forecasting.md), never on its test set.
INTERVAL_INFLATION = 1.15
MAX_SEASONS = 12  # history beyond this many of the longest season adds cost, not accuracy
_NUMERIC_FAILURES = (ValueError, ArithmeticError, np.linalg.LinAlgError)
FAST_ENSEMBLE = ("sar_log", "sar_raw", "level_week2", "ar_day7")
FAST_INTERMITTENT = ("mean_day28", "tsb")


@dataclass(frozen=True, slots=True)
class Options:
    """How to forecast each series.

    ``fast`` skips the selection backtests: a fixed ensemble (FAST_ENSEMBLE, or FAST_INTERMITTENT for
    sparse series) whose interval is calibrated on fewer origins; several times cheaper.
    ``methods`` restricts the candidate pool by name (see ``candidate_names``).
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
        return _flat(float(np.mean(y)), h, "short_mean", f"only {len(y)} {plural(len(y), 'point')}: their mean", spread)
    if not np.any(y):
        return _flat(0.0, h, "zero", None)
    if np.all(y == y[0]):
        return _flat(float(y[0]), h, "constant", None)
    return None


def _pool(y: np.ndarray, options: Options) -> tuple[Candidate, ...]:
    if options.methods is not None:
        return tuple(c for c in candidate_pool(options.periods) if c.name in options.methods)
    return default_pool(options.periods, sparse=float(np.mean(y == 0)) >= INTERMITTENT_ZERO_SHARE)


def _step(options: Options) -> int:
    return options.periods[0] if options.periods else max(1, options.horizon // 4)


def _model_based(y: np.ndarray, options: Options, reason: str | None) -> SeriesForecast:
    """Seasonal naive (or naive when shorter than a season) with its textbook normal interval."""
    periods = options.periods
    model = SeasonalNaive() if periods and len(y) >= periods[0] else Naive()
    prediction = model.fit(y, periods).predict(options.horizon, level=options.level)
    assert prediction.lo is not None and prediction.hi is not None
    return SeriesForecast(prediction.mean, prediction.lo, prediction.hi, model.name, reason)


def _fixed_ensemble(y: np.ndarray, pool: tuple[Candidate, ...], options: Options) -> tuple[Candidate, ...]:
    sparse = float(np.mean(y == 0)) >= INTERMITTENT_ZERO_SHARE
    wanted = FAST_INTERMITTENT if sparse and options.methods is None else FAST_ENSEMBLE
    named = [c for c in pool if c.name in wanted] if options.methods is None else list(pool)
    usable = tuple(c for c in named if c.path(y, 1) is not None)
    if usable:
        return usable
    # none of the preferred ones fits this history: the longest-memory candidates that do
    return tuple(c for c in pool if c.path(y, 1) is not None)[:TOP]


def _with_interval(
    y: np.ndarray, chosen: tuple[Candidate, ...], options: Options, count: int, mae: float | None
) -> SeriesForecast:
    h = options.horizon
    paths = [c.path(y, h) for c in chosen]
    mean = np.mean([p for p in paths if p is not None], axis=0)
    cuts = origins(len(y), h, count=count, step=_step(options), min_train=MIN_POINTS)
    errors, _ = combination_errors(y, chosen, h, cuts)
    method = "+".join(c.name for c in chosen)
    if len(errors) < MIN_INTERVAL_ERRORS:
        fallback = _model_based(y, options, None)
        width_lo, width_hi = fallback.mean - fallback.lo, fallback.hi - fallback.mean
        reason = f"history of {len(y)} {plural(len(y), 'point')} too short to calibrate the interval: {fallback.method} interval"
        return SeriesForecast(mean, mean - width_lo, mean + width_hi, method, reason, backtest_mae=mae)
    lo, hi = conformal_offsets(errors, options.level)
    lo, hi = lo * INTERVAL_INFLATION, hi * INTERVAL_INFLATION
    return SeriesForecast(mean, mean + lo, mean + hi, method, None, backtest_mae=mae)


def _forecast(y: np.ndarray, options: Options) -> SeriesForecast:
    pool = _pool(y, options)
    if not pool:
        return _model_based(y, options, "no candidate method selected")
    expensive = any(c.expensive for c in pool)
    n_select, n_interval = EXPENSIVE_ORIGINS if expensive else (SELECTION_ORIGINS, INTERVAL_ORIGINS)
    if not options.fast:
        cuts = origins(len(y), options.horizon, count=n_select, step=_step(options), min_train=MIN_POINTS)
        backtest = run_backtests(y, pool, options.horizon, cuts, top=TOP) if cuts else None
        if backtest is not None:
            chosen = tuple(c for c in pool if c.name in backtest.chosen)
            return _with_interval(y, chosen, options, n_interval, backtest.mae)
    chosen = _fixed_ensemble(y, pool, options)
    if not chosen:
        return _model_based(y, options, f"history of {len(y)} {plural(len(y), 'point')} is shorter than every candidate needs")
    result = _with_interval(y, chosen, options, min(FAST_INTERVAL_ORIGINS, n_interval), None)
    if options.fast or result.fallback_reason:
        return result
    reason = f"history of {len(y)} {plural(len(y), 'point')} too short for selection backtests: fixed ensemble"
    return SeriesForecast(result.mean, result.lo, result.hi, result.method, reason, backtest_mae=None)


def _trim(y: np.ndarray, options: Options) -> np.ndarray:
    if not options.periods:
        return y
    keep = MAX_SEASONS * options.periods[-1] + options.horizon
    return y[-keep:] if len(y) > keep else y


def forecast_series(y: np.ndarray, options: Options) -> SeriesForecast:
    """Forecast one regular series ``y``; a failing model falls back to seasonal naive instead of raising.

    The fallback's reason names the exception. Numeric failures are expected now and then (a singular
    fit, an overflow) and are logged at debug level; anything else is logged with its traceback,
    since it points at a bug, but still costs only this series its selected method.
    """
    special = _special_case(y, options)
    if special is not None:
        return special
    y = _trim(np.asarray(y, dtype=float), options)
    with pywarnings.catch_warnings(record=True) as records:
        pywarnings.simplefilter("always")
        try:
            result = _forecast(y, options)
        except _NUMERIC_FAILURES as exc:
            log.debug("forecast failed, falling back to seasonal naive: %s", exc)
            result = _model_based(y, options, f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # noqa: BLE001 - reported on the series, never hidden
            log.warning("unexpected error forecasting a series; seasonal naive instead", exc_info=True)
            result = _model_based(y, options, f"{type(exc).__name__}: {exc}")
    caught = tuple(sorted({f"{r.category.__name__}: {r.message}" for r in records}))
    if not (np.all(np.isfinite(result.mean)) and np.all(np.isfinite(result.hi)) and np.all(np.isfinite(result.lo))):
        result = _model_based(y, options, f"{result.method} gave a non-finite forecast")
    mean = np.maximum(result.mean, 0.0)
    lo = np.clip(result.lo, 0.0, mean)
    hi = np.maximum(result.hi, mean)
    return SeriesForecast(mean, lo, hi, result.method, result.fallback_reason or None, caught, result.backtest_mae)


@dataclass(frozen=True, slots=True)
class _FittedAuto:
    y: np.ndarray
    periods: tuple[int, ...]
    fast: bool
    methods: tuple[str, ...] | None

    def predict(self, horizon: int, *, level: float | None = None) -> Prediction:
        options = Options(horizon, 95.0 if level is None else level, self.periods, self.fast, self.methods)
        result = forecast_series(self.y, options)
        return Prediction(result.mean) if level is None else Prediction(result.mean, result.lo, result.hi)


@dataclass(frozen=True, slots=True)
class AutoForecaster:
    """The whole per-series pipeline (selection, combination, calibrated interval) as a :class:`Model`.

    Backtests depend on the horizon, so ``fit`` only keeps the history and ``predict`` does the work.
    """

    fast: bool = False
    methods: tuple[str, ...] | None = None
    name: str = "auto"

    def min_length(self, periods: tuple[int, ...]) -> int:
        return 1

    def fit(self, y: np.ndarray, periods: tuple[int, ...]) -> _FittedAuto:
        return _FittedAuto(np.asarray(y, dtype=float), periods, self.fast, self.methods)
