"""From the long telemetry frame to one regular array per model.

The rules (documented in docs/forecasting.md):

* the bucket width is ``freq`` when given, else the most common gap between consecutive timestamps
  of a model, over all models; hourly when no model has two timestamps;
* a timestamp off the grid (irregular) is floored to its bucket; rows of the same bucket are summed;
* a bucket with no row between a model's first and last bucket is **zero requests** (telemetry omits
  idle buckets);
* a NaN value is *unknown*, not zero: it is imputed from the same bucket one season earlier, else
  by linear interpolation, and counted as a warning;
* negative values are clipped to zero with a warning.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecasting.errors import ForecastingError, FrequencyError
from prewarm import columns as C
from prewarm.text import duration, plural

DEFAULT_FREQ = "h"
_DAY = pd.Timedelta(days=1)
_WEEK = pd.Timedelta(days=7)
ON_GRID_SHARE = 0.9
"""Share of a trace's gaps that must be whole multiples of the most common one for the timestamps to be on a grid."""
USUAL_WIDTHS = tuple(
    pd.Timedelta(w)
    for w in ("1s", "5s", "10s", "15s", "30s", "1min", "2min", "5min", "10min", "15min", "20min", "30min",
              "1h", "2h", "3h", "4h", "6h", "8h", "12h", "1D", "7D")
)
"""Bucket widths that jittered timestamps are rounded to."""
JITTER_SHARE = 0.1
"""A gap within this share of a bucket from a whole number of buckets counts as on that grid."""


@dataclass(frozen=True, slots=True)
class Series:
    """One model's history on a regular grid, oldest first, with the warnings its cleaning raised."""

    model: str
    values: np.ndarray
    last: pd.Timestamp
    n_rows: int
    warnings: tuple[str, ...] = ()


def freq_delta(freq: str) -> pd.Timedelta:
    """The fixed width of ``freq`` (``"h"``, ``"15min"``, ``"1D"``); calendar frequencies are refused."""
    try:
        offset = pd.tseries.frequencies.to_offset(freq)
        delta = pd.Timedelta(offset)
    except (ValueError, TypeError) as exc:
        raise FrequencyError(
            f"freq {freq!r} is not a fixed bucket width; use one like 'h', '15min' or '1D'"
        ) from exc
    if delta <= pd.Timedelta(0):
        raise FrequencyError(f"freq {freq!r} must be a positive bucket width")
    return delta


def seasonal_periods(delta: pd.Timedelta) -> tuple[int, ...]:
    """Daily and weekly periods in buckets of width ``delta`` (those that are whole and at least 2)."""
    periods = []
    for span in (_DAY, _WEEK):
        ratio = span / delta
        if ratio >= 2 and float(ratio).is_integer():
            periods.append(int(ratio))
    return tuple(periods)


