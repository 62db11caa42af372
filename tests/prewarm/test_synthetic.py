"""The seeded synthetic fleets: the smooth one and the bursty one."""

from __future__ import annotations

import numpy as np
import pandas as pd

from prewarm import columns as C
from prewarm.synthetic import bursty_telemetry, synthetic_telemetry


def _matrix(frame: pd.DataFrame) -> np.ndarray:
    return frame.pivot(index=C.MODEL, columns=C.TIMESTAMP, values=C.REQUESTS).to_numpy()


def test_the_same_seed_gives_the_same_fleet() -> None:
    a, b = bursty_telemetry(10, 24 * 14, seed=5), bursty_telemetry(10, 24 * 14, seed=5)
    pd.testing.assert_frame_equal(a, b)
    assert not bursty_telemetry(10, 24 * 14, seed=6).equals(a)


def test_bursty_busy_models_are_spikier_than_the_smooth_ones() -> None:
    def spikiness(frame: pd.DataFrame, n_busy: int) -> float:
        busy = _matrix(frame)[:n_busy]
        # intervals above 3x the model's median, per model: bursts, not the daily cycle
        return float(np.mean(busy > 3 * np.median(busy, axis=1, keepdims=True) + 5))

    smooth = synthetic_telemetry(40, 24 * 28, seed=1, sparse_fraction=0.5)
    bursty = bursty_telemetry(40, 24 * 28, seed=1, sparse_fraction=0.5)
    assert spikiness(bursty, 20) > 2 * spikiness(smooth, 20)


def test_sparse_models_come_in_sessions_at_favourite_hours() -> None:
    demand = _matrix(bursty_telemetry(20, 24 * 7 * 8, seed=2, sparse_fraction=1.0))
    busy = demand > 0
    assert busy.mean() < 0.1, "sparse models are idle most intervals"
    by_hour_of_week = busy.reshape(20, 8, 168).mean(axis=1)
    # each model's busiest hour of the week is busy in most weeks, far above its average hour
    assert np.median(by_hour_of_week.max(axis=1)) >= 0.3
    assert np.median(by_hour_of_week.max(axis=1) / np.maximum(by_hour_of_week.mean(axis=1), 1e-9)) > 5
