"""Kernels against hand computations, the model protocol, and the opt-in statsmodels candidates."""

from __future__ import annotations

import numpy as np
import pytest

from forecasting import kernels as K
from forecasting.candidates import candidate_names, candidate_pool
from forecasting.models import Naive, SeasonalNaive
from forecasting.single import AutoForecaster
from tests.forecasting.conftest import seasonal_values

LAGS = (1, 2, 3, 23, 24, 25, 48, 167, 168, 169)


def test_seasonal_naive_repeats_the_last_season() -> None:
    x = np.arange(10.0)
    assert K.seasonal_naive(x, 5, period=4).tolist() == [6.0, 7.0, 8.0, 9.0, 6.0]
    assert K.seasonal_naive(x[:3], 2, period=4) is None


def test_level_profile_by_hand() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0, 11.0, 12.0, 13.0, 14.0, 21.0, 22.0, 23.0, 24.0])
    # period 4, k 2, window 2: profile = mean of the two previous seasons at each phase,
    # shifted by mean(23, 24) - mean(mean(13, 14), mean(3, 4)) = 23.5 - 8.5 = 15
    out = K.level_profile(x, 4, period=4, k=2, window=2)
    assert out.tolist() == pytest.approx([16.0 + 15, 17.0 + 15, 18.0 + 15, 19.0 + 15])


def test_seasonal_ar_equals_the_step_by_step_recursion() -> None:
    x = np.log1p(seasonal_values(700, seed=4))
    out = K.seasonal_ar(x, 48, lags=LAGS, fit_window=1344, ridge=1e-7)
    n, m = len(x), min(1344, len(x) - 169)
    rows = np.arange(n - m, n)
    center = x[rows].mean()
    design = np.column_stack([np.ones(m)] + [x[rows - lag] - center for lag in LAGS])
    gram = design.T @ design + 1e-7 * m * np.eye(len(LAGS) + 1)
    gram[0, 0] -= 1e-7 * m
    coef = np.linalg.solve(gram, design.T @ (x[rows] - center))
    z = np.concatenate([x - center, np.zeros(48)])
    for t in range(n, n + 48):
        z[t] = coef[0] + sum(c * z[t - lag] for c, lag in zip(coef[1:], LAGS, strict=True))
    np.testing.assert_allclose(out, z[n:] + center, atol=1e-12)


def test_explosive_autoregression_is_not_used() -> None:
    x = np.exp(np.linspace(0, 8, 400))  # leaves its own range within the horizon
    assert K.seasonal_ar(x, 48, lags=(1, 2), fit_window=400, ridge=0.0) is None


def test_intermittent_kernels_by_hand() -> None:
    x = np.array([0.0, 4.0, 0.0, 0.0, 2.0])
    # Croston-SBA, alpha 0.5: sizes 4 -> 3, intervals 2 -> 2.5; (1 - 0.25) * 3 / 2.5
    assert K.croston_sba(x, 2, alpha=0.5).tolist() == pytest.approx([0.9, 0.9])
    # TSB starts at p = 0 and the first non-zero size, then updates both
    p, size = 0.0, 4.0
    for v in x[1:]:
        p = p + 0.5 * ((v > 0) - p)
        size = size + 0.5 * (v - size) if v > 0 else size
    assert K.tsb(x, 1, alpha=0.5, beta=0.5)[0] == pytest.approx(p * size)


def test_models_follow_the_protocol() -> None:
    y = seasonal_values(24 * 10, seed=5)
    for model in (SeasonalNaive(), Naive(), AutoForecaster(), AutoForecaster(fast=True)):
        prediction = model.fit(y, (24, 168)).predict(30, level=80)
        assert prediction.mean.shape == prediction.lo.shape == prediction.hi.shape == (30,)
        assert (prediction.lo <= prediction.mean).all() and (prediction.mean <= prediction.hi).all()
    assert AutoForecaster().fit(y, (24, 168)).predict(5).lo is None


def test_method_names_fit_the_forecast_point_column() -> None:
    names = sorted(candidate_names((24, 168)), key=len, reverse=True)
    assert len("+".join(names[:4])) <= 64  # forecast_points.method is String(64); 4 methods are combined


@pytest.mark.parametrize("name", ["mstl_ets", "holt_winters"])
def test_statsmodels_candidates_are_opt_in_and_work(name: str) -> None:
    (candidate,) = [c for c in candidate_pool((24, 168)) if c.name == name]
    assert candidate.expensive
    path = candidate.path(seasonal_values(24 * 15, seed=6), 24)
    assert path is not None and path.shape == (24,) and np.isfinite(path).all() and (path >= 0).all()