def observed_interval(frame: pd.DataFrame) -> pd.Timedelta | None:
    """The most common gap between consecutive distinct timestamps of a model, over all models.

    When fewer than :data:`ON_GRID_SHARE` of the gaps are whole multiples of it (timestamps a little late, as a
    scrape's; or sparse models whose most common gap is several buckets), the width is the widest of
    :data:`USUAL_WIDTHS` that the gaps are within :data:`JITTER_SHARE` of a multiple of, else the median gap
    rounded to the nearest usual width. None when no model has two distinct timestamps.
    """
    stamps = frame[[C.MODEL, C.TIMESTAMP]].drop_duplicates().sort_values([C.MODEL, C.TIMESTAMP])
    gaps = stamps[C.TIMESTAMP].diff()
    same_model = stamps[C.MODEL].eq(stamps[C.MODEL].shift())
    gaps = gaps[same_model & gaps.gt(pd.Timedelta(0))]
    if gaps.empty:
        return None
    mode = pd.Timedelta(gaps.mode().iloc[0])
    ns = gaps.to_numpy(dtype="timedelta64[ns]").astype(np.int64)
    if np.mean(ns % mode.value == 0) >= ON_GRID_SHARE:
        return mode
    median = float(np.median(ns))
    for width in sorted(USUAL_WIDTHS, reverse=True):
        # The widest usual width that the gaps are (nearly) multiples of: sparse models on a grid have gaps of
        # many buckets, and a most common gap that is one of those, not the bucket.
        if not median / 1000 <= width.value <= median:
            continue
        off = np.abs((ns + width.value // 2) % width.value - width.value // 2)
        if np.mean(off <= width.value * JITTER_SHARE) >= ON_GRID_SHARE:
            return width
    return min(USUAL_WIDTHS, key=lambda width: abs(np.log(width.value / median)))


def infer_freq(frame: pd.DataFrame) -> pd.Timedelta:
    """The observed bucket width (:func:`observed_interval`), or the default hourly width without one."""
    interval = observed_interval(frame)
    return freq_delta(DEFAULT_FREQ) if interval is None else interval


def extend_to(frame: pd.DataFrame, end: pd.Timestamp) -> pd.DataFrame:
    """``frame`` with each model's series running to ``end``: a model whose last row is earlier gets a zero row there.

    No row means no requests, so a model that stopped reporting is idle up to ``end``, and its forecast starts
    where every other model's does (not right after its own last row, days in the past).
    """
    last = frame.groupby(C.MODEL, sort=False)[C.TIMESTAMP].max()
    stale = last.index[last < end]
    if stale.empty:
        return frame
    zeros = pd.DataFrame({C.TIMESTAMP: end, C.MODEL: stale.astype(str), C.REQUESTS: 0.0})
    return pd.concat([frame, zeros], ignore_index=True)


def _check_columns(frame: pd.DataFrame) -> None:
    missing = [c for c in C.TELEMETRY_REQUIRED if c not in frame.columns]
    if missing:
        raise ForecastingError(
            f"telemetry frame lacks column(s) {', '.join(missing)}; "
            f"expected the long format {','.join(C.TELEMETRY_REQUIRED)}"
        )
    ts = frame[C.TIMESTAMP]
    if not pd.api.types.is_datetime64_any_dtype(ts) or getattr(ts.dt, "tz", None) is None:
        raise ForecastingError(
            "column 'timestamp' must hold timezone-aware datetimes (UTC); "
            "read files with prewarm.telemetry.read_telemetry_file"
        )


def _impute(values: np.ndarray, season: int | None) -> np.ndarray:
    nan = np.isnan(values)
    if season:
        for i in np.flatnonzero(nan):
            if i >= season and not np.isnan(values[i - season]):
                values[i] = values[i - season]
    if np.isnan(values).any():
        values = pd.Series(values).interpolate(limit_direction="both").to_numpy()
    return values


def _one_series(
    model: str, buckets: np.ndarray, raw: np.ndarray, delta: pd.Timedelta, season: int | None
) -> Series:
    warnings: list[str] = []
    first = int(buckets.min())
    index = buckets - first
    length = int(index.max()) + 1
    counts = np.bincount(index, minlength=length)
    nan_rows = np.isnan(raw)
    nan_counts = np.bincount(index, weights=nan_rows, minlength=length)
    values = np.bincount(index, weights=np.where(nan_rows, 0.0, raw), minlength=length)
    unknown = (counts > 0) & (nan_counts == counts)
    values[unknown] = np.nan
    if (counts > 1).any():
        warnings.append(f"{int((counts > 1).sum())} buckets had several rows (irregular or duplicate): summed")
    if (values < 0).any():
        warnings.append(f"{int((values < 0).sum())} negative values clipped to 0")
        values = np.where(values < 0, 0.0, values)
    if unknown.all():
        warnings.append("every value is NaN")
        values = np.zeros(0)
    elif unknown.any():
        count = int(unknown.sum())
        warnings.append(f"{count} missing {plural(count, 'value')} (NaN) imputed")
        values = _impute(values, season)
    last = pd.Timestamp((first + length - 1) * delta.value, tz="UTC")
    return Series(model=model, values=values, last=last, n_rows=len(raw), warnings=tuple(warnings))


def split_series(frame: pd.DataFrame, delta: pd.Timedelta) -> list[Series]:
    """One regular :class:`Series` per model of ``frame`` (sorted by model name); none is dropped."""
    _check_columns(frame)
    if frame.empty:
        return []
    stamps = frame[C.TIMESTAMP].dt.tz_convert("UTC")
    ns = stamps.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    buckets = np.floor_divide(ns, delta.value)
    off_grid = ns - buckets * delta.value != 0
    raw = pd.to_numeric(frame[C.REQUESTS], errors="coerce").to_numpy(dtype=float)
    codes, names = pd.factorize(frame[C.MODEL].astype(str), sort=True)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(names) + 1))
    periods = seasonal_periods(delta)
    season = periods[0] if periods else None
    out = []
    for i, name in enumerate(names):
        rows = order[bounds[i] : bounds[i + 1]]
        series = _one_series(str(name), buckets[rows], raw[rows], delta, season)
        irregular = int(off_grid[rows].sum())
        if irregular:
            note = f"{irregular} timestamps off the {duration(delta)} grid floored to their bucket"
            series = Series(series.model, series.values, series.last, series.n_rows, (note, *series.warnings))
        out.append(series)
    return out
