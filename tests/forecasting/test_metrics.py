"""The scorer: hand computations, and seasonal naive's published M4 hourly figures reproduced exactly."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecasting.metrics import coverage, mase, msis, score_series, seasonal_scale, smape

DATA = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "m4_hourly"


def test_smape_by_hand() -> None:
    y, f = np.array([100.0, 50.0, 0.0]), np.array([110.0, 40.0, 0.0])
    expected = 200 / 3 * (10 / 210 + 10 / 90 + 0.0)
    assert smape(y, f) == pytest.approx(expected)


def test_mase_and_scale_by_hand() -> None:
    insample = np.array([1.0, 2.0, 4.0, 7.0])  # lag-2 differences: 3, 5
    assert seasonal_scale(insample, 2) == pytest.approx(4.0)
    assert mase(np.array([10.0, 12.0]), np.array([8.0, 12.0]), 4.0) == pytest.approx(0.25)


def test_msis_penalises_misses_by_two_over_alpha() -> None:
    y = np.array([5.0, 0.0, 20.0])
    lo, hi = np.array([4.0, 1.0, 4.0]), np.array([6.0, 3.0, 10.0])
    # widths 2, 2, 6; the second misses below by 1, the third above by 10
    expected = (2 + 2 + 6 + 40 * 1 + 40 * 10) / 3 / 2.0
    assert msis(y, lo, hi, 2.0, alpha=0.05) == pytest.approx(expected)
    assert coverage(y, lo, hi) == pytest.approx(1 / 3)


def _wide(name: str) -> list[np.ndarray]:
    with gzip.open(DATA / f"Hourly-{name}.csv.gz", "rt") as handle:
        frame = pd.read_csv(handle, index_col=0)
    return [row.dropna().to_numpy(dtype=float) for _, row in frame.iterrows()]


def test_seasonal_naive_reproduces_the_published_m4_hourly_figures() -> None:
    train, test = _wide("train"), _wide("test")
    assert len(train) == len(test) == 414
    forecasts = [np.resize(y[-24:], 48) for y in train]
    scores = score_series(train, test, forecasts, m=24)
    assert round(scores.smape, 3) == 13.912
    assert round(scores.mase, 3) == 1.193
