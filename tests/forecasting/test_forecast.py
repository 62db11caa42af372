"""The forecaster over many series: contract, special cases, fallbacks, selection, intervals, modes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import forecasting
from forecasting import ForecastingError, forecast
from forecasting import kernels as K
from forecasting.metrics import score_series
from forecasting.result import METHOD
from prewarm import columns as C
from tests.forecasting.conftest import START, hourly_frame, seasonal_values


def _check_contract(result: forecasting.ForecastResult, frame: pd.DataFrame, horizon: int) -> None:
    out = result.frame
    assert list(out.columns) == [*C.FORECAST_COLUMNS, METHOD]
    for model, group in out.groupby(C.MODEL):
        last = frame.loc[frame[C.MODEL] == model, C.TIMESTAMP].max()
        assert len(group) == horizon
        assert group[C.TIMESTAMP].min() > last
        assert group[C.TIMESTAMP].is_monotonic_increasing
    assert (out[C.LO] >= 0).all() and (out[C.LO] <= out[C.YHAT]).all() and (out[C.YHAT] <= out[C.HI]).all()
    assert str(out[C.TIMESTAMP].dt.tz) == "UTC"


def test_contract_holds_for_every_model(seasonal_frame: pd.DataFrame) -> None:
    result = forecast(seasonal_frame, horizon=48, level=95)
    _check_contract(result, seasonal_frame, 48)
    assert sorted(result.frame[C.MODEL].unique()) == ["m0", "m1", "m2"]
    assert result.report.freq == "h" and len(result.report.series) == 3
    assert all(s.backtest_mae is not None for s in result.report.series)


def test_horizon_counts_intervals_of_the_inferred_frequency() -> None:
    values = seasonal_values(96 * 10, seed=3)
    frame = hourly_frame({"a": values})
    frame[C.TIMESTAMP] = pd.date_range(START, periods=len(values), freq="15min")
    result = forecast(frame, horizon=8)
    stamps = result.frame[C.TIMESTAMP]
    assert result.report.freq == "15min"
    assert stamps.iloc[0] == frame[C.TIMESTAMP].max() + pd.Timedelta(minutes=15)
    assert (stamps.diff().dropna() == pd.Timedelta(minutes=15)).all()


def test_selection_beats_seasonal_naive_on_a_seasonal_series() -> None:
    histories, actuals, ours, naive = [], [], [], []
    series = {f"s{i}": seasonal_values(24 * 35, seed=10 + i, base=40.0) for i in range(6)}
    frame = hourly_frame({k: v[:-48] for k, v in series.items()})
    result = forecast(frame, horizon=48)
    for name, values in series.items():
        histories.append(values[:-48])
        actuals.append(values[-48:])
        ours.append(result.frame.loc[result.frame[C.MODEL] == name, C.YHAT].to_numpy())
        naive.append(np.resize(values[-72:-48], 48))
    assert score_series(histories, actuals, ours).mase < 0.9 * score_series(histories, actuals, naive).mase


def test_intervals_cover_about_the_level() -> None:
    series = {f"s{i}": seasonal_values(24 * 35, seed=100 + i, base=30.0) for i in range(12)}
    frame = hourly_frame({k: v[:-48] for k, v in series.items()})
    out = forecast(frame, horizon=48, level=90).frame
    actual = np.concatenate([v[-48:] for v in series.values()])
    inside = (actual >= out[C.LO].to_numpy()) & (actual <= out[C.HI].to_numpy())
    assert 0.8 <= inside.mean() <= 0.99


@pytest.mark.parametrize(
    ("values", "method", "fallback"),
    [
        ([np.nan, np.nan, np.nan], "no_data", "no usable values"),
        ([4.0, 6.0], "short_mean", "only 2 points"),
        ([0.0] * 200, "zero", None),
        ([7.0] * 200, "constant", None),
    ],
)
def test_special_series_are_forecast_not_dropped(values: list[float], method: str, fallback: str | None) -> None:
    frame = hourly_frame({"odd": np.array(values), "busy": seasonal_values(24 * 21, seed=1)})
    result = forecast(frame, horizon=5)
    odd = result.frame[result.frame[C.MODEL] == "odd"]
    assert len(odd) == 5 and set(odd[METHOD]) == {method}
    report = {s.model: s for s in result.report.series}["odd"]
    assert report.method == method
    if fallback is None:
        assert report.fallback_reason is None
    else:
        assert fallback in report.fallback_reason
    if method == "constant":
        assert (odd[C.YHAT] == 7.0).all()
    if method == "short_mean":
        assert (odd[C.YHAT] == 5.0).all() and (odd[C.HI] == 7.0).all()


def test_short_history_takes_the_graceful_path() -> None:
    frame = hourly_frame({"new": np.array([3.0, 5.0, 4.0, 8.0, 6.0, 7.0, 5.0, 9.0, 4.0, 6.0])})
    result = forecast(frame, horizon=6)
    (report,) = result.report.series
    assert report.method in ("naive", "snaive") or "+" in report.method or report.method.startswith("sar")
    assert report.fallback_reason is not None and "10 points" in report.fallback_reason
    assert np.isfinite(result.frame[C.HI]).all() and (result.frame[C.HI] > result.frame[C.YHAT]).any()


def test_intermittent_series_gets_intermittent_methods() -> None:
    rng = np.random.default_rng(7)
    values = np.where(rng.random(24 * 28) < 0.08, rng.integers(1, 6, 24 * 28), 0).astype(float)
    result = forecast(hourly_frame({"sparse": values}), horizon=24, fast=True)
    (report,) = result.report.series
    assert set(report.method.split("+")) <= {"mean_day28", "tsb"}
    assert (result.frame[C.YHAT] < 1.0).all() and (result.frame[C.HI] >= 1.0).any()


@pytest.mark.parametrize(
    ("error", "reason"),
    [(np.linalg.LinAlgError("singular matrix"), "LinAlgError: singular matrix"), (KeyError("lag"), "KeyError: 'lag'")],
)
def test_a_failing_model_falls_back_to_seasonal_naive(
    seasonal_frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch, error: Exception, reason: str
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(K, "seasonal_ar", broken)
    result = forecast(seasonal_frame, horizon=12, methods=["sar_log"])
    assert {s.method for s in result.report.series} == {"snaive"}
    assert all(reason in s.fallback_reason for s in result.report.series)
    _check_contract(result, seasonal_frame, 12)


def test_numpy_warnings_are_counted(seasonal_frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    import warnings

    import forecasting.candidates as candidates

    original = candidates.K.level_profile

    def noisy(*args: object, **kwargs: object) -> object:
        warnings.warn("overflow in exp", RuntimeWarning, stacklevel=1)
        return original(*args, **kwargs)

    monkeypatch.setattr(candidates.K, "level_profile", noisy)
    result = forecast(seasonal_frame, horizon=4, methods=["level_day1", "snaive_day"])
    assert result.report.warnings_count == 3
    assert all("RuntimeWarning: overflow in exp" in s.warnings for s in result.report.series)


def test_fast_mode_and_parallel_runs_agree_with_their_serial_runs(seasonal_frame: pd.DataFrame) -> None:
    frame = pd.concat(
        [seasonal_frame] + [seasonal_frame.assign(model=seasonal_frame[C.MODEL] + f"-{i}") for i in range(30)]
    )
    fast = forecast(frame, horizon=24, fast=True)
    assert all(s.backtest_mae is None for s in fast.report.series)
    parallel = forecast(frame, horizon=24, fast=True, n_jobs=2)
    pd.testing.assert_frame_equal(fast.frame, parallel.frame)


def test_methods_restricts_the_pool(seasonal_frame: pd.DataFrame) -> None:
    result = forecast(seasonal_frame, horizon=24, methods=["snaive_day"])
    assert set(result.frame[METHOD]) == {"snaive_day"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"horizon": 0}, "horizon must be a positive number"),
        ({"horizon": 4, "level": 100}, "level must be a percentage strictly between 0 and 100"),
        ({"horizon": 4, "n_jobs": 0}, "n_jobs must be at least 1"),
        ({"horizon": 4, "methods": ["prophet"]}, "unknown method\\(s\\) prophet .* choose from: snaive_day"),
        ({"horizon": 4, "freq": "MS"}, "not a fixed bucket width"),
    ],
)
def test_bad_requests_say_what_to_change(seasonal_frame: pd.DataFrame, kwargs: dict, message: str) -> None:
    with pytest.raises(ForecastingError, match=message):
        forecast(seasonal_frame, **kwargs)


def test_empty_frame_gives_an_empty_forecast() -> None:
    frame = pd.DataFrame(
        {C.TIMESTAMP: pd.Series(dtype="datetime64[ns, UTC]"), C.MODEL: pd.Series(dtype=str), C.REQUESTS: []}
    )
    result = forecast(frame, horizon=3)
    assert result.frame.empty and list(result.frame.columns) == [*C.FORECAST_COLUMNS, METHOD]
