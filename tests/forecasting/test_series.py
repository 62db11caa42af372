"""From the long frame to regular series: frequency, missing buckets, irregular stamps, NaN, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecasting.errors import ForecastingError, FrequencyError
from forecasting.series import freq_delta, infer_freq, seasonal_periods, split_series
from prewarm import columns as C

T0 = pd.Timestamp("2026-03-02 00:00", tz="UTC")


def _frame(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            C.TIMESTAMP: [T0 + pd.Timedelta(offset) for _, offset, _ in rows],
            C.MODEL: [m for m, _, _ in rows],
            C.REQUESTS: [v for _, _, v in rows],
        }
    )


def test_missing_buckets_are_zero_requests() -> None:
    frame = _frame([("a", "0h", 5.0), ("a", "3h", 7.0)])
    (series,) = split_series(frame, pd.Timedelta(hours=1))
    assert series.values.tolist() == [5.0, 0.0, 0.0, 7.0]
    assert series.last == T0 + pd.Timedelta(hours=3)


def test_irregular_timestamps_are_floored_and_summed_with_a_warning() -> None:
    frame = _frame([("a", "0h", 1.0), ("a", "0h20min", 2.0), ("a", "1h45min", 4.0)])
    (series,) = split_series(frame, pd.Timedelta(hours=1))
    assert series.values.tolist() == [3.0, 4.0]
    assert any("off the 1 h grid" in w for w in series.warnings)
    assert any("summed" in w for w in series.warnings)


def test_nan_is_unknown_and_imputed_from_one_season_earlier() -> None:
    values = np.arange(48, dtype=float)
    values[30] = np.nan
    frame = pd.DataFrame(
        {C.TIMESTAMP: pd.date_range(T0, periods=48, freq="h"), C.MODEL: "a", C.REQUESTS: values}
    )
    (series,) = split_series(frame, pd.Timedelta(hours=1))
    assert series.values[30] == 6.0  # the value 24 hours earlier
    assert any("1 missing value (NaN) imputed" in w for w in series.warnings)


def test_all_nan_series_is_kept_with_no_values() -> None:
    frame = _frame([("a", "0h", np.nan), ("a", "1h", np.nan), ("b", "0h", 1.0)])
    series = split_series(frame, pd.Timedelta(hours=1))
    assert [s.model for s in series] == ["a", "b"]
    assert len(series[0].values) == 0 and "every value is NaN" in series[0].warnings


def test_negative_values_are_clipped_with_a_warning() -> None:
    (series,) = split_series(_frame([("a", "0h", -3.0), ("a", "1h", 2.0)]), pd.Timedelta(hours=1))
    assert series.values.tolist() == [0.0, 2.0]
    assert any("negative" in w for w in series.warnings)


def test_frequency_is_the_most_common_gap_over_models() -> None:
    frame = _frame([("a", "0min", 1), ("a", "15min", 1), ("a", "30min", 1), ("b", "0min", 1), ("b", "2h", 1)])
    assert infer_freq(frame) == pd.Timedelta(minutes=15)
    assert seasonal_periods(pd.Timedelta(minutes=15)) == (96, 672)
    assert seasonal_periods(pd.Timedelta(hours=1)) == (24, 168)
    assert seasonal_periods(pd.Timedelta(days=1)) == (7,)


def test_calendar_frequency_is_refused() -> None:
    with pytest.raises(FrequencyError, match="not a fixed bucket width"):
        freq_delta("MS")


def test_missing_columns_are_named() -> None:
    with pytest.raises(ForecastingError, match="lacks column\\(s\\) requests"):
        split_series(pd.DataFrame({C.TIMESTAMP: [T0], C.MODEL: ["a"]}), pd.Timedelta(hours=1))


def test_naive_timestamps_are_refused() -> None:
    frame = pd.DataFrame({C.TIMESTAMP: [pd.Timestamp("2026-01-01")], C.MODEL: ["a"], C.REQUESTS: [1.0]})
    with pytest.raises(ForecastingError, match="timezone-aware"):
        split_series(frame, pd.Timedelta(hours=1))
