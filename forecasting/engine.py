"""The forecaster over many series: split the long frame, forecast each series, assemble the result."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd

from forecasting.candidates import candidate_names
from forecasting.errors import ForecastingError
from forecasting.result import METHOD, ForecastReport, ForecastResult, SeriesReport
from forecasting.series import Series, freq_delta, infer_freq, seasonal_periods, split_series
from forecasting.single import Options, SeriesForecast, forecast_series
from prewarm import columns as C

log = logging.getLogger(__name__)

_CHUNK = 64  # series per task: large enough to amortise pickling, small enough to balance two cores


def _validate(horizon: int, level: float, n_jobs: int) -> None:
    if not isinstance(horizon, int | np.integer) or horizon < 1:
        raise ForecastingError(f"horizon must be a positive number of intervals, got {horizon!r}")
    if not 0 < level < 100:
        raise ForecastingError(f"level must be a percentage strictly between 0 and 100, got {level!r}")
    if n_jobs < 1:
        raise ForecastingError(f"n_jobs must be at least 1, got {n_jobs!r}")


def _check_methods(methods: Sequence[str], periods: tuple[int, ...]) -> None:
    known = candidate_names(periods)
    unknown = [m for m in methods if m not in known]
    if unknown or not methods:
        raise ForecastingError(
            f"unknown method(s) {', '.join(unknown) or '(none given)'} for this frequency; "
            f"choose from: {', '.join(known)}"
        )


def _run_chunk(values: list[np.ndarray], options: Options) -> list[SeriesForecast]:
    return [forecast_series(y, options) for y in values]


def _chunks(items: Sequence[np.ndarray], size: int) -> Iterable[list[np.ndarray]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _forecast_all(series: list[Series], options: Options, n_jobs: int) -> list[SeriesForecast]:
    values = [s.values for s in series]
    if n_jobs == 1 or len(values) <= _CHUNK:
        return _run_chunk(values, options)
    out: list[SeriesForecast] = []
    with ProcessPoolExecutor(max_workers=n_jobs) as pool:
        chunks = list(_chunks(values, _CHUNK))
        for i, done in enumerate(pool.map(_run_chunk, chunks, [options] * len(chunks))):
            out.extend(done)
            log.info("forecast %d/%d series", min((i + 1) * _CHUNK, len(values)), len(values))
    return out


def _assemble(series: list[Series], results: list[SeriesForecast], delta: pd.Timedelta, horizon: int) -> pd.DataFrame:
    if not series:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in (*C.FORECAST_COLUMNS, METHOD)})
    steps = np.arange(1, horizon + 1)
    stamps = np.concatenate([s.last.value + steps * delta.value for s in series])
    return pd.DataFrame(
        {
            C.MODEL: np.repeat([s.model for s in series], horizon),
            C.TIMESTAMP: pd.to_datetime(stamps, unit="ns", utc=True),
            C.YHAT: np.concatenate([r.mean for r in results]),
            C.LO: np.concatenate([r.lo for r in results]),
            C.HI: np.concatenate([r.hi for r in results]),
            METHOD: np.repeat([r.method for r in results], horizon),
        }
    )


def forecast(
    frame: pd.DataFrame,
    *,
    horizon: int,
    level: float = 95.0,
    freq: str | None = None,
    n_jobs: int = 1,
    fast: bool = False,
    methods: Sequence[str] | None = None,
) -> ForecastResult:
    """Forecast every model of the long telemetry ``frame`` ``horizon`` buckets past its last timestamp.

    ``frame`` has columns timestamp (tz-aware), model, requests. The bucket width is ``freq`` or
    inferred. Each series gets a method chosen by rolling-origin backtests on its own history and an
    interval calibrated on the backtest errors; ``fast=True`` skips the backtests (see
    docs/forecasting.md for the cost of each mode). No series is ever dropped: special cases (empty,
    fewer than 3 points, all zero, constant) and failing models get a simpler method, named in
    ``result.report``. ``n_jobs`` > 1 fans series out across processes.
    """
    _validate(horizon, level, n_jobs)
    started = time.perf_counter()
    delta = freq_delta(freq) if freq is not None else infer_freq(frame) if not frame.empty else freq_delta("h")
    if methods is not None:
        _check_methods(methods, seasonal_periods(delta))
    series = split_series(frame, delta)
    options = Options(
        horizon=int(horizon),
        level=float(level),
        periods=seasonal_periods(delta),
        fast=fast,
        methods=tuple(methods) if methods is not None else None,
    )
    results = _forecast_all(series, options, n_jobs)
    out = _assemble(series, results, delta, int(horizon))
    reports = tuple(
        SeriesReport(
            model=s.model,
            method=r.method,
            n_observations=len(s.values),
            fallback_reason=r.fallback_reason,
            warnings=s.warnings + r.warnings,
            backtest_mae=r.backtest_mae,
        )
        for s, r in zip(series, results, strict=True)
    )
    report = ForecastReport(
        series=reports,
        freq=pd.tseries.frequencies.to_offset(delta).freqstr,
        horizon=int(horizon),
        level=float(level),
        wall_seconds=time.perf_counter() - started,
    )
    log.info("forecast %d series in %.2fs: %s", len(series), report.wall_seconds, report.methods())
    return ForecastResult(frame=out, report=report)
