"""Peak windows for the planner."""

from __future__ import annotations

import pandas as pd
import pytest

from forecasting import ForecastingError, peak_windows
from prewarm import columns as C

T0 = pd.Timestamp("2026-03-02", tz="UTC")


def _forecast(model: str, hi: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            C.MODEL: model,
            C.TIMESTAMP: pd.date_range(T0, periods=len(hi), freq="h"),
            C.YHAT: [h / 2 for h in hi],
            C.LO: 0.0,
            C.HI: hi,
        }
    )


def test_runs_above_the_threshold_become_windows_with_exclusive_ends() -> None:
    frame = pd.concat([_forecast("a", [1, 12, 15, 3, 11, 2]), _forecast("b", [1, 2, 3, 4, 5, 6])])
    windows = peak_windows(frame, 10)
    assert windows[C.MODEL].tolist() == ["a", "a"]
    assert windows["start"].tolist() == [T0 + pd.Timedelta(hours=1), T0 + pd.Timedelta(hours=4)]
    assert windows["end"].tolist() == [T0 + pd.Timedelta(hours=3), T0 + pd.Timedelta(hours=5)]
    assert windows["peak_hi"].tolist() == [15.0, 11.0]


def test_per_model_thresholds() -> None:
    frame = pd.concat([_forecast("a", [5, 5]), _forecast("b", [5, 50])])
    windows = peak_windows(frame, {"a": 1.0, "b": 10.0})
    assert list(zip(windows[C.MODEL], windows["peak_hi"], strict=True)) == [("a", 5.0), ("b", 50.0)]
    assert peak_windows(frame, {"c": 1.0}).empty


def test_a_frame_without_hi_is_refused() -> None:
    with pytest.raises(ForecastingError, match="lacks column\\(s\\) hi"):
        peak_windows(pd.DataFrame({C.MODEL: ["a"], C.TIMESTAMP: [T0]}), 1.0)
